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
from collections.abc import Sequence
from dataclasses import dataclass

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
