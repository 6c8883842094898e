"""The hall floor read from the database: what the policy's look-ahead and the wait
estimate see (``queue_server.domain.floor``), the same shape the simulator builds."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from typing import Any, TypeVar

from sqlalchemy import Executable, and_, func, select

from queue_server.db import statements as sql
from queue_server.db.tables import (
    BookingRow,
    CounterRow,
    CounterServiceRow,
    ServiceRow,
    TicketRow,
)
from queue_server.domain.estimate import TRANSFER
from queue_server.domain.floor import (
    ARRIVAL_WINDOW_MINUTES,
    Candidate,
    CounterNow,
    Floor,
    ServiceStats,
    arrival_rates,
)
from queue_server.domain.model import (
    ACTIVE_STATES,
    CounterState,
    ServiceLevel,
    TicketKind,
)

from .staffing import usual_break
from .unit_of_work import UnitOfWork

RECENT_SAMPLES = 50
"""Recent services per matter the estimate averages (the simulator uses as many)."""
ARRIVAL_WINDOW = timedelta(minutes=ARRIVAL_WINDOW_MINUTES)
NO_SHOW_WINDOW = timedelta(days=28)
NO_SHOW_MIN_BOOKINGS = 20
"""Below this many past bookings the usual 10% no-shows are assumed."""
DEFAULT_NO_SHOW = 0.1
CACHE_SECONDS = 5.0
NO_SHOW_KEEP_SECONDS = 600.0
"""The share of no-shows is over four weeks of bookings: it moves by the day, and is read
again at most this often."""
LATE_WINDOW = timedelta(minutes=15)
STATS_WINDOW = timedelta(days=28)
MATTERS_PER_STATEMENT = 100
"""Matters whose service times one statement reads (SQLite takes at most 500 parts)."""


T = TypeVar("T")
K = TypeVar("K")
_no_shows: dict[int, tuple[float, float]] = {}
_stats_kept: dict[tuple[int, date], tuple[float, dict[int, ServiceStats]]] = {}
_arrivals_kept: dict[tuple[int, date], tuple[float, dict[tuple[int, str], float]]] = {}


async def hall_floor(
    uow: UnitOfWork,
    hall_id: int,
    day: date,
    now: datetime,
    waiting: Sequence[Candidate] | None = None,
    known: Sequence[Candidate] = (),
) -> Floor:
    """Everything the estimate reads, for hall ``hall_id`` at ``now``; the waiting tickets
    read too unless given (``waiting``: a projection's, kept up from the hall's log), with
    those of ``known`` still as they were kept (``Repository.waiting``)."""
    counters = await _counters(uow, hall_id)
    if waiting is None:
        waiting = await uow.repo.waiting(hall_id, day, known=known)
    expected = await _expected_bookings(uow, hall_id, day, now)
    # What moves by the hour, not by the event, is read at most every few seconds: the
    # services' times (``service_stats``) and the arrival rates (the last hour).
    arrivals = await _kept_a_while(
        _arrivals_kept, (hall_id, day), lambda: _arrivals(uow, hall_id, day, now)
    )
    return Floor(
        counters=counters,
        waiting=waiting,
        expected=expected,
        stats=await service_stats(uow, hall_id, day),
        now=now,
        break_minutes=await usual_break(uow, hall_id),
        no_show_rate=await _no_show_rate(uow, hall_id, now),
        arrivals=arrivals,
    )


async def lookahead_floor(
    uow: UnitOfWork, hall_id: int, day: date, now: datetime, waiting: Sequence[Candidate]
) -> Floor | None:
    """What the policy's look-ahead for appointments reads (the counters and their
    services' times), or None when no appointment waits among ``waiting``: then there is
    nothing to look ahead for."""
    if not any(c.kind == TicketKind.APPOINTMENT and c.due_at is not None for c in waiting):
        return None
    counters = await _counters(uow, hall_id)
    return Floor(counters, list(waiting), (), await service_stats(uow, hall_id, day), now)


async def _counters(uow: UnitOfWork, hall_id: int) -> list[CounterNow]:
    profiles: dict[int, dict[int, ServiceLevel]] = {}
    rows = await uow.execute(
        select(CounterServiceRow.counter_id, CounterServiceRow.service_id, CounterServiceRow.level)
        .join(CounterRow, CounterRow.id == CounterServiceRow.counter_id)
        .join(ServiceRow, ServiceRow.id == CounterServiceRow.service_id)
        .where(CounterRow.hall_id == hall_id, ServiceRow.active.is_(True))
    )
    for counter_id, service_id, level in rows:
        profiles.setdefault(counter_id, {})[service_id] = ServiceLevel(level)
    active = {
        counter_id: (service_id, called_at)
        for counter_id, service_id, called_at in await uow.execute(
            select(TicketRow.counter_id, TicketRow.service_id, TicketRow.called_at).where(
                TicketRow.hall_id == hall_id,
                TicketRow.state.in_([str(s) for s in ACTIVE_STATES]),
            )
        )
    }
    found = []
    for counter_id, state, since in await uow.execute(
        select(CounterRow.id, CounterRow.state, CounterRow.state_since)
        .where(CounterRow.hall_id == hall_id)
        .order_by(CounterRow.number)
    ):
        serving, called_at = active.get(counter_id, (None, None))
        found.append(
            CounterNow(
                counter_id=counter_id,
                profile=profiles.get(counter_id, {}),
                state=CounterState(state),
                serving=serving,
                since=called_at,
                paused_at=since if state == CounterState.PAUSED else None,
            )
        )
    return found


async def _expected_bookings(
    uow: UnitOfWork, hall_id: int, day: date, now: datetime
) -> list[tuple[int, datetime]]:
    """Today's bookings not checked in yet whose visitors may still come."""
    rows = await uow.session.execute(
        select(BookingRow.service_id, BookingRow.slot_start).where(
            BookingRow.hall_id == hall_id,
            BookingRow.state == "booked",
            # Still expected: not later than the usual late check-in window.
            BookingRow.slot_start >= now - LATE_WINDOW,
            BookingRow.slot_start < now + timedelta(hours=12),
        )
    )
    return [(service_id, start) for service_id, start in rows]


async def service_stats(uow: UnitOfWork, hall_id: int, day: date) -> dict[int, ServiceStats]:
    """Each matter's latest service times and configured duration (``_stats``), read at
    most every ``CACHE_SECONDS``: they move by the hour, and a call-next with an
    appointment waiting asks for them (the policy's look-ahead) on every call."""
    return await _kept_a_while(_stats_kept, (hall_id, day), lambda: _stats(uow, hall_id, day))


async def _kept_a_while(
    kept: dict[K, tuple[float, T]],
    key: K,
    read: Callable[[], Awaitable[T]],
    seconds: float | None = None,
) -> T:
    """What ``read`` gave for ``key`` less than ``seconds`` (``CACHE_SECONDS``) ago, else
    what it gives now (kept for the next; at most 1,024 keys kept)."""
    found = kept.get(key)
    keep = CACHE_SECONDS if seconds is None else seconds
    if found is None or time.monotonic() - found[0] >= keep:
        found = (time.monotonic(), await read())
        if len(kept) >= 1024:
            kept.clear()
        kept[key] = found
    return found[1]


async def _stats(uow: UnitOfWork, hall_id: int, day: date) -> dict[int, ServiceStats]:
    """Each matter's latest service times (newest first, at most ``RECENT_SAMPLES`` of the
    last four weeks) and its configured duration.

    Per matter, its newest services from the index of done tickets by matter and end
    (``statements.newest_services``, a statement per hundred matters): a matter's read
    stops at its 50th service, or at the window's edge for one served less, in a hall's
    first week as in its third year; not every ticket of its four weeks ranked."""
    typical = (
        await uow.execute(
            select(ServiceRow.id, ServiceRow.typical_minutes)
            .where(ServiceRow.hall_id == hall_id)
            .order_by(ServiceRow.id)
        )
    ).all()
    recent = await recent_minutes(uow.execute, [sid for sid, _ in typical], day)
    return {sid: ServiceStats(tuple(recent.get(sid, ())), float(m)) for sid, m in typical}


async def recent_minutes(
    execute: Callable[[Executable, dict[str, Any]], Awaitable[Any]],
    matters: Sequence[int],
    day: date,
) -> dict[int, list[float]]:
    """Per matter of ``matters`` that has any, the minutes of its latest services (at most
    ``RECENT_SAMPLES`` of the four weeks up to ``day``), newest first: read with
    ``execute`` (a session's or a connection's)."""
    recent: dict[int, list[float]] = {}
    since = day - STATS_WINDOW
    # The business day began within a day of its UTC midnight in any time zone.
    ended_from = datetime.combine(since - timedelta(days=2), dt_time(), UTC)
    for first in range(0, len(matters), MATTERS_PER_STATEMENT):
        part = matters[first : first + MATTERS_PER_STATEMENT]
        values: dict[str, Any] = {f"matter_{n}": sid for n, sid in enumerate(part)}
        values.update(since=since, ended_from=ended_from)
        newest = sql.newest_services(len(part), RECENT_SAMPLES)
        for service_id, started, finished in await execute(newest, values):
            recent.setdefault(service_id, []).append((finished - started).total_seconds() / 60)
    return recent


async def _arrivals(
    uow: UnitOfWork, hall_id: int, day: date, now: datetime
) -> dict[tuple[int, str], float]:
    """Walk-ins (by priority class) and transfers per minute over the last hour."""
    since = now - ARRIVAL_WINDOW
    rows = await uow.session.execute(
        select(TicketRow.service_id, TicketRow.kind, TicketRow.priority, func.count())
        .where(
            TicketRow.hall_id == hall_id,
            TicketRow.business_day == day,
            TicketRow.issued_at >= since,
            TicketRow.kind.in_([TicketKind.WALK_IN, TicketKind.TRANSFER]),
        )
        .group_by(TicketRow.service_id, TicketRow.kind, TicketRow.priority)
    )
    first = await uow.session.scalar(
        select(func.min(TicketRow.issued_at)).where(
            TicketRow.hall_id == hall_id, TicketRow.business_day == day
        )
    )
    counts: dict[tuple[int, str], int] = {}
    for service_id, kind, priority, count in rows:
        key = (service_id, TRANSFER if kind == TicketKind.TRANSFER else priority)
        counts[key] = counts.get(key, 0) + count
    minutes_open = (now - first).total_seconds() / 60 if first is not None else 0.0
    return arrival_rates(counts, minutes_open)


async def _no_show_rate(uow: UnitOfWork, hall_id: int, now: datetime) -> float:
    """The share of the hall's past bookings (28 days) whose visitors did not come;
    remembered for ten minutes (it moves by the day, not by the request)."""
    return await _kept_a_while(
        _no_shows, hall_id, lambda: _read_no_show_rate(uow, hall_id, now), NO_SHOW_KEEP_SECONDS
    )


async def _read_no_show_rate(uow: UnitOfWork, hall_id: int, now: datetime) -> float:
    ended = ("checked_in", "no_show", "expired_to_walk_in")
    counts: dict[str, int] = dict(
        (
            await uow.session.execute(
                select(BookingRow.state, func.count())
                .where(
                    and_(
                        BookingRow.hall_id == hall_id,
                        BookingRow.state.in_(ended),
                        BookingRow.slot_start >= now - NO_SHOW_WINDOW,
                        BookingRow.slot_start < now,
                    )
                )
                .group_by(BookingRow.state)
            )
        ).all()
    )
    total = sum(counts.values())
    return counts.get("no_show", 0) / total if total >= NO_SHOW_MIN_BOOKINGS else DEFAULT_NO_SHOW


def forget() -> None:
    """Drop what this process keeps (tests: each has a database of its own)."""
    _no_shows.clear()
    _stats_kept.clear()
    _arrivals_kept.clear()
