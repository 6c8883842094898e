"""Loading what the booking rules need: the hall, the matter, its rules and calendar."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, and_, bindparam, column, func, literal_column, select, text
from sqlalchemy.orm import aliased

from booking.domain.booking import Booking, BookingState
from booking.domain.calendar import HallCalendar, Slot, SlotDemandOf
from booking.domain.rules import BookingRules, rules_from_json, slot_throughput
from booking.domain.window import bookable_days, release_moment
from booking.plan import hall_plan
from booking.store import SlotCount, config_hash_sql
from queue_server.db.repository import hall_from_row
from queue_server.db.tables import CounterRow, CounterServiceRow, HallRow, ServiceRow, SlotRow
from queue_server.domain.errors import DomainError
from queue_server.domain.hours import OpeningHours
from queue_server.domain.model import Hall
from queue_server.service.errors import NotFound
from queue_server.service.unit_of_work import UnitOfWork

MEMO_LIMIT = 4096
"""Matter snapshots kept per process."""
SLOT_MEMO_LIMIT = 1024
"""Slots kept per snapshot (a month of 30-minute slots of a 12-hour day is 720)."""


@dataclass(frozen=True)
class Matter:
    """A bookable matter of a hall with everything its rules are checked against.

    ``hall_row`` and ``service`` are detached copies of the rows (read them, never add
    them to a session): a snapshot is shared by the requests that see the same stored
    configuration.
    """

    hall_row: HallRow
    hall: Hall
    service: ServiceRow
    rules: BookingRules
    calendar: HallCalendar
    counters: int
    """Counters serving the matter (for a capacity derived from them)."""
    throughput: float = 0.0
    """Visitors of the matter its counters can serve in one slot (``slot_throughput``)."""
    _slots: dict[datetime, Slot] = field(default_factory=dict, compare=False, repr=False)
    _open: list[tuple[datetime, datetime, list[date]]] = field(
        default_factory=list, compare=False, repr=False
    )

    @property
    def tz(self) -> ZoneInfo:
        return self.hall.tz

    def open_days(self, now: datetime) -> list[date]:
        """``bookable_days`` at ``now``, remembered until the answer next changes (the
        hall's midnight, or a day's release moment)."""
        if self._open:
            since, until, days = self._open[0]
            if since <= now < until:
                return days
        days = bookable_days(now, self.tz, self.rules)
        today = now.astimezone(self.tz).date()
        midnight = datetime.combine(today + timedelta(days=1), time(0), tzinfo=self.tz)
        changes = [midnight.astimezone(UTC)] + [
            moment
            for ahead in range(self.rules.window_days + 1)
            if (moment := release_moment(today + timedelta(days=ahead), self.tz, self.rules)) > now
        ]
        self._open[:] = [(now, min(changes), days)]
        return days

    def slots(self, day: date, demand: SlotDemandOf | None = None) -> list[Slot]:
        """The matter's slots on its hall date ``day`` (``demand``: the hall's plan)."""
        return self.calendar.slots(day, self.rules, self.tz, self.counters, self.throughput, demand)

    def slot_at(self, start: datetime, demand: SlotDemandOf | None = None) -> Slot | None:
        """The matter's slot beginning at ``start``, or None (remembered: the calendar
        of a day is laid out once per snapshot, not once per request; a planned day,
        whose places follow the hall's plan, is laid out each time)."""
        key = start.astimezone(UTC)
        if demand is not None:
            day = key.astimezone(self.tz).date()
            return next((s for s in self.slots(day, demand) if s.start == key), None)
        slot = self._slots.get(key)
        if slot is None:
            slot = self.calendar.slot_at(key, self.rules, self.tz, self.counters, self.throughput)
            if slot is not None:  # not a start a client made up: those are not kept
                if len(self._slots) >= SLOT_MEMO_LIMIT:
                    self._slots.clear()
                self._slots[key] = slot
        return slot


def calendar_of(hall_row: HallRow) -> HallCalendar:
    return HallCalendar.from_json(
        OpeningHours.from_json(hall_row.opening_hours), hall_row.booking_calendar or {}
    )


def rules_of(service: ServiceRow) -> BookingRules:
    """The matter's rules; a matter whose online booking was switched off keeps the
    defaults for the bookings it already has."""
    return rules_from_json(service.booking or {})


async def load_hall(uow: UnitOfWork, hall_id: int) -> HallRow:
    row = await uow.session.get(HallRow, hall_id)
    if row is None:
        raise NotFound(f"no hall with id {hall_id}")
    return row


# What a matter's rules depend on, read in one statement: every column of the hall but
# its event counter (bumped by each booking), every column of the matter, how many
# counters serve it and their share of time for it. The same values give the same snapshot.
_HALL_COLUMNS = [c for c in HallRow.__table__.columns if c.key != "event_seq"]
_SERVICE_COLUMNS = list(ServiceRow.__table__.columns)
_FINGERPRINT = len(_HALL_COLUMNS) + len(_SERVICE_COLUMNS) + 2
_snapshots: dict[tuple[int, int], tuple[tuple[Any, ...], Matter]] = {}


def _snapshot_query(with_slot: bool) -> Select[Any]:
    service_id: Any = bindparam("service")
    counters = (
        select(func.count())
        .select_from(CounterServiceRow)
        .join(CounterRow, CounterRow.id == CounterServiceRow.counter_id)
        .where(CounterServiceRow.service_id == service_id)
        .scalar_subquery()
    )
    # Each counter serving the matter at primary level gives it an equal part of its time
    # with its other primary matters: the sum of those parts is the matter's counters.
    others = aliased(CounterServiceRow)
    primaries = (
        select(func.count())
        .select_from(others)
        .where(others.counter_id == CounterServiceRow.counter_id, others.level == "primary")
        .scalar_subquery()
    )
    shares = (
        select(func.coalesce(func.sum(1.0 / primaries), 0.0))
        .select_from(CounterServiceRow)
        .where(CounterServiceRow.service_id == service_id, CounterServiceRow.level == "primary")
        .scalar_subquery()
    )
    stmt = (
        select(*_HALL_COLUMNS, *_SERVICE_COLUMNS, counters, shares)
        .select_from(HallRow)
        .outerjoin(ServiceRow, and_(ServiceRow.id == service_id, ServiceRow.hall_id == HallRow.id))
        .where(HallRow.id == bindparam("hall"))
    )
    if with_slot:
        stmt = stmt.add_columns(SlotRow.id, SlotRow.bookable, SlotRow.booked).outerjoin(
            SlotRow,
            and_(SlotRow.service_id == ServiceRow.id, SlotRow.starts_at == bindparam("start")),
        )
    return stmt


# Built once: every request binds its own values.
_MATTER = _snapshot_query(with_slot=False)
_MATTER_AND_SLOT = _snapshot_query(with_slot=True)

# PostgreSQL: the booking's holder rows locked in the same statement, unless the slot is
# stored full (that attempt is refused without a lock) or the matter is not bookable. A
# person's bookings must be read *after* their lock is held, so that a booking committed by
# someone holding it first is seen; this statement's snapshot is older than its lock wait.
# So each row is only updated if no other transaction changed it since this statement's
# snapshot (its xmin is the one the snapshot saw; a conflicting row is locked either way):
# when every row was updated, no booking of the person committed in between and the
# bookings read here are current; otherwise the caller locks and reads again. Every
# transaction that books updates its holder rows, so their xmin changes with each booking.
_HOLDERS_LOCKED = (
    text(
        """
        INSERT INTO booking_holders AS held (hall_id, key, touched_at)
        SELECT CAST(:hall AS bigint), k.key, CAST(:now AS timestamptz)
        FROM unnest(CAST(:keys AS varchar[])) AS k(key)
        WHERE EXISTS (SELECT 1 FROM services sv
                      WHERE sv.id = CAST(:service AS bigint)
                        AND sv.hall_id = CAST(:hall AS bigint)
                        AND sv.active AND sv.booking IS NOT NULL)
          AND NOT EXISTS (SELECT 1 FROM slots sl
                          WHERE sl.service_id = CAST(:service AS bigint)
                            AND sl.starts_at = CAST(:start AS timestamptz)
                            AND sl.booked >= sl.bookable)
        ORDER BY k.key
        ON CONFLICT (hall_id, key) DO UPDATE SET touched_at = excluded.touched_at
        WHERE held.xmin = (SELECT seen.xmin FROM booking_holders seen
                           WHERE seen.hall_id = held.hall_id AND seen.key = held.key)
        RETURNING held.key
        """
    )
    .columns(column("key"))
    .cte("locked")
)
_THEIR_BOOKINGS = (
    text(
        """
        SELECT array_agg(ROW(b.id, b.code, b.service_id, b.slot_start, b.state, b.phone,
                             b.id_tail, b.name, b.made_at, b.checked_in_at, b.due_at)
                         ORDER BY b.id)
        FROM bookings b
        WHERE b.hall_id = CAST(:hall AS bigint)
          AND (b.phone = CAST(:phone AS varchar) OR b.id_tail = CAST(:tail AS varchar))
        """
    )
    .columns(column("bookings"))
    .scalar_subquery()
)
_MATTER_SLOT_AND_HOLDER = _MATTER_AND_SLOT.add_cte(_HOLDERS_LOCKED).add_columns(
    select(func.count()).select_from(_HOLDERS_LOCKED).scalar_subquery(),
    _THEIR_BOOKINGS,
    literal_column(config_hash_sql("halls", "services")),
)
_config_hashes: dict[tuple[int, int], tuple[Matter, str]] = {}


def _snapshot(values: tuple[Any, ...]) -> Matter:
    hall_values = values[: len(_HALL_COLUMNS)]
    service_values = values[len(_HALL_COLUMNS) : _FINGERPRINT - 2]
    hall_row = HallRow(**{c.key: v for c, v in zip(_HALL_COLUMNS, hall_values, strict=True)})
    service = ServiceRow(
        **{c.key: v for c, v in zip(_SERVICE_COLUMNS, service_values, strict=True)}
    )
    rules = rules_of(service)
    counters = int(values[_FINGERPRINT - 2] or 0) if rules.capacity is None else 0
    shares = float(values[_FINGERPRINT - 1] or 0.0)
    throughput = slot_throughput(rules.slot_minutes, service.typical_minutes, [shares])
    return Matter(
        hall_row, hall_from_row(hall_row), service, rules, calendar_of(hall_row), counters,
        throughput,
    )  # fmt: skip


async def load_matter_at(
    uow: UnitOfWork,
    hall_id: int,
    service_id: int,
    start: datetime | None,
    *,
    for_booking: bool = True,
) -> tuple[Matter, SlotCount | None]:
    """The matter ``service_id`` of hall ``hall_id`` and, given ``start``, its stored slot
    beginning then (None if not stored yet), all in one statement.

    With ``for_booking``, refuse a matter that is inactive or not booked online (409 saying
    to take a ticket at the hall instead). The rules and calendar are parsed once per
    stored configuration: each call reads the configuration and reuses the snapshot only
    if every value is the same, so a change made by any process counts at once.
    """
    moment = start.astimezone(UTC) if start is not None else None
    params: dict[str, Any] = {"hall": hall_id, "service": service_id}
    stmt = _MATTER
    if moment is not None:
        stmt, params["start"] = _MATTER_AND_SLOT, moment
    row = (await uow.session.execute(stmt, params)).first()
    return _matter_from(
        tuple(row) if row is not None else None, hall_id, service_id, moment,
        for_booking=for_booking,
    )  # fmt: skip


def _matter_from(
    values: tuple[Any, ...] | None,
    hall_id: int,
    service_id: int,
    moment: datetime | None,
    *,
    for_booking: bool,
) -> tuple[Matter, SlotCount | None]:
    """The matter and slot of a row of ``_snapshot_query`` (None: no such hall)."""
    if values is None:
        raise NotFound(f"no hall with id {hall_id}")
    if values[len(_HALL_COLUMNS)] is None:  # no such matter in this hall
        raise NotFound(f"hall {hall_id} has no matter with id {service_id}")
    fingerprint = values[:_FINGERPRINT]
    cached = _snapshots.get((hall_id, service_id))
    if cached is not None and cached[0] == fingerprint:
        matter = cached[1]
    else:
        matter = _snapshot(fingerprint)
        if len(_snapshots) >= MEMO_LIMIT:
            _snapshots.clear()
        _snapshots[(hall_id, service_id)] = (fingerprint, matter)
    if for_booking and (matter.service.booking is None or not matter.service.active):
        raise DomainError(
            f"matter {matter.service.name_en} ({matter.service.name_zh}) is not booked "
            "online; take a ticket at the hall's kiosk instead"
        )
    slot = None
    if moment is not None and values[_FINGERPRINT] is not None:
        slot_id, bookable, booked = values[_FINGERPRINT : _FINGERPRINT + 3]
        slot = SlotCount(int(slot_id), moment, int(bookable), int(booked))
    return matter, slot


def current_matter(hall_id: int, service_id: int) -> Matter | None:
    """The snapshot of the matter's configuration this process read last (None: none yet)."""
    cached = _snapshots.get((hall_id, service_id))
    return cached[1] if cached is not None else None


def current_config(hall_id: int, service_id: int) -> tuple[Matter, str] | None:
    """PostgreSQL: the matter's last read snapshot and the database's hash of the
    configuration it was made from (``store.config_hash_sql``), for a statement that books
    only if the configuration is still that one; None if not known."""
    known = _config_hashes.get((hall_id, service_id))
    if known is None or known[0] is not current_matter(hall_id, service_id):
        return None
    return known


@dataclass(frozen=True)
class Holder:
    """A visitor's holder rows as ``load_matter_for_booking`` found them."""

    locked: bool
    """Every row is locked and no booking of theirs committed since ``bookings`` were read."""
    bookings: list[Booking]
    """Their bookings in the hall (under the phone number or the ID tail)."""


async def load_matter_for_booking(
    uow: UnitOfWork,
    hall_id: int,
    service_id: int,
    start: datetime,
    *,
    keys: list[str],
    phone: str | None,
    id_tail: str | None,
) -> tuple[Matter, SlotCount | None, Holder | None]:
    """``load_matter_at`` for a booking; on PostgreSQL the same statement also locks the
    visitor's holder rows (``keys``) and reads their bookings (``Holder``; None where the
    database is SQLite or nothing was locked because the slot is stored full or the matter
    is not bookable)."""
    if not keys or uow.session.get_bind().dialect.name != "postgresql":
        matter, slot = await load_matter_at(uow, hall_id, service_id, start)
        return matter, slot, None
    moment = start.astimezone(UTC)
    params = {
        "hall": hall_id, "service": service_id, "start": moment, "keys": sorted(keys),
        "now": uow.clock.now(), "phone": phone, "tail": id_tail,
    }  # fmt: skip
    row = (await uow.session.execute(_MATTER_SLOT_AND_HOLDER, params)).first()
    values = tuple(row) if row is not None else None
    matter, slot = _matter_from(values, hall_id, service_id, moment, for_booking=True)
    assert values is not None
    held, rows, config_hash = values[_FINGERPRINT + 3 : _FINGERPRINT + 6]
    if config_hash is not None:
        if len(_config_hashes) >= MEMO_LIMIT:
            _config_hashes.clear()
        _config_hashes[(hall_id, service_id)] = (matter, config_hash)
    rows = rows or []
    if not held:
        return matter, slot, None
    tz = matter.tz.key
    bookings = [
        Booking(
            hall_id=hall_id, service_id=r[2], slot_start=r[3], name=r[7], phone=r[5],
            code=r[1], timezone=tz, made_at=r[8], id_tail=r[6], id=r[0],
            state=BookingState(r[4]), checked_in_at=r[9], due_at=r[10],
        )
        for r in rows
    ]  # fmt: skip
    return matter, slot, Holder(int(held) == len(keys), bookings)


async def load_matter(
    uow: UnitOfWork, hall_id: int, service_id: int, *, for_booking: bool = True
) -> Matter:
    """The matter ``service_id`` of hall ``hall_id`` (see ``load_matter_at``)."""
    matter, _ = await load_matter_at(uow, hall_id, service_id, None, for_booking=for_booking)
    return matter


async def demand_of(uow: UnitOfWork, matter: Matter, day: date) -> SlotDemandOf | None:
    """The hall's plan for ``day`` as the matter's slots see it, when its rules plan
    places from the walk-ins expected (``target_load``, which wins over ``per_counter`` and
    ``walk_in_share``; only a fixed ``capacity`` wins over it) and the hall has history."""
    target = matter.rules.target_load
    if target is None or matter.rules.capacity is not None:
        return None
    plan = await hall_plan(uow, matter.hall.id, matter.tz, matter.calendar, day, target)
    return plan.demand(matter.throughput) if plan is not None else None
