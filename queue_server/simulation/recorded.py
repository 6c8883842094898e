"""What a hall's recorded tickets and bookings measure, over a window of business days.

Each measure is one aggregate statement filtered by the hall and the window's dates, so a
hall with years of history costs about as much as one with a month. Durations and the
hall-local hour are computed by the database (PostgreSQL natively; SQLite, which knows
no time zones, from the hall's UTC offsets over the window).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Integer, and_, case, cast, extract, func, select
from sqlalchemy.orm import QueryableAttribute

from booking.domain.booking import BookingState
from queue_server.db.tables import (
    BookingRow,
    CounterRow,
    CounterServiceRow,
    ServiceRow,
    TicketRow,
)
from queue_server.domain.model import ServiceLevel, TicketKind, TicketState
from queue_server.service.unit_of_work import UnitOfWork

CONTINUING_KINDS = (str(TicketKind.TRANSFER), str(TicketKind.ESCALATION))
"""Tickets that continue a visit; every other kind is a visit's first ticket."""


@dataclass(frozen=True)
class Window:
    """The hall-local business days measured: from ``first_day`` up to, not including,
    ``today`` (still under way, it would make a short day)."""

    hall_id: int
    first_day: date
    today: date
    tz: ZoneInfo

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first_day, time(0), tzinfo=self.tz).astimezone(UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.today, time(0), tzinfo=self.tz).astimezone(UTC)

    def tickets(self) -> ColumnElement[bool]:
        return and_(
            TicketRow.hall_id == self.hall_id,
            TicketRow.business_day >= self.first_day,
            TicketRow.business_day < self.today,
        )


@dataclass(frozen=True)
class Served:
    count: int
    mean: float
    """Minutes."""
    cv: float


@dataclass(frozen=True)
class BookingFigures:
    kept_or_missed: int
    """Bookings whose slot has passed and that were not cancelled."""
    no_shows: int
    check_ins: int
    arrive_mean: float
    """Minutes from the slot start to the check-in (<0: early)."""
    arrive_sd: float


async def active_services(uow: UnitOfWork, hall_id: int) -> dict[int, ServiceRow]:
    """The hall's active matters by id, in the order they were created."""
    rows = await uow.session.execute(
        select(ServiceRow)
        .where(ServiceRow.hall_id == hall_id, ServiceRow.active.is_(True))
        .order_by(ServiceRow.id)
    )
    return {row.id: row for row in rows.scalars()}


async def counter_profiles(
    uow: UnitOfWork, hall_id: int, active: set[int]
) -> dict[int, dict[int, ServiceLevel]]:
    """Counter number to the active matters it serves and at which level; counters that
    serve no active matter are left out."""
    rows = await uow.session.execute(
        select(CounterRow.number, CounterServiceRow.service_id, CounterServiceRow.level)
        .join(CounterServiceRow, CounterServiceRow.counter_id == CounterRow.id)
        .where(CounterRow.hall_id == hall_id)
    )
    profiles: dict[int, dict[int, ServiceLevel]] = {}
    for number, service_id, level in rows:
        if service_id in active:
            profiles.setdefault(number, {})[service_id] = ServiceLevel(level)
    return profiles


async def first_tickets(uow: UnitOfWork, window: Window) -> list[tuple[int, str, str, int]]:
    """Visits by matter, kind and priority class: the visits' first tickets."""
    rows = await uow.session.execute(
        select(TicketRow.service_id, TicketRow.kind, TicketRow.priority, func.count())
        .where(window.tickets(), TicketRow.kind.not_in(CONTINUING_KINDS))
        .group_by(TicketRow.service_id, TicketRow.kind, TicketRow.priority)
    )
    return [(sid, kind, priority, int(n)) for sid, kind, priority, n in rows]


async def business_days(uow: UnitOfWork, window: Window) -> tuple[int, date, date]:
    """How many business days had a ticket, the first and the last of them."""
    row = (
        await uow.session.execute(
            select(
                func.count(TicketRow.business_day.distinct()),
                func.min(TicketRow.business_day),
                func.max(TicketRow.business_day),
            ).where(window.tickets())
        )
    ).one()
    return int(row[0]), row[1], row[2]


async def service_times(uow: UnitOfWork, window: Window) -> dict[int, Served]:
    """Per matter: its done tickets' count, mean minutes from start to finish and the
    coefficient of variation (from the sums, so the database returns one row a matter)."""
    seconds = _seconds_between(uow, TicketRow.started_at, TicketRow.finished_at)
    rows = await uow.session.execute(
        select(TicketRow.service_id, func.count(), func.sum(seconds), func.sum(seconds * seconds))
        .where(
            window.tickets(),
            TicketRow.state == TicketState.DONE,
            TicketRow.started_at.is_not(None),
            TicketRow.finished_at.is_not(None),
        )
        .group_by(TicketRow.service_id)
    )
    found = {}
    for service_id, count, total, squares in rows:
        mean, sd = _mean_sd(int(count), float(total or 0), float(squares or 0))
        found[service_id] = Served(int(count), mean / 60, sd / mean if mean > 0 else 0.0)
    return found


async def transfers(uow: UnitOfWork, window: Window) -> dict[tuple[int, int], int]:
    """(matter of the visit's first ticket, matter transferred on to) to how many times."""
    first = (
        select(TicketRow.visit_id, TicketRow.service_id)
        .where(window.tickets(), TicketRow.kind.not_in(CONTINUING_KINDS))
        .subquery("first")
    )
    rows = await uow.session.execute(
        select(first.c.service_id, TicketRow.service_id, func.count())
        .join(first, first.c.visit_id == TicketRow.visit_id)
        .where(window.tickets(), TicketRow.kind == TicketKind.TRANSFER)
        .group_by(first.c.service_id, TicketRow.service_id)
    )
    return {(source, to): int(n) for source, to, n in rows}


async def walk_ins_by_hour(uow: UnitOfWork, window: Window) -> dict[int, int]:
    """Walk-in first tickets by the hall-local hour they were issued in."""
    hour = _local_hour(uow, window).label("hour")
    # Grouped in a subquery: PostgreSQL would see the timezone parameter of the select
    # and of a repeated GROUP BY expression as two different expressions.
    issued = (
        select(hour)
        .where(window.tickets(), TicketRow.kind == TicketKind.WALK_IN)
        .subquery("issued")
    )
    rows = await uow.session.execute(select(issued.c.hour, func.count()).group_by(issued.c.hour))
    return {int(h): int(n) for h, n in rows}


async def booking_figures(uow: UnitOfWork, window: Window) -> BookingFigures:
    """No-shows and punctuality of the bookings whose slots lie in the window."""
    late = _seconds_between(uow, BookingRow.slot_start, BookingRow.checked_in_at)
    row = (
        await uow.session.execute(
            select(
                func.count().filter(BookingRow.state != BookingState.CANCELLED),
                func.count().filter(BookingRow.state == BookingState.NO_SHOW),
                func.count(BookingRow.checked_in_at),
                func.sum(late),
                func.sum(late * late),
            ).where(
                BookingRow.hall_id == window.hall_id,
                BookingRow.slot_start >= window.start,
                BookingRow.slot_start < window.end,
            )
        )
    ).one()
    check_ins = int(row[2])
    mean, sd = _mean_sd(check_ins, float(row[3] or 0), float(row[4] or 0))
    return BookingFigures(int(row[0]), int(row[1]), check_ins, mean / 60, sd / 60)


def _seconds_between(
    uow: UnitOfWork, start: QueryableAttribute[Any], end: QueryableAttribute[Any]
) -> ColumnElement[Any]:
    """Seconds from ``start`` to ``end`` (NULL when either is)."""
    if uow.repo.dialect == "postgresql":
        return extract("epoch", end - start)
    # SQLite keeps UTC timestamps as text, which julianday reads (in days).
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def _local_hour(uow: UnitOfWork, window: Window) -> ColumnElement[int]:
    """The hall-local hour of a ticket's ``issued_at``."""
    if uow.repo.dialect == "postgresql":
        return extract("hour", func.timezone(window.tz.key, TicketRow.issued_at))
    # SQLite knows no time zones: shift by the hall's UTC offset, which changes within
    # the window only at daylight-saving changes.
    changes = utc_offsets(window.tz, window.start, window.end)
    shifts = [(until, f"{offset:+d} minutes") for until, offset in changes]
    shift: ColumnElement[str] | str = shifts[-1][1]
    if len(shifts) > 1:
        shift = case(
            *((TicketRow.issued_at < until, modifier) for until, modifier in shifts[:-1]),
            else_=shifts[-1][1],
        )
    return cast(func.strftime("%H", TicketRow.issued_at, shift), Integer)


def utc_offsets(tz: ZoneInfo, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """The hall's UTC offset in minutes over [start, end), as (in force until, offset)
    pairs; the last one's moment is ``end``."""

    def offset(moment: datetime) -> int:
        delta = moment.astimezone(tz).utcoffset()
        return int(delta.total_seconds() // 60) if delta else 0

    found: list[tuple[datetime, int]] = []
    current, at = offset(start), start
    while at < end:
        step = min(end, at + timedelta(hours=1))
        if offset(step) != current:
            # Narrow the change down to the second.
            low, high = at, step
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                low, high = (middle, high) if offset(middle) == current else (low, middle)
            found.append((high, current))
            current = offset(high)
        at = step
    found.append((end, current))
    return found


def _mean_sd(count: int, total: float, squares: float) -> tuple[float, float]:
    """Mean and sample standard deviation from a count, a sum and a sum of squares."""
    if count == 0:
        return 0.0, 0.0
    mean = total / count
    if count == 1:
        return mean, 0.0
    return mean, math.sqrt(max(0.0, (squares - total * total / count) / (count - 1)))
