"""A hall's booking plan from its own history (``BookingRules.target_load``).

The walk-ins a hall can expect on a date are those of the same weekday in its last weeks:
how many came in each quarter of an hour, and the counter time their matters typically
take. With the hall's counters, that gives the spare share of counter time in each stretch
of the day (``booking.domain.capacity``), and each matter's slot offers that share of what
its own counters can serve. A hall with no such history yet holds back its
``walk_in_share`` instead. Plans are kept per hall and date for a few minutes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from booking.domain.calendar import HallCalendar
from booking.domain.capacity import GRID_MINUTES, SlotDemand, Stretch, spare_shares
from queue_server.db.tables import CounterRow, ServiceRow, TicketRow
from queue_server.domain.model import TicketKind
from queue_server.service.unit_of_work import UnitOfWork

WEEKS = 8
"""The same weekday of this many past weeks is the hall's history for a date."""
KEEP_SECONDS = 600.0
KEEP_PLANS = 4096


@dataclass(frozen=True)
class HallPlan:
    """The spare share of a hall's counter time in each stretch of one date."""

    midnight: datetime
    """The date's local midnight (aware)."""
    spare: dict[int, float]
    """Minute of the day a stretch starts at to its spare share."""

    def demand(self, throughput: float) -> Callable[[datetime, datetime], SlotDemand]:
        """A matter's slots' demand: ``throughput`` visitors per slot, offered the spare
        share of the stretches the slot covers (weighted by how much of each it covers)."""

        def of(start: datetime, end: datetime) -> SlotDemand:
            a = (start - self.midnight).total_seconds() / 60
            b = (end - self.midnight).total_seconds() / 60
            covered = total = 0.0
            for minute, share in self.spare.items():
                overlap = max(0.0, min(b, minute + GRID_MINUTES) - max(a, minute))
                covered += overlap
                total += overlap * share
            return SlotDemand(throughput, total / covered if covered else 0.0)

        return of


_plans: dict[tuple[int, date, float], tuple[float, HallPlan | None]] = {}


async def hall_plan(
    uow: UnitOfWork,
    hall_id: int,
    tz: ZoneInfo,
    calendar: HallCalendar,
    day: date,
    target_load: float,
) -> HallPlan | None:
    """The plan of hall ``hall_id`` for its date ``day``; None without history to go by."""
    key = (hall_id, day, target_load)
    kept = _plans.get(key)
    if kept is not None and time.monotonic() - kept[0] < KEEP_SECONDS:
        return kept[1]
    if len(_plans) >= KEEP_PLANS:
        _plans.clear()
    dates = [day - timedelta(weeks=k) for k in range(1, WEEKS + 1)]
    rows = (
        await uow.session.execute(
            select(TicketRow.business_day, TicketRow.issued_at, ServiceRow.typical_minutes)
            .join(ServiceRow, ServiceRow.id == TicketRow.service_id)
            .where(
                TicketRow.hall_id == hall_id,
                TicketRow.business_day.in_(dates),
                TicketRow.kind == TicketKind.WALK_IN,
            )
        )
    ).all()
    days_seen = len({row[0] for row in rows})
    if not days_seen:
        _plans[key] = (time.monotonic(), None)
        return None
    walk_in_minutes: dict[int, float] = {}
    for _, issued, minutes in rows:
        local = issued.astimezone(tz)
        minute = (local.hour * 60 + local.minute) // GRID_MINUTES * GRID_MINUTES
        walk_in_minutes[minute] = walk_in_minutes.get(minute, 0.0) + minutes / days_seen
    counters = await uow.session.scalar(
        select(func.count()).select_from(CounterRow).where(CounterRow.hall_id == hall_id)
    )
    spans = calendar.open_spans(day)
    starts = [
        minute
        for first, last in spans
        for minute in range(
            int(first.total_seconds() // 60), int(last.total_seconds() // 60), GRID_MINUTES
        )
    ]
    stretches = [
        Stretch(float(counters or 0) * GRID_MINUTES, walk_in_minutes.get(m, 0.0)) for m in starts
    ]
    shares = spare_shares(stretches, target_load)
    midnight = datetime.combine(day, datetime.min.time(), tzinfo=tz)
    plan = HallPlan(midnight, dict(zip(starts, shares, strict=True)))
    _plans[key] = (time.monotonic(), plan)
    return plan


def forget() -> None:
    """Drop what this process keeps (tests: each has a database of its own)."""
    _plans.clear()
