"""How many places each slot offers when the hall plans its bookings from its walk-ins.

The hall's counters can serve so much in each stretch of the day; walk-ins are expected to
ask for some of it (the hall's history says how much comes at that time of day). Bookings
are offered what is left up to ``target_load`` of the counters' time, walk-ins counted
first, and a queue left over from a busy stretch (more asked of it than the counters could
serve) is carried into the next stretch before anything is offered there. The plan is made
for the hall as a whole, because its counters are shared between matters: a morning peak of
enquiries fills the general counters that would otherwise serve bookings too.

Each matter's slot then offers the spare share of the counters' time in that slot times
what the matter's own counters can serve in it. So a peak, or a lunch hour with half the
counters away, offers few places or none, and a quiet afternoon offers many: bookings are
kept, and walk-ins are not starved to keep them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

GRID_MINUTES = 15
"""The hall's day is planned in stretches of this length."""


@dataclass(frozen=True)
class Stretch:
    """One stretch of the hall's day."""

    counter_minutes: float
    """Counter time staffed in the stretch, all counters."""
    walk_in_minutes: float
    """Counter time the walk-ins expected in the stretch will need, all matters."""


def spare_shares(stretches: Sequence[Stretch], target_load: float) -> list[float]:
    """For each stretch (in time order), the share of its counter time offered to bookings.

    A stretch offers ``target_load`` of its counter time, less its walk-ins' and the
    backlog carried from earlier stretches; the backlog then grows by what the stretch is
    asked beyond its counter time (walk-ins and its offer taken in full).
    """
    shares: list[float] = []
    backlog = 0.0
    for stretch in stretches:
        if stretch.counter_minutes <= 0:
            shares.append(0.0)
            backlog += stretch.walk_in_minutes
            continue
        free = target_load * stretch.counter_minutes - stretch.walk_in_minutes - backlog
        offered = max(0.0, free)
        shares.append(offered / stretch.counter_minutes)
        backlog = max(0.0, backlog + stretch.walk_in_minutes + offered - stretch.counter_minutes)
    return shares


@dataclass(frozen=True)
class SlotDemand:
    """One slot of one matter: what its counters can serve, and the share to offer."""

    throughput: float
    """Visitors of the matter its counters can serve in the slot."""
    spare: float
    """Share of the counters' time in the slot left for bookings (``spare_shares``)."""

    @property
    def places(self) -> int:
        # Rounded before the floor so float noise (2.9999999) does not lose a place.
        return max(0, math.floor(round(self.throughput * self.spare, 6)))


@dataclass(frozen=True)
class HallPlan:
    """The spare share of a hall's counter time in each stretch of one date."""

    midnight: datetime
    """The date's local midnight (aware)."""
    spare: Mapping[int, float]
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


def plan_day(
    midnight: datetime,
    open_spans: Sequence[tuple[int, int]],
    staffed: Mapping[int, float] | int,
    walk_in_minutes: Mapping[int, float],
    target_load: float,
) -> HallPlan:
    """The plan of a date whose local midnight is ``midnight``: its open stretches (minutes
    of the day, from ``open_spans``), each staffed with ``staffed`` counter-minutes (stretch
    start → minutes, or a number of counters at work throughout), asked
    ``walk_in_minutes`` (stretch start → counter minutes the walk-ins expected then will
    need), offering bookings the spare share up to ``target_load``. The server feeds it from
    the hall's record, the simulator from its scenario: the same plan either way."""
    starts = [m for first, last in open_spans for m in range(first, last, GRID_MINUTES)]

    def minutes_at(start: int) -> float:
        if isinstance(staffed, int):
            return float(staffed * GRID_MINUTES)
        return staffed.get(start, 0.0)

    stretches = [Stretch(minutes_at(m), walk_in_minutes.get(m, 0.0)) for m in starts]
    shares = spare_shares(stretches, target_load)
    return HallPlan(midnight, dict(zip(starts, shares, strict=True)))
