"""OneDoor's first queue policy and wait estimate (v1), kept to measure v2 against.

v1 ranked a counter's tickets in tiers (continuing visits, due appointments, its primary
matters, secondary ones under their limit, early appointments) and told a visitor the
tickets of their own matter ahead of them times the median recent service time over the
open counters serving the matter. docs/queue.md shows what that did on the standard days.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from queue_server.domain.floor import Candidate
from queue_server.domain.model import NO_PRIORITY, ServiceLevel, TicketKind
from queue_server.domain.policy import Choice

CONTINUING_KINDS = frozenset({TicketKind.TRANSFER, TicketKind.ESCALATION})
RECENT_SAMPLES = 20
MIN_SAMPLES = 3


@dataclass(frozen=True)
class PolicyConfig:
    """v1's tunables: a secondary matter waited ``secondary_after`` in a tier of its own."""

    secondary_after: timedelta
    priority_boosts: Mapping[str, timedelta]

    def boost(self, priority: str) -> timedelta:
        if priority == NO_PRIORITY:
            return timedelta(0)
        return self.priority_boosts.get(priority, timedelta(0))


def _minutes(delta: timedelta) -> int:
    return max(0, int(delta.total_seconds() // 60))


def _tier_and_score(
    c: Candidate, level: ServiceLevel, now: datetime, config: PolicyConfig
) -> tuple[int, timedelta]:
    waited = now - c.queued_at
    if c.kind in CONTINUING_KINDS:
        return 1, waited
    if c.kind == TicketKind.APPOINTMENT and c.due_at is not None:
        return (2, now - c.due_at) if c.due_at <= now else (5, now - c.due_at)
    if level == ServiceLevel.PRIMARY or waited >= config.secondary_after:
        return 3, waited + config.boost(c.priority)
    return 4, waited + config.boost(c.priority)


def _reason(
    c: Candidate, tier: int, level: ServiceLevel, now: datetime, config: PolicyConfig, tz: ZoneInfo
) -> str:
    waited = _minutes(now - c.queued_at)
    if tier == 1:
        how = "escalated" if c.kind == TicketKind.ESCALATION else "transferred"
        return f"continues visit ({how}, waiting {waited} min)"
    if tier in (2, 5) and c.due_at is not None:
        due = c.due_at.astimezone(tz).strftime("%H:%M")
        return f"appointment due {due}" if tier == 2 else f"appointment at {due}, checked in early"
    if c.priority != NO_PRIORITY and config.boost(c.priority) > timedelta(0):
        return f"priority: {c.priority} (waiting {waited} min)"
    if level == ServiceLevel.SECONDARY and tier == 3:
        limit = _minutes(config.secondary_after)
        return f"longest wait {waited} min (secondary matter, past the {limit} min limit)"
    return f"longest wait {waited} min"


def rank(
    profile: Mapping[int, ServiceLevel],
    waiting: Iterable[Candidate],
    now: datetime,
    config: PolicyConfig,
    tz: ZoneInfo,
) -> list[Choice]:
    """All waiting tickets the counter serves, in the order it should call them."""
    keyed = []
    for c in waiting:
        level = profile.get(c.service_id)
        if level is None:
            continue
        tier, score = _tier_and_score(c, level, now, config)
        # Tiers 1, 2 and 5 are first come first served by their own clock; in 3 and 4 the
        # highest score goes first.
        keyed.append(((tier, -score, c.queued_at, c.ticket_id), c, tier, level))
    keyed.sort(key=lambda item: item[0])
    return [
        Choice(c, tier, _reason(c, tier, level, now, config, tz)) for _, c, tier, level in keyed
    ]


def choose_next(
    profile: Mapping[int, ServiceLevel],
    waiting: Iterable[Candidate],
    now: datetime,
    config: PolicyConfig,
    tz: ZoneInfo,
) -> Choice | None:
    """The ticket the counter should call now, or None when nobody waits for its matters."""
    ranked = rank(profile, waiting, now, config, tz)
    return ranked[0] if ranked else None


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
