"""The schema. Alembic migrations under ``migrations/`` are the only way it is created."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.expression import false as sa_false

from .types import UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets a bigint identity.
Id = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


class HallRow(Base):
    __tablename__ = "halls"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    opening_hours: Mapped[dict[str, Any]]
    priority_boosts: Mapped[dict[str, Any]]
    secondary_after_minutes: Mapped[int] = mapped_column(Integer, default=20)
    # Last sequence number given to an event of this hall (the realtime feed's order).
    event_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    # The scrolling line on the hall's boards.
    notice: Mapped[str] = mapped_column(String(500), default="", server_default="")
    created_at: Mapped[datetime]
    # Booking calendar on top of the opening hours: breaks, holidays, special days.
    booking_calendar: Mapped[dict[str, Any]] = mapped_column(
        JSON, default=dict, server_default=text("'{}'")
    )
    # Visitors may check a booking in from their phone, not only at the kiosk.
    remote_checkin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    # Hall time at which the day is closed: tickets still waiting get an outcome.
    day_close_time: Mapped[str] = mapped_column(String(5), default="23:30", server_default="23:30")


class ServiceRow(Base):
    __tablename__ = "services"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    hall_id: Mapped[int] = mapped_column(ForeignKey("halls.id", ondelete="CASCADE"), index=True)
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(2))
    typical_minutes: Mapped[int] = mapped_column(Integer)
    documents: Mapped[list[Any]]
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # The matter's booking rules (booking.domain.rules JSON); None: not bookable online.
    booking: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))


class UserRow(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    # None for admins; managers and clerks belong to one hall.
    hall_id: Mapped[int | None] = mapped_column(ForeignKey("halls.id", ondelete="CASCADE"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]


class CounterRow(Base):
    __tablename__ = "counters"
    __table_args__ = (UniqueConstraint("hall_id", "number"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    hall_id: Mapped[int] = mapped_column(ForeignKey("halls.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), default="closed")
    clerk_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # When it last opened, paused or closed: a paused counter is expected back after a
    # usual break (the wait estimate).
    state_since: Mapped[datetime | None]


class CounterServiceRow(Base):
    __tablename__ = "counter_services"
    counter_id: Mapped[int] = mapped_column(
        ForeignKey("counters.id", ondelete="CASCADE"), primary_key=True
    )
    service_id: Mapped[int] = mapped_column(
        ForeignKey("services.id", ondelete="CASCADE"), primary_key=True
    )
    level: Mapped[str] = mapped_column(String(16))


class DeviceRow(Base):
    __tablename__ = "devices"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    hall_id: Mapped[int] = mapped_column(ForeignKey("halls.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    # SHA-256 of the token: tokens are 256-bit random, so a fast hash is enough.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_hint: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    last_seen_at: Mapped[datetime | None]
    # A print agent serves one kiosk: that kiosk's tickets are printed through it.
    kiosk_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    # What a print agent last reported (online, paper, cover, problem) and whether its
    # websocket is connected now.
    status: Mapped[dict[str, Any] | None]
    connected: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())


class VisitRow(Base):
    __tablename__ = "visits"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    hall_id: Mapped[int] = mapped_column(ForeignKey("halls.id", ondelete="CASCADE"), index=True)
    business_day: Mapped[date] = mapped_column(Date)
    follow_token: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]


class NumberSequenceRow(Base):
    """The last number given per hall, prefix and business day; bumped inside the issue."""

    __tablename__ = "number_sequences"
    hall_id: Mapped[int] = mapped_column(
        ForeignKey("halls.id", ondelete="CASCADE"), primary_key=True
    )
    business_day: Mapped[date] = mapped_column(Date, primary_key=True)
    prefix: Mapped[str] = mapped_column(String(2), primary_key=True)
    last_seq: Mapped[int] = mapped_column(Integer)


class TicketRow(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        # Numbers are unique per hall, day and prefix. Transfers carry the visit's number
        # with seq NULL, which a unique constraint lets repeat.
        UniqueConstraint("hall_id", "business_day", "prefix", "seq", name="uq_tickets_number"),
        Index("ix_tickets_queue", "hall_id", "state", "service_id"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    hall_id: Mapped[int] = mapped_column(ForeignKey("halls.id", ondelete="CASCADE"))
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id", ondelete="CASCADE"), index=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id"))
    number: Mapped[str] = mapped_column(String(16))
    prefix: Mapped[str] = mapped_column(String(2))
    seq: Mapped[int | None] = mapped_column(Integer)
    business_day: Mapped[date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    issued_at: Mapped[datetime]
    queued_at: Mapped[datetime]
    due_at: Mapped[datetime | None]
    counter_id: Mapped[int | None] = mapped_column(
        ForeignKey("counters.id", ondelete="SET NULL"), index=True
    )
    clerk_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    called_at: Mapped[datetime | None]
    call_count: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    issued_by_device_id: Mapped[int | None] = mapped_column(
        ForeignKey("devices.id", ondelete="SET NULL")
    )
    issued_by_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )


class IdempotencyKeyRow(Base):
    """A kiosk's Idempotency-Key and the ticket it produced: a double tap yields one ticket."""

    __tablename__ = "idempotency_keys"
    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    created_at: Mapped[datetime]
    # What the request asked for (hall/matter/priority/kind): a reused key must match it.
    fingerprint: Mapped[str] = mapped_column(String(128), default="", server_default="")


class PrintJobRow(Base):
    """One ticket to print on one printer: pending → sent → printed | failed."""

    __tablename__ = "print_jobs"
    __table_args__ = (Index("ix_print_jobs_printer_state", "printer_id", "state"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    hall_id: Mapped[int] = mapped_column(ForeignKey("halls.id", ondelete="CASCADE"))
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    printer_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    payload: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    done_at: Mapped[datetime | None]


class HallEventRow(Base):
    """The hall's event log, written in the same transaction as the change it records."""

    __tablename__ = "hall_events"
    __table_args__ = (
        UniqueConstraint("hall_id", "seq", name="uq_hall_events_seq"),
        # The relay looks for what it has not published yet: keep that lookup small.
        Index(
            "ix_hall_events_unpublished",
            "id",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    hall_id: Mapped[int] = mapped_column(ForeignKey("halls.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    published_at: Mapped[datetime | None]


class SlotRow(Base):
    """A matter's slot and how many of its bookable places are taken.

    ``booked`` only changes by ``UPDATE … SET booked = booked ± 1 WHERE booked < bookable``:
    the row is the capacity's one point of truth under any number of racing bookers.
    """

    __tablename__ = "slots"
    __table_args__ = (
        UniqueConstraint("service_id", "starts_at", name="uq_slots_start"),
        Index("ix_slots_hall_start", "hall_id", "starts_at"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    hall_id: Mapped[int] = mapped_column(ForeignKey("halls.id", ondelete="CASCADE"))
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    capacity: Mapped[int] = mapped_column(Integer)
    bookable: Mapped[int] = mapped_column(Integer)
    booked: Mapped[int] = mapped_column(Integer, default=0)


class BookingRow(Base):
    __tablename__ = "bookings"
    __table_args__ = (
        Index("ix_bookings_hall_phone", "hall_id", "phone"),
        Index("ix_bookings_hall_id_tail", "hall_id", "id_tail"),
        Index("ix_bookings_state_start", "state", "slot_start"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    hall_id: Mapped[int] = mapped_column(ForeignKey("halls.id", ondelete="CASCADE"))
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    slot_id: Mapped[int] = mapped_column(ForeignKey("slots.id", ondelete="CASCADE"), index=True)
    slot_start: Mapped[datetime]
    code: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(50))
    phone: Mapped[str | None] = mapped_column(String(16))
    id_tail: Mapped[str | None] = mapped_column(String(4))
    state: Mapped[str] = mapped_column(String(24))
    # online (the visitor) or staff (assisted booking, made_by_user_id says who).
    channel: Mapped[str] = mapped_column(String(8))
    made_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    made_at: Mapped[datetime]
    checked_in_at: Mapped[datetime | None]
    due_at: Mapped[datetime | None]
    ticket_id: Mapped[int | None] = mapped_column(
        ForeignKey("tickets.id", ondelete="SET NULL"), index=True
    )
    ended_at: Mapped[datetime | None]
    reminded_at: Mapped[datetime | None]


class BookingHolderRow(Base):
    """One row per phone number or ID (with name) that has booked in a hall.

    A booking first upserts the rows of its holder, which locks them until it commits:
    two bookings by the same person queue there, so the second sees the first and the
    per-person limits hold under racing requests.
    """

    __tablename__ = "booking_holders"
    hall_id: Mapped[int] = mapped_column(
        ForeignKey("halls.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(96), primary_key=True)
    touched_at: Mapped[datetime]


class SchedulerLeaderRow(Base):
    """Which process runs the scheduled jobs now (written by the leader, for operators)."""

    __tablename__ = "scheduler_leader"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    since: Mapped[datetime]
    heartbeat_at: Mapped[datetime]


class RatingRow(Base):
    """A visitor's rating of one service (好差评): 1 to 5 stars and an optional comment."""

    __tablename__ = "ratings"
    __table_args__ = (Index("ix_ratings_hall_created", "hall_id", "created_at"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    hall_id: Mapped[int] = mapped_column(ForeignKey("halls.id", ondelete="CASCADE"))
    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), unique=True
    )
    stars: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime]


class SimulationRunRow(Base):
    """A simulation kept for a hall's manager pages (``onedoor simulate --save``)."""

    __tablename__ = "simulation_runs"
    __table_args__ = (Index("ix_simulation_runs_hall_created", "hall_id", "created_at"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    hall_id: Mapped[int] = mapped_column(ForeignKey("halls.id", ondelete="CASCADE"))
    created_at: Mapped[datetime]
    scenario: Mapped[str] = mapped_column(String(200))
    result: Mapped[dict[str, Any]]
