"""A hall's booking plan from its own history (``BookingRules.target_load``).

The walk-ins a hall can expect on a date are those of the same weekday in its last weeks
(before today): how many came in each quarter of an hour, with the visits sent on to a
second matter, and the counter time their matters typically take. With the counters at
work then, as the hall's record of its counters opening, pausing and closing shows them on
those days (``queue_server.service.staffing``; without a record, every counter serving a
matter, all day), that gives the spare share of counter time in each stretch of the day
(``booking.domain.capacity.plan_day``, which the simulator runs too), and each matter's
slot offers that share of what its own counters can serve. A hall with no such history yet
holds back its ``walk_in_share`` instead.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from booking.domain.calendar import HallCalendar
from booking.domain.capacity import GRID_MINUTES, HallPlan, plan_day
from queue_server.db.tables import CounterRow, CounterServiceRow, ServiceRow, TicketRow
from queue_server.domain.model import TicketKind
from queue_server.service.staffing import staffed_minutes
from queue_server.service.unit_of_work import UnitOfWork

WEEKS = 8
"""The same weekday of this many past weeks is the hall's history for a date."""
KEEP_SECONDS = 600.0
KEEP_PLANS = 4096


_plans: dict[tuple[object, ...], tuple[float, HallPlan | None]] = {}


async def hall_plan(
    uow: UnitOfWork,
    hall_id: int,
    tz: ZoneInfo,
    calendar: HallCalendar,
    day: date,
    target_load: float,
) -> HallPlan | None:
    """The plan of hall ``hall_id`` for its date ``day``; None without history to go by.

    Kept a few minutes per hall, date, target, counters and opening: a change of counters
    or hours makes a new plan at once."""
    counters = int(
        await uow.session.scalar(
            select(func.count(func.distinct(CounterServiceRow.counter_id)))
            .join(CounterRow, CounterRow.id == CounterServiceRow.counter_id)
            .where(CounterRow.hall_id == hall_id)
        )
        or 0
    )
    spans = tuple(
        (int(first.total_seconds() // 60), int(last.total_seconds() // 60))
        for first, last in calendar.open_spans(day)
    )
    key = (hall_id, day, target_load, counters, spans)
    kept = _plans.get(key)
    if kept is not None and time.monotonic() - kept[0] < KEEP_SECONDS:
        return kept[1]
    if len(_plans) >= KEEP_PLANS:
        _plans.clear()
    plan = await _plan(uow, hall_id, tz, day, spans, counters, target_load)
    _plans[key] = (time.monotonic(), plan)
    return plan


async def _plan(
    uow: UnitOfWork,
    hall_id: int,
    tz: ZoneInfo,
    day: date,
    spans: tuple[tuple[int, int], ...],
    counters: int,
    target_load: float,
) -> HallPlan | None:
    # The same weekday of past weeks, never today (still under way).
    today = uow.clock.now().astimezone(tz).date()
    dates = [d for d in (day - timedelta(weeks=k) for k in range(1, WEEKS + 1)) if d < today]
    if not dates:
        return None
    rows = (
        await uow.session.execute(
            select(TicketRow.business_day, TicketRow.issued_at, ServiceRow.typical_minutes)
            .join(ServiceRow, ServiceRow.id == TicketRow.service_id)
            .where(
                TicketRow.hall_id == hall_id,
                TicketRow.business_day.in_(dates),
                # Walk-ins, and the visits sent on to a second matter: counter time too.
                TicketRow.kind.in_([TicketKind.WALK_IN, TicketKind.TRANSFER]),
            )
        )
    ).all()
    days_seen = len({row[0] for row in rows})
    if not days_seen:
        return None
    walk_in_minutes: dict[int, float] = {}
    for _, issued, minutes in rows:
        local = issued.astimezone(tz)
        minute = (local.hour * 60 + local.minute) // GRID_MINUTES * GRID_MINUTES
        walk_in_minutes[minute] = walk_in_minutes.get(minute, 0.0) + minutes / days_seen
    # Counters at work as the hall's record shows them on those days (lunch in shifts,
    # a counter that closes early), else every counter serving a matter, all day.
    staffed = await staffed_minutes(uow, hall_id, tz, dates, GRID_MINUTES)
    midnight = datetime.combine(day, datetime.min.time(), tzinfo=tz)
    return plan_day(midnight, spans, staffed or counters, walk_in_minutes, target_load)


def forget() -> None:
    """Drop what this process keeps (tests: each has a database of its own)."""
    _plans.clear()
