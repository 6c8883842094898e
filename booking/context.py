"""Loading what the booking rules need: the hall, the matter, its rules and calendar."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, and_, bindparam, func, select
from sqlalchemy.orm import aliased

from booking.domain.calendar import HallCalendar, Slot, SlotDemandOf
from booking.domain.rules import BookingRules, rules_from_json, slot_throughput
from booking.plan import hall_plan
from booking.store import SlotCount
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

    @property
    def tz(self) -> ZoneInfo:
        return self.hall.tz

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
    if row is None:
        raise NotFound(f"no hall with id {hall_id}")
    values = tuple(row)
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
        slot_id, bookable, booked = values[_FINGERPRINT:]
        slot = SlotCount(int(slot_id), moment, int(bookable), int(booked))
    return matter, slot


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
