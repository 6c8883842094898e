"""Queue policy v1: which waiting ticket a counter calls next, and why.

Order of concern, for a counter with a profile of matters at primary/secondary level:

1. continuing visits (transfers, escalations) keep their place: they go first, oldest first;
2. checked-in appointments that are due, earliest due time first;
3. the "current" tier: tickets of the counter's primary matters, plus tickets of its
   secondary matters that have waited at least ``secondary_after``;
4. tickets of secondary matters that have not waited that long yet;
5. appointments checked in early (not due yet): only when nobody else is waiting.

Within tiers 3 and 4 a ticket's score is its wait plus its priority class's boost; the
highest score goes first, ties to the earlier queue time. Hence the bound (tested):

    Within a tier, a ticket is never called after a ticket that joined the queue more than
    B later, where B is the largest priority boost of the hall (15 minutes by default).

So a ticket's wait is bounded by the time the counters need to serve the tickets that
joined before it, plus those joining within B after it, plus the (finite) transfers and due
appointments; a secondary-level ticket joins tier 3 after ``secondary_after``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from .model import DEFAULT_PRIORITY_BOOSTS, NO_PRIORITY, ServiceLevel, TicketKind

CONTINUING_KINDS = frozenset({TicketKind.TRANSFER, TicketKind.ESCALATION})


@dataclass(frozen=True)
class PolicyConfig:
    """The hall's tunables for the policy."""

    secondary_after: timedelta = timedelta(minutes=20)
    """A secondary-level ticket that has waited this long competes with primary ones."""
    priority_boosts: Mapping[str, timedelta] = field(
        default_factory=lambda: {
            k: timedelta(minutes=v) for k, v in DEFAULT_PRIORITY_BOOSTS.items()
        }
    )
    """How much waiting time each priority class is worth."""

    @property
    def bound(self) -> timedelta:
        """B: no ticket is overtaken by one that joined more than B after it (same tier)."""
        return max(self.priority_boosts.values(), default=timedelta(0))

    def boost(self, priority: str) -> timedelta:
        if priority == NO_PRIORITY:
            return timedelta(0)
        return self.priority_boosts.get(priority, timedelta(0))


@dataclass(frozen=True)
class Candidate:
    """What the policy needs to know of a waiting ticket."""

    ticket_id: int
    number: str
    service_id: int
    kind: TicketKind
    priority: str
    queued_at: datetime
    due_at: datetime | None = None


@dataclass(frozen=True)
class Choice:
    """A ticket the counter may call, and the reason in words for the clerk."""

    candidate: Candidate
    tier: int
    reason: str


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
