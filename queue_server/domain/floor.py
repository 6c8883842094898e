"""The hall floor at one moment: what every counter is doing, who waits, who is yet to come.

This is what the wait estimate (and the policy, for its look-ahead) reads: the server builds
it from the database, the simulator from its own state, so both run the very same code.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from statistics import NormalDist
from typing import Annotated

import msgspec

from .model import CounterState, ServiceLevel, TicketKind

MIN_SAMPLES = 3
"""Below this many recent services of a matter, its configured typical duration is used."""
USUAL_CV = 0.6
"""The spread of service times assumed for a matter not measured yet (sd / mean)."""


Aware = Annotated[datetime, msgspec.Meta(tz=True)]
"""A time with its zone: a candidate decoded from JSON without one is refused at once,
not compared with aware times later."""


class Candidate(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """What the policy needs to know of a waiting ticket.

    A busy hall's every process holds one per waiting ticket (30,000 in a long day's
    queue) and makes one per walk-in, many a second in a rush. As a dataclass each was an
    object the garbage collector walked, young and again middle-aged, while it held the
    interpreter (every request waited through it). A struct made with ``gc=False`` is
    never tracked: it holds only numbers, strings, times and an enum member, so it can be
    in no reference cycle, and the tuples holding it (its sort keys, the estimate's
    records) stop being tracked at their first collection too. Frozen: equal and hashed by
    its fields, like the frozen dataclass it was (docs/performance.md, 2026-12-07, night).
    As an array of its fields in JSON (``array_like``), the form in which PostgreSQL hands
    over a hall's waiting tickets (``statements.PG_WAITING_JSON``).
    """

    ticket_id: int
    number: str
    service_id: int
    kind: TicketKind
    priority: str
    queued_at: Aware
    due_at: Aware | None = None
    """For an appointment: when its slot starts."""


@dataclass(frozen=True)
class ServiceStats:
    """What the hall has recently seen of one matter's service times."""

    recent: Sequence[float]
    """Minutes of the latest services, newest first."""
    typical_minutes: float
    """The matter's configured typical duration: the fallback with too few samples."""

    @property
    def measured(self) -> bool:
        return len(self.recent) >= MIN_SAMPLES

    def mean(self) -> float:
        """Expected minutes of one service: the recent mean when measured, else typical."""
        if self.measured:
            return max(0.5, statistics.fmean(self.recent))
        return max(0.5, float(self.typical_minutes))

    def remaining(self, elapsed: float) -> float:
        """Expected minutes left of a service that has lasted ``elapsed`` so far: the mean
        of what the recent services that lasted longer still had to go (the mean residual
        life, which grows for long-tailed matters), else the mean less what has passed."""
        mean = self.mean()
        if self.measured:
            longer = [d - elapsed for d in self.recent if d > elapsed]
            if len(longer) >= MIN_SAMPLES:
                return statistics.fmean(longer)
            if longer:
                return max(statistics.fmean(longer), mean * 0.25)
        return max(mean - elapsed, mean * 0.25)

    def ends_within(self, elapsed: float, minutes: float) -> float:
        """Chance that a service that has lasted ``elapsed`` ends within ``minutes`` more:
        from the recent services that lasted longer than ``elapsed`` when there are enough,
        else as if service times were lognormal around the mean with the spread usual in
        halls (coefficient of variation ``USUAL_CV``)."""
        if minutes <= 0:
            return 0.0
        if self.measured:
            longer = [d for d in self.recent if d > elapsed]
            if len(longer) >= MIN_SAMPLES:
                return sum(1 for d in longer if d <= elapsed + minutes) / len(longer)
        sigma = math.sqrt(math.log(1 + USUAL_CV**2))
        shape = NormalDist(math.log(self.mean()) - sigma**2 / 2, sigma)
        over = 1.0 - shape.cdf(math.log(elapsed)) if elapsed > 0 else 1.0
        if over <= 1e-9:
            return 1.0
        within = shape.cdf(math.log(elapsed + minutes)) - (1.0 - over)
        return max(0.0, min(1.0, within / over))


@dataclass(frozen=True)
class CounterNow:
    """One counter as it is now."""

    counter_id: int
    profile: Mapping[int, ServiceLevel]
    state: CounterState
    serving: int | None = None
    """The matter of the ticket it has called or is serving, if any."""
    since: datetime | None = None
    """When that ticket was called."""
    paused_at: datetime | None = None
    """For a paused counter: when it paused (it is expected back after a usual break)."""


@dataclass(frozen=True)
class Floor:
    """Everything the estimate needs to know about the hall at ``now``."""

    counters: Sequence[CounterNow]
    waiting: Sequence[Candidate]
    expected: Sequence[tuple[int, datetime]]
    """Bookings of today not checked in yet: (matter, slot start)."""
    stats: Mapping[int, ServiceStats]
    now: datetime
    break_minutes: float = 30.0
    """How long a paused counter usually stays paused."""
    no_show_rate: float = 0.1
    """Share of today's bookings that are expected not to come."""
    arrivals: Mapping[tuple[int, str], float] = field(default_factory=dict)
    """Recent arrival rates of visitors who go ahead: (matter, a priority class or
    ``"transfer"``) to visitors per minute."""

    def stat(self, service_id: int) -> ServiceStats:
        return self.stats.get(service_id) or ServiceStats((), 10.0)


ARRIVAL_WINDOW_MINUTES = 60.0
"""Recent tickets the rates of arriving visitors are measured over."""
MIN_RATE_MINUTES = 30.0
"""Rates are never taken over fewer minutes than this (see ``arrival_rates``)."""


def arrival_rates(
    counts: Mapping[tuple[int, str], int], minutes_open: float
) -> dict[tuple[int, str], float]:
    """Visitors per minute from the tickets of the last hour (``counts``: (matter, priority
    class or "transfer") to how many), over the minutes they had to come in — the hour, or
    less when the hall opened ``minutes_open`` ago, but never fewer than ``MIN_RATE_MINUTES``:
    a crowd at the door at opening is not the rate of the whole morning."""
    minutes = max(MIN_RATE_MINUTES, min(ARRIVAL_WINDOW_MINUTES, minutes_open))
    return {key: n / minutes for key, n in counts.items() if n > 0}
