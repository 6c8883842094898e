"""Queue policy v2: which waiting ticket a counter calls next, and why (docs/queue.md).

A counter ranks the tickets of the matters it serves in four tiers:

1. continuing visits (transfers, escalations) go first, oldest first: the visitor has been
   served once today and must not queue again from the start;
2. appointments that must be called now, earliest slot first: without the hall floor,
   those whose slot has begun; with it (``urgent_appointments``), those that would risk
   being called more than ``on_time`` after their slot if this counter took someone else
   now (a look-ahead over the counters serving the matter and their services' ends);
3. everyone else who has joined the queue: the highest score goes first, where the score
   is the time waited, plus the visitor's priority class's boost, less ``secondary_handicap``
   when the counter serves the matter only at secondary level; ties to the earlier ticket;
4. appointments not called yet (checked in early, or with time to spare): when nobody
   else waits.

The bound (stated here, tested in tests/unit/test_policy.py):

    A ticket in tier 3 is never called after another tier-3 ticket of the same counter that
    joined the queue more than B later, B = the largest priority boost + the secondary
    handicap (25 + 20 = 45 minutes with the defaults; an ordinary visitor at a counter
    serving their matter at primary level is overtaken only by priority visitors who came
    at most 25 minutes later, or by nobody who came later at all).

Tiers 1 and 2 are finite: a visit is transferred at most once per service, appointments
are capped by each slot's capacity and called at the earliest ``call_early_limit`` before
their slot. So a walk-in's wait is bounded by the services of those who joined before it or
within B after it, plus the appointments due meanwhile and the visits transferred meanwhile.

Appointments are called just in time: one whose slot has begun is called once it would
otherwise risk being more than ``on_time`` late, and earlier (from ``call_early_limit``
before its slot) when the counters serving its matter are unlikely to free up in time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from .floor import Candidate, CounterNow, Floor
from .model import DEFAULT_PRIORITY_BOOSTS, NO_PRIORITY, CounterState, ServiceLevel, TicketKind

__all__ = [
    "Candidate", "Choice", "Chooser", "PolicyConfig", "SilentChooser", "choose_next", "chooser",
    "rank",
]  # fmt: skip

CONTINUING_KINDS = frozenset({TicketKind.TRANSFER, TicketKind.ESCALATION})


@dataclass(frozen=True)
class PolicyConfig:
    """The hall's tunables for the policy."""

    priority_boosts: Mapping[str, timedelta] = field(
        default_factory=lambda: {
            k: timedelta(minutes=v) for k, v in DEFAULT_PRIORITY_BOOSTS.items()
        }
    )
    """How much waiting time each priority class is worth."""
    secondary_handicap: timedelta = timedelta(minutes=20)
    """A ticket of a matter the counter serves at secondary level counts its wait this much
    less: the counter's own matters first, unless the other has waited this much longer."""
    on_time: timedelta = timedelta(minutes=5)
    """An appointment is kept when called at most this long after its slot starts."""
    call_early_limit: timedelta = timedelta(minutes=20)
    """An appointment is called at most this long before its slot to keep it on time."""
    margin: timedelta = timedelta(minutes=2)
    """The look-ahead aims this much before the on-time limit."""
    risk: float = 0.05
    """An appointment is called now when the chance that it would be late otherwise is
    above this."""

    @property
    def bound(self) -> timedelta:
        """B: no tier-3 ticket is overtaken by one that joined more than B after it."""
        return max(self.priority_boosts.values(), default=timedelta(0)) + self.secondary_handicap

    def boost(self, priority: str) -> timedelta:
        if priority == NO_PRIORITY:
            return timedelta(0)
        return self.priority_boosts.get(priority, timedelta(0))


@dataclass(frozen=True)
class Choice:
    """A ticket the counter may call, and the reason in words for the clerk."""

    candidate: Candidate
    tier: int
    reason: str


def _minutes(delta: timedelta) -> int:
    return max(0, int(delta.total_seconds() // 60))


_NO_BOOST = timedelta(0)


def _score(c: Candidate, level: ServiceLevel, now: datetime, config: PolicyConfig) -> timedelta:
    # Called a few times a turn for thousands of turns by the estimate's projection.
    score = now - c.queued_at
    if c.priority != NO_PRIORITY:
        score += config.priority_boosts.get(c.priority, _NO_BOOST)
    if level == ServiceLevel.SECONDARY:
        score -= config.secondary_handicap
    return score


def _is_appointment(c: Candidate) -> bool:
    return c.kind == TicketKind.APPOINTMENT and c.due_at is not None


def _clock(moment: datetime, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).strftime("%H:%M")


def _tier_three_reason(
    c: Candidate, level: ServiceLevel, now: datetime, config: PolicyConfig
) -> str:
    waited = _minutes(now - c.queued_at)
    if c.priority != NO_PRIORITY and config.boost(c.priority) > timedelta(0):
        return f"priority: {c.priority} (waiting {waited} min)"
    if level == ServiceLevel.SECONDARY:
        return f"longest wait {waited} min (secondary matter here)"
    return f"longest wait {waited} min"


def urgent_appointments(
    counter_id: int | None,
    floor: Floor | None,
    now: datetime,
    config: PolicyConfig,
) -> set[int]:
    """Appointments not yet due that must be called now, or risk being called late.

    For each checked-in appointment, earliest slot first, count the appointments of its
    matter that are due no later (itself included): n. The other counters serving its
    matter each free up before its slot's ``on_time`` less ``margin`` with some chance
    (their current service's recent durations say which), this counter too if it took
    someone else now. If the chance that fewer than n of them free up in time is above
    ``risk``, the appointment is urgent: this counter should call it now. Not earlier than
    ``call_early_limit`` before the slot.
    """
    if floor is None:
        return set()
    appointments = sorted(
        (c for c in floor.waiting if _is_appointment(c)),
        key=lambda c: (c.due_at, c.ticket_id),
    )
    if not appointments:
        return set()
    others_here = [c for c in floor.waiting if not _is_appointment(c) and counter_id is not None]
    urgent: set[int] = set()
    ahead: dict[int, int] = {}
    for appointment in appointments:
        assert appointment.due_at is not None
        ahead[appointment.service_id] = ahead.get(appointment.service_id, 0) + 1
        if appointment.due_at - config.call_early_limit > now:
            continue
        if appointment.due_at + config.on_time - config.margin <= now:
            urgent.add(appointment.ticket_id)
            continue
        window = (appointment.due_at + config.on_time - config.margin - now).total_seconds() / 60
        chances = []
        for counter in floor.counters:
            if counter.state != CounterState.OPEN or appointment.service_id not in counter.profile:
                continue
            if counter.counter_id == counter_id:
                # Free in time after the service of whom it would call instead, if anyone.
                mine = [c for c in others_here if c.service_id in counter.profile]
                if not mine:
                    chances.append(1.0)
                    continue
                instead = max(
                    mine, key=lambda c: (_score(c, counter.profile[c.service_id], now, config),
                                         -c.ticket_id),
                )  # fmt: skip
                chances.append(floor.stat(instead.service_id).ends_within(0.0, window))
            elif counter.serving is None or counter.since is None:
                chances.append(1.0)
            else:
                elapsed = max(0.0, (now - counter.since).total_seconds() / 60)
                chances.append(floor.stat(counter.serving).ends_within(elapsed, window))
        if _fewer_than(ahead[appointment.service_id], chances) > config.risk:
            urgent.add(appointment.ticket_id)
    return urgent


def _fewer_than(needed: int, chances: Sequence[float]) -> float:
    """The chance that fewer than ``needed`` of independent events with these chances
    happen (a Poisson binomial tail, by dynamic programming)."""
    # dist[k]: chance that exactly k happened so far (k capped at needed).
    dist = [1.0] + [0.0] * needed
    for p in chances:
        for k in range(needed, -1, -1):
            stay = dist[k] * (1 - p)
            moved = dist[k - 1] * p if k > 0 else 0.0
            dist[k] = stay + moved if k < needed else dist[k] + moved
    return sum(dist[:needed])


def _ranked(
    profile: Mapping[int, ServiceLevel],
    waiting: Iterable[Candidate],
    now: datetime,
    config: PolicyConfig,
    floor: Floor | None,
    counter_id: int | None,
) -> list[tuple[tuple[object, ...], Candidate, int, ServiceLevel, bool]]:
    """The counter's tickets with their sort keys and tiers (and whether an appointment in
    tier 2 was found urgent by the look-ahead), unsorted."""
    mine = [c for c in waiting if c.service_id in profile]
    urgent = (
        urgent_appointments(counter_id, floor, now, config) if floor is not None and mine else set()
    )
    keyed: list[tuple[tuple[object, ...], Candidate, int, ServiceLevel, bool]] = []
    for c in mine:
        level = profile[c.service_id]
        key = _key(c, level, now, config, urgent if floor is not None else None)
        keyed.append((key, c, key[0], level, key[0] == 2))
    return keyed


def _key(
    c: Candidate,
    level: ServiceLevel,
    now: datetime,
    config: PolicyConfig,
    urgent: set[int] | None,
) -> tuple[int, object, object, int]:
    """A ticket's sort key at a counter serving its matter at ``level``: (tier, first,
    then, ticket id), compared only within a tier. ``urgent``: the appointments the
    look-ahead found must be called now (None: without it, those due)."""
    if c.kind in CONTINUING_KINDS:
        return (1, c.queued_at, 0, c.ticket_id)
    if c.due_at is not None and c.kind == TicketKind.APPOINTMENT:
        must = c.ticket_id in urgent if urgent is not None else c.due_at <= now
        return (2 if must else 4, c.due_at, c.queued_at, c.ticket_id)
    # Highest score first; ties to the one that joined earlier. The score is the time
    # since the moment it counts from (``_counted_from``): the earliest such moment first.
    return (3, _counted_from(c, level, config), c.queued_at, c.ticket_id)


def _counted_from(c: Candidate, level: ServiceLevel, config: PolicyConfig) -> datetime:
    """The moment a tier-3 ticket's score counts from: ``_score(c, level, now, config) ==
    now - _counted_from(c, level, config)`` at any ``now``. Comparing these instead of the
    scores orders the tickets the same at every moment, with no arithmetic on ``now``
    (exact: datetimes and timedeltas are whole microseconds). The moments are UTC, as
    every stored and clock time is here: in a zone with daylight saving, adding a boost
    to a local time would not be the same instant arithmetic as subtracting times."""
    at = c.queued_at
    if c.priority != NO_PRIORITY:
        at = at - config.priority_boosts.get(c.priority, _NO_BOOST)
    if level == ServiceLevel.SECONDARY:
        at = at + config.secondary_handicap
    return at


def _reason(
    c: Candidate, tier: int, level: ServiceLevel, now: datetime, config: PolicyConfig, tz: ZoneInfo
) -> str:
    waited = _minutes(now - c.queued_at)
    if tier == 1:
        how = "escalated" if c.kind == TicketKind.ESCALATION else "transferred"
        return f"continues visit ({how}, waiting {waited} min)"
    if tier == 3:
        return _tier_three_reason(c, level, now, config)
    assert c.due_at is not None
    due = _clock(c.due_at, tz)
    if tier == 2:
        if c.due_at <= now:
            return f"appointment due {due}"
        return f"appointment at {due}: called now to keep it on time"
    if c.due_at <= now:
        until = _clock(c.due_at + config.on_time, tz)
        return f"appointment due {due}, on time until {until}; nobody else waiting"
    return f"appointment at {due}, checked in early; nobody else waiting"


def rank(
    profile: Mapping[int, ServiceLevel],
    waiting: Iterable[Candidate],
    now: datetime,
    config: PolicyConfig,
    tz: ZoneInfo,
    floor: Floor | None = None,
    counter_id: int | None = None,
    limit: int | None = None,
) -> list[Choice]:
    """All waiting tickets the counter serves (the first ``limit`` of them), in the order
    it should call them.

    ``floor`` (the whole hall now) and ``counter_id`` (this counter on it) turn on the
    appointments' look-ahead; without them only due appointments go ahead of walk-ins.
    Only the tickets returned are put in words.
    """
    keyed = _ranked(profile, waiting, now, config, floor, counter_id)
    keyed.sort(key=lambda item: item[0])
    return [
        Choice(c, tier, _reason(c, tier, level, now, config, tz))
        for _, c, tier, level, _ in keyed[:limit]
    ]


def choose_next(
    profile: Mapping[int, ServiceLevel],
    waiting: Iterable[Candidate],
    now: datetime,
    config: PolicyConfig,
    tz: ZoneInfo,
    floor: Floor | None = None,
    counter_id: int | None = None,
) -> Choice | None:
    """The ticket the counter should call now, or None when nobody waits for its matters."""
    keyed = _ranked(profile, waiting, now, config, floor, counter_id)
    if not keyed:
        return None
    _, c, tier, level, _ = min(keyed, key=lambda item: item[0])
    return Choice(c, tier, _reason(c, tier, level, now, config, tz))


Chooser = Callable[[CounterNow, Sequence[Candidate], datetime, Floor | None], Choice | None]
"""Who a counter calls at a moment: what the estimate's projection plays forward."""


def chooser(config: PolicyConfig, tz: ZoneInfo, *, reasons: bool = True) -> Chooser:
    """The policy as a function of a counter, its waiting tickets, the moment and the
    floor: how the server and the simulator both hand it to the estimate. Without
    ``reasons`` the choices carry none (the estimate's projection never shows them, and
    putting them in words was an eighth of its time), and the chooser also gives the sort
    key that a projection's turns without the look-ahead compare (``SilentChooser.key``)."""

    def choose(
        counter: CounterNow, waiting: Sequence[Candidate], now: datetime, floor: Floor | None
    ) -> Choice | None:
        return choose_next(counter.profile, waiting, now, config, tz, floor, counter.counter_id)

    return choose if reasons else SilentChooser(config)


class SilentChooser:
    """``choose_next`` without reasons: the choice a projection plays, thousands of times
    per projection (``chooser(reasons=False)``)."""

    __slots__ = ("config",)

    def __init__(self, config: PolicyConfig) -> None:
        self.config = config

    def __call__(
        self, counter: CounterNow, waiting: Sequence[Candidate], now: datetime, floor: Floor | None
    ) -> Choice | None:
        if floor is not None:
            keyed = _ranked(counter.profile, waiting, now, self.config, floor, counter.counter_id)
            if not keyed:
                return None
            _, c, tier, _, _ = min(keyed, key=lambda item: item[0])
            return Choice(c, tier, "")
        best = self._least(counter.profile, waiting, now)
        return None if best is None else Choice(best[1], best[0][0], "")

    def key(self, c: Candidate, level: ServiceLevel) -> tuple[int, object, object, int]:
        """``c``'s sort key at a counter serving its matter at ``level`` without the
        look-ahead, for a ticket that is not a booked appointment (a transfer, an
        escalation, a walk-in): it does not change with the moment, so a projection keeps
        it while the ticket waits, and its turn calls the least key of its contenders —
        whom ``self(counter, contenders, now, None)`` calls."""
        assert not (c.due_at is not None and c.kind == TicketKind.APPOINTMENT), "booked"
        return _key(c, level, c.queued_at, self.config, None)

    def _least(
        self, profile: Mapping[int, ServiceLevel], waiting: Iterable[Candidate], now: datetime
    ) -> tuple[tuple[int, object, object, int], Candidate] | None:
        # The least key (``_key``) in one loop, not a ranked list.
        config = self.config
        best: tuple[tuple[int, object, object, int], Candidate] | None = None
        for c in waiting:
            level = profile.get(c.service_id)
            if level is not None:
                key = _key(c, level, now, config, None)
                if best is None or key < best[0]:
                    best = (key, c)
        return best
