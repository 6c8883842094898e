"""Wait estimate v1: people ahead of a ticket and the minutes until its turn."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from .model import ServiceLevel
from .policy import Candidate, PolicyConfig, rank

RECENT_SAMPLES = 20
MIN_SAMPLES = 3


@dataclass(frozen=True)
class Estimate:
    people_ahead: int
    minutes: int | None
    """None when no counter serving the matter is open: nobody can say."""
    basis: str


def people_ahead(
    ticket_id: int,
    service_id: int,
    waiting: Iterable[Candidate],
    now: datetime,
    config: PolicyConfig,
    tz: ZoneInfo,
) -> int:
    """How many waiting tickets of the same matter a counter serving it would call first."""
    order = rank({service_id: ServiceLevel.PRIMARY}, waiting, now, config, tz)
    for position, choice in enumerate(order):
        if choice.candidate.ticket_id == ticket_id:
            return position
    return len(order)


def service_minutes(recent: Sequence[timedelta], typical_minutes: int) -> tuple[float, str]:
    """Typical service time: the median of recent ones when there are enough, else the default.

    ``recent`` is newest first; only the newest ``RECENT_SAMPLES`` count.
    """
    samples = [d.total_seconds() / 60 for d in recent[:RECENT_SAMPLES]]
    if len(samples) >= MIN_SAMPLES:
        return statistics.median(samples), f"median of the last {len(samples)} services"
    return float(typical_minutes), "the matter's typical duration"


def estimate_wait(
    ahead: int, recent: Sequence[timedelta], typical_minutes: int, open_counters: int
) -> Estimate:
    """Minutes until a ticket with ``ahead`` people before it is called, rounded up."""
    per_person, basis = service_minutes(recent, typical_minutes)
    if open_counters <= 0:
        return Estimate(ahead, None, "no counter for this matter is open now")
    # Rounded before the ceiling so float noise (31.000000000000004) is not a whole minute.
    minutes = math.ceil(round(ahead * per_person / open_counters, 6))
    return Estimate(ahead, minutes, f"{basis}, {open_counters} counter(s) open")
