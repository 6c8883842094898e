"""How a hall's counters were staffed, read from its own record (the counters' opening,
pausing and closing events, kept nine weeks by the day close).

The booking plan learns from it how many counters are at work in each quarter of an hour
of a weekday (a lunch hour in two shifts shows), and the wait estimate how long a paused
counter usually stays away. Both fall back to plain assumptions for a hall with no record.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from zoneinfo import ZoneInfo

from sqlalchemy import select

from queue_server.db.tables import HallEventRow

from .day_close import COUNTER_EVENTS
from .unit_of_work import UnitOfWork

DEFAULT_BREAK_MINUTES = 30.0
BREAK_WINDOW = timedelta(days=28)
KEEP_SECONDS = 600.0
_breaks: dict[int, tuple[float, float]] = {}


@dataclass(frozen=True)
class Stint:
    """A counter open from ``start`` to ``end`` (aware UTC)."""

    counter_id: int
    start: datetime
    end: datetime


async def _changes(
    uow: UnitOfWork, hall_id: int, start: datetime, end: datetime
) -> list[tuple[datetime, int, str]]:
    rows = await uow.session.execute(
        select(HallEventRow.created_at, HallEventRow.payload, HallEventRow.name)
        .where(
            HallEventRow.hall_id == hall_id,
            HallEventRow.name.in_(COUNTER_EVENTS),
            HallEventRow.created_at >= start,
            HallEventRow.created_at < end,
        )
        .order_by(HallEventRow.created_at, HallEventRow.seq)
    )
    return [(at, int(payload["counter_id"]), name) for at, payload, name in rows]


def stints(changes: Iterable[tuple[datetime, int, str]], until: datetime) -> list[Stint]:
    """The stretches each counter was open, from its changes in time order (a counter still
    open at ``until`` is counted open until then)."""
    opened: dict[int, datetime] = {}
    found: list[Stint] = []
    for at, counter_id, name in changes:
        if name == "CounterOpened":
            opened.setdefault(counter_id, at)
        elif counter_id in opened:
            found.append(Stint(counter_id, opened.pop(counter_id), at))
    found.extend(Stint(cid, start, until) for cid, start in opened.items())
    return found


async def staffed_minutes(
    uow: UnitOfWork,
    hall_id: int,
    tz: ZoneInfo,
    dates: Sequence[date],
    grid_minutes: int,
) -> dict[int, float] | None:
    """Counter-minutes at work in each stretch of ``grid_minutes`` (keyed by its start,
    minutes after local midnight), averaged over those of ``dates`` on which any counter
    opened; None when the record has none of them."""
    totals: dict[int, float] = {}
    days = 0
    for day in dates:
        midnight = datetime.combine(day, clock_time(0), tzinfo=tz)
        end = midnight + timedelta(days=1)
        changes = await _changes(uow, hall_id, midnight, end)
        if not any(name == "CounterOpened" for _, _, name in changes):
            continue
        days += 1
        for stint in stints(changes, end):
            first = (stint.start - midnight).total_seconds() / 60
            last = (stint.end - midnight).total_seconds() / 60
            minute = int(first // grid_minutes * grid_minutes)
            while minute < last:
                overlap = min(last, minute + grid_minutes) - max(first, minute)
                totals[minute] = totals.get(minute, 0.0) + max(0.0, overlap)
                minute += grid_minutes
    if not days:
        return None
    return {minute: total / days for minute, total in totals.items()}


async def usual_break(uow: UnitOfWork, hall_id: int) -> float:
    """How long, in minutes, the hall's counters usually stay paused: the median of the
    pauses of the last four weeks that ended in a reopening (5 min to 3 h), else 30."""
    kept = _breaks.get(hall_id)
    if kept is not None and time.monotonic() - kept[0] < KEEP_SECONDS:
        return kept[1]
    now = uow.clock.now()
    changes = await _changes(uow, hall_id, now - BREAK_WINDOW, now)
    paused: dict[int, datetime] = {}
    lengths: list[float] = []
    for at, counter_id, name in changes:
        if name == "CounterPaused":
            paused[counter_id] = at
        elif counter_id in paused:
            started = paused.pop(counter_id)
            minutes = (at - started).total_seconds() / 60
            if name == "CounterOpened" and 5 <= minutes <= 180:
                lengths.append(minutes)
    usual = statistics.median(lengths) if len(lengths) >= 3 else DEFAULT_BREAK_MINUTES
    _breaks[hall_id] = (time.monotonic(), usual)
    return usual


def forget() -> None:
    """Drop what this process keeps (tests: each has a database of its own)."""
    _breaks.clear()
