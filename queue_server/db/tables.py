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
    # A visit for the same matter by the same visitor within this many days is a repeat.
    repeat_window_days: Mapped[int] = mapped_column(Integer, default=30, server_default="30")
    # The key of the hall's visitor hashes (HMAC-SHA256): a phone or ID is never kept in
    # clear for the one-visit figures, and hashes of two halls cannot be linked.
    visitor_salt: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # After this many days visitors' names, phone numbers, ID tails and hashes are erased.
    personal_data_days: Mapped[int] = mapped_column(Integer, default=180, server_default="180")


class ServiceRow(Base):
    __tablename__ = "services"
    __table_args__ = (
        # At most one desk per hall, even when two managers set one at the same moment.
        Index(
            "uq_services_hall_desk",
            "hall_id",
            unique=True,
            postgresql_where=text("desk"),
            sqlite_where=text("desk"),
        ),
    )
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
    # The hall's "can't get it done" desk: escalated visits queue for this matter.
    desk: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())


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


class StaffSessionRow(Base):
    """A staff member signed in on one browser. The session cookie carries the token; the
    row is what makes it valid, so signing out (here or everywhere), a password change and
    a deactivation end it at once, a copied cookie with it."""

    __tablename__ = "staff_sessions"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # SHA-256 of the session token (256-bit random), never the token.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))


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
    __table_args__ = (Index("ix_visits_hall_visitor", "hall_id", "visitor_hash"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    hall_id: Mapped[int] = mapped_column(ForeignKey("halls.id", ondelete="CASCADE"), index=True)
    business_day: Mapped[date] = mapped_column(Date)
    follow_token: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    # Who came (service.visitors.visitor_hash of their phone, or ID tail and name), when
    # known: from their booking, or given at the counter. Repeat visits are found by it.
    visitor_hash: Mapped[str | None] = mapped_column(String(64))


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
        # A counter's next candidates (repository.waiting_heads): per matter, kind and
        # priority in arrival order, waiting tickets only.
        Index(
            "ix_tickets_waiting_heads",
            "hall_id",
            "business_day",
            "service_id",
            "kind",
            "priority",
            "queued_at",
            "id",
            postgresql_where=text("state = 'waiting'"),
            sqlite_where=text("state = 'waiting'"),
        ),
        # The ticket a counter is busy with (repository.active_ticket_at): the few called
        # or being served, not every ticket the counter ever handled.
        Index(
            "ix_tickets_active_at_counter",
            "counter_id",
            postgresql_where=text("state IN ('called', 'serving')"),
            sqlite_where=text("state IN ('called', 'serving')"),
        ),
        # Each matter's latest services (service.floor._stats), newest first: a few
        # entries read per matter, however long the hall's history.
        Index(
            "ix_tickets_done_by_matter",
            "service_id",
            "finished_at",
            postgresql_where=text("state = 'done'"),
            sqlite_where=text("state = 'done'"),
        ),
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
    # With the outcome missing_documents: which of the matter's documents were missing.
    missing_documents: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True))
    # An escalation's ticket: the one whose matter was not done.
    origin_ticket_id: Mapped[int | None] = mapped_column(
        ForeignKey("tickets.id", ondelete="SET NULL"), index=True
    )
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
    # The hall cancelled it (a day closed, hours changed): why; the visitor is told once
    # (notice_sent_at) by the reminder job.
    cancel_reason: Mapped[str | None] = mapped_column(String(500))
    notice_sent_at: Mapped[datetime | None]


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


class OutcomeChangeRow(Base):
    """A correction of a finished service's outcome: who, when, before and after."""

    __tablename__ = "outcome_changes"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    hall_id: Mapped[int] = mapped_column(ForeignKey("halls.id", ondelete="CASCADE"))
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    changed_at: Mapped[datetime]
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    before: Mapped[dict[str, Any]]
    after: Mapped[dict[str, Any]]
    reason: Mapped[str] = mapped_column(Text, default="")


class DeskCaseRow(Base):
    """A case of the "can't get it done" desk: a visitor's matter that was not done, and
    the hall's answer: open → answered → closed with a resolution."""

    __tablename__ = "desk_cases"
    __table_args__ = (Index("ix_desk_cases_hall_status", "hall_id", "status"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    hall_id: Mapped[int] = mapped_column(ForeignKey("halls.id", ondelete="CASCADE"))
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id", ondelete="CASCADE"), index=True)
    # The desk's ticket the case was opened from, and the ticket that was not done.
    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), unique=True
    )
    origin_ticket_id: Mapped[int | None] = mapped_column(
        ForeignKey("tickets.id", ondelete="SET NULL")
    )
    # The matter the visitor could not get done.
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(Text)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    opened_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    opened_at: Mapped[datetime]
    promised_on: Mapped[date] = mapped_column(Date)
    answer: Mapped[str | None] = mapped_column(Text)
    answered_at: Mapped[datetime | None]
    resolution: Mapped[str | None] = mapped_column(String(16))
    closed_at: Mapped[datetime | None]
    # When the reminder job found it past its promised date, still open.
    overdue_since: Mapped[datetime | None]


class CaseNoteRow(Base):
    __tablename__ = "case_notes"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    case_id: Mapped[int] = mapped_column(
        ForeignKey("desk_cases.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime]
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    text: Mapped[str] = mapped_column(Text)


class WebhookRow(Base):
    """A manager's address that is sent the hall's events (signed; retried; never in the
    way of a request)."""

    __tablename__ = "webhooks"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    hall_id: Mapped[int] = mapped_column(ForeignKey("halls.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(500))
    # HMAC-SHA256 key of the X-OneDoor-Signature header (shown to the hall's managers).
    secret: Mapped[str] = mapped_column(String(64))
    # Event names sent (["*"]: all of them).
    events: Mapped[list[Any]]
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    # The hall's last event number looked at: later events become deliveries.
    cursor: Mapped[int] = mapped_column(BigInteger, default=0)


class WebhookDeliveryRow(Base):
    """One event for one webhook: its attempts and how the receiver answered."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("webhook_id", "event_seq", name="uq_webhook_deliveries_event"),
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    hall_id: Mapped[int] = mapped_column(ForeignKey("halls.id", ondelete="CASCADE"))
    event_seq: Mapped[int] = mapped_column(BigInteger)
    event_name: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    # pending → delivered, or failed after the last attempt (a replay makes it pending).
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]


class DailyReportRow(Base):
    """A hall day's figures as the day close found them (the statistics by matter and the
    outcome report), for the manager to download later."""

    __tablename__ = "daily_reports"
    hall_id: Mapped[int] = mapped_column(
        ForeignKey("halls.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    made_at: Mapped[datetime]
    statistics: Mapped[dict[str, Any]]
    outcomes: Mapped[dict[str, Any]]


class AuditRow(Base):
    """One privileged action: who (staff member or device, and their address), when, what
    (``action``, ``target``) and the record before and after. Written in the action's own
    transaction; no API route changes or deletes it."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_hall_at", "hall_id", "at"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    # None: not a hall's (an admin account, a new hall before it has an id).
    hall_id: Mapped[int | None] = mapped_column(ForeignKey("halls.id", ondelete="SET NULL"))
    at: Mapped[datetime]
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    # Who it was, as they were named then ("scheduler" for a job).
    actor: Mapped[str] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(128))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
