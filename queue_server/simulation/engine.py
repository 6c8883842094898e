"""The discrete-event simulation of one hall day under one queue policy.

It drives the code the server runs: tickets change state only through the domain's
``Ticket`` methods, bookings are made and checked in through the booking rules (check-in
window, late policy, no-show), counters call whom the policy chooses, and each walk-in is
told the wait the server's estimate would tell them. Time is minutes after the day's local
midnight; the domain sees the matching UTC moments.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import IntEnum

from booking.domain.booking import BookingState
from queue_server.domain.estimate import TRANSFER, Told
from queue_server.domain.floor import (
    ARRIVAL_WINDOW_MINUTES,
    Candidate,
    CounterNow,
    Floor,
    ServiceStats,
    arrival_rates,
)
from queue_server.domain.model import (
    CounterState,
    Outcome,
    Service,
    ServiceLevel,
    Ticket,
    TicketKind,
    TicketState,
)
from queue_server.domain.policy import Choice

from .day import Day, Visitor, minutes_of
from .scenario import Counter, Scenario

RECENT_SAMPLES = 50
ARRIVAL_WINDOW = ARRIVAL_WINDOW_MINUTES
OVERTIME_LIMIT = 6 * 60.0
"""Counters serve the queue left at closing for at most this long; the rest goes unserved."""


class Kind(IntEnum):
    # Order matters at equal times: a counter frees up before newcomers are dispatched.
    SERVICE_ENDS = 0
    COUNTER_CHANGES = 1
    BOOKING_CHECKS_IN = 2
    ARRIVES = 3
    BOOKING_LAPSES = 4


ChoosePolicy = Callable[[CounterNow, list[Candidate], datetime, Floor | None], Choice | None]
Estimator = Callable[[int, Floor, datetime], Told | None]


@dataclass
class Record:
    """What happened to one ticket, for the figures."""

    ticket_id: int
    visitor: Visitor
    matter: str
    kind: TicketKind
    queued: float
    called: float | None = None
    ended: float | None = None
    counter: int | None = None
    level: ServiceLevel | None = None
    slot: float | None = None
    """For an appointment: the minute its slot starts."""
    told: Told | None = None
    told_baseline: float | None = None
    reason: str = ""

    @property
    def waited(self) -> float | None:
        return None if self.called is None else self.called - self.queued


@dataclass
class _Desk:
    """A counter during the simulation."""

    spec: Counter
    profile: dict[int, ServiceLevel]
    state: CounterState = CounterState.CLOSED
    ticket: Ticket | None = None
    since: float | None = None
    paused_at: float | None = None
    closing: bool = False

    @property
    def idle(self) -> bool:
        return self.state == CounterState.OPEN and self.ticket is None


@dataclass
class DayResult:
    """One simulated day: every ticket's record, plus what the hall itself saw."""

    day: Day
    policy: str
    records: list[Record] = field(default_factory=list)
    unserved: int = 0
    last_service_ends: float = 0.0
    closes: float = 0.0


class HallDay:
    """Runs ``day`` with ``choose`` deciding each call and ``estimate`` telling the waits."""

    def __init__(
        self,
        day: Day,
        choose: ChoosePolicy,
        estimate: Estimator | None,
        policy_name: str,
    ) -> None:
        self.day = day
        self.scenario: Scenario = day.scenario
        self.choose = choose
        self.estimate = estimate
        self.ids = {m.prefix: i for i, m in enumerate(self.scenario.matters, 1)}
        self.services = {
            self.ids[m.prefix]: Service(
                id=self.ids[m.prefix], hall_id=1, name_zh=m.name, name_en=m.name,
                prefix=m.prefix, typical_minutes=m.configured_minutes,
            )
            for m in self.scenario.matters
        }  # fmt: skip
        self.desks = [
            _Desk(c, {self.ids[p]: level for p, level in c.profile.items()})
            for c in sorted(self.scenario.counters, key=lambda c: c.number)
        ]
        self.events: list[tuple[float, int, int, object]] = []
        self.order = itertools.count()
        self.waiting: dict[int, Candidate] = {}
        self.tickets: dict[int, Ticket] = {}
        self.records: dict[int, Record] = {}
        self.next_id = itertools.count(1)
        self.numbers: dict[str, itertools.count[int]] = {}
        self.recent: dict[int, deque[float]] = {
            i: deque(maxlen=RECENT_SAMPLES) for i in self.ids.values()
        }
        self.recent_waits: dict[int, deque[float]] = {
            i: deque(maxlen=10) for i in self.ids.values()
        }
        self.pending_bookings: dict[int, Visitor] = {}
        self.issued: list[Record] = []
        self.outcome = DayResult(day, policy_name)
        self.now = 0.0
        self.open_periods = [(minutes_of(a), minutes_of(b)) for a, b in self.scenario.hours]
        self.outcome.closes = max(b for _, b in self.open_periods)
        self.first_open = min(a for a, _ in self.open_periods)
        # The hall knows how long its counters' breaks usually last.
        breaks = [
            minutes_of(e) - minutes_of(s) for c in self.scenario.counters for s, e in c.breaks
        ]
        self.break_minutes = sum(breaks) / len(breaks) if breaks else 30.0

    # -- the clock -------------------------------------------------------------------------

    def at(self, minute: float) -> datetime:
        return self.day.at(minute)

    def schedule(self, minute: float, kind: Kind, payload: object) -> None:
        heapq.heappush(self.events, (minute, int(kind), next(self.order), payload))

    def hall_open(self, minute: float) -> bool:
        return any(a <= minute < b for a, b in self.open_periods)

    # -- running ---------------------------------------------------------------------------

    def run(self) -> DayResult:
        rules = self.scenario.bookings.rules
        for drawn in self.day.visitors:
            # Each run books afresh: a booking changes state as the day goes.
            visitor = drawn
            if drawn.booking is not None:
                visitor = replace(drawn, booking=replace(drawn.booking, events=[]))
            if visitor.booking is not None:
                slot = self._minute(visitor.booking.slot_start)
                self.pending_bookings[visitor.id] = visitor
                lapses = slot + rules.checkin_late.total_seconds() / 60
                self.schedule(lapses + 1e-6, Kind.BOOKING_LAPSES, visitor)
                if visitor.arrives is None:
                    continue
                opens = slot - rules.checkin_early.total_seconds() / 60
                # Someone too early for check-in waits in the hall until it opens.
                self.schedule(max(visitor.arrives, opens), Kind.BOOKING_CHECKS_IN, visitor)
            elif visitor.arrives is not None and self.hall_open(visitor.arrives):
                self.schedule(visitor.arrives, Kind.ARRIVES, visitor)
        for desk in self.desks:
            self._plan_counter(desk)
        closing = self.outcome.closes
        while self.events:
            minute, kind, _, payload = heapq.heappop(self.events)
            if minute > closing + OVERTIME_LIMIT:
                break
            self.now = minute
            match Kind(kind):
                case Kind.SERVICE_ENDS:
                    self._service_ends(payload)  # type: ignore[arg-type]
                case Kind.COUNTER_CHANGES:
                    self._counter_changes(*payload)  # type: ignore[misc]
                case Kind.BOOKING_CHECKS_IN:
                    self._checks_in(payload)  # type: ignore[arg-type]
                case Kind.ARRIVES:
                    self._enqueue(payload, TicketKind.WALK_IN, None)  # type: ignore[arg-type]
                case Kind.BOOKING_LAPSES:
                    self._lapses(payload)  # type: ignore[arg-type]
            self._dispatch()
        self.outcome.unserved = len(self.waiting)
        self.outcome.records = sorted(self.records.values(), key=lambda r: r.ticket_id)
        return self.outcome

    def _minute(self, moment: datetime) -> float:
        return (moment - self.day.midnight).total_seconds() / 60

    # -- counters --------------------------------------------------------------------------

    def _plan_counter(self, desk: _Desk) -> None:
        spec = desk.spec
        hall_open = min(a for a, _ in self.open_periods)
        opens = max(hall_open, minutes_of(spec.opens)) if spec.opens else hall_open
        self.schedule(opens, Kind.COUNTER_CHANGES, (desk, "open"))
        for pause, back in spec.breaks:
            self.schedule(minutes_of(pause), Kind.COUNTER_CHANGES, (desk, "break"))
            self.schedule(minutes_of(back), Kind.COUNTER_CHANGES, (desk, "back"))
        # A hall closed between periods (lunch) is a break for every counter.
        for (_, closes), (reopens, _) in itertools.pairwise(sorted(self.open_periods)):
            self.schedule(closes, Kind.COUNTER_CHANGES, (desk, "break"))
            self.schedule(reopens, Kind.COUNTER_CHANGES, (desk, "back"))
        if spec.closes:
            self.schedule(minutes_of(spec.closes), Kind.COUNTER_CHANGES, (desk, "close"))

    def _counter_changes(self, desk: _Desk, change: str) -> None:
        """Open, pause for a break, come back, close; a counter busy at a break or at its
        closing finishes the current service first (it just calls nobody new)."""
        if change == "open" and desk.state == CounterState.CLOSED and not desk.closing:
            desk.state = CounterState.OPEN
        elif change == "break" and desk.state == CounterState.OPEN:
            desk.state = CounterState.PAUSED
            desk.paused_at = self.now
        elif change == "back" and desk.state == CounterState.PAUSED and not desk.closing:
            desk.state = CounterState.OPEN
            desk.paused_at = None
        elif change == "close":
            desk.closing = True
            desk.state = CounterState.CLOSED

    # -- visitors --------------------------------------------------------------------------

    def _checks_in(self, visitor: Visitor) -> None:
        booking = visitor.booking
        assert booking is not None
        if booking.state != BookingState.BOOKED:
            return
        result = booking.check_in(self.at(self.now), self.scenario.bookings.rules)
        self.pending_bookings.pop(visitor.id, None)
        if result.as_walk_in:
            if self.hall_open(self.now):
                self._enqueue(visitor, TicketKind.WALK_IN, None)
            return
        self._enqueue(visitor, TicketKind.APPOINTMENT, result.due_at)

    def _lapses(self, visitor: Visitor) -> None:
        booking = visitor.booking
        assert booking is not None
        if booking.state == BookingState.BOOKED and visitor.arrives is None:
            booking.mark_no_show(self.at(self.now), self.scenario.bookings.rules)
            self.pending_bookings.pop(visitor.id, None)

    def _number(self, prefix: str) -> str:
        counter = self.numbers.setdefault(prefix, itertools.count(1))
        return f"{prefix}{next(counter):03d}"

    def _enqueue(
        self,
        visitor: Visitor,
        kind: TicketKind,
        due_at: datetime | None,
        matter: str | None = None,
        follows: Ticket | None = None,
        level_of: Counter | None = None,
    ) -> Ticket:
        now = self.at(self.now)
        matter = matter or visitor.matter
        service_id = self.ids[matter]
        if follows is not None:
            ticket = follows.transfer(follows.counter_id or 0, self.services[service_id], None, now)
        else:
            ticket = Ticket(
                hall_id=1, visit_id=visitor.id, service_id=service_id,
                number=self._number(matter), business_day=self.scenario.day, kind=kind,
                priority=visitor.priority, issued_at=now, queued_at=now, due_at=due_at,
            )  # fmt: skip
        ticket.id = next(self.next_id)
        self.tickets[ticket.id] = ticket
        self.waiting[ticket.id] = Candidate(
            ticket.id, ticket.number, service_id, ticket.kind, ticket.priority, now, due_at
        )
        record = Record(ticket.id, visitor, matter, ticket.kind, self.now)
        if due_at is not None:
            record.slot = self._minute(due_at)
        self.records[ticket.id] = record
        self.issued.append(record)
        if kind == TicketKind.WALK_IN and follows is None and self.estimate is not None:
            record.told = self.estimate(ticket.id, self.floor(), now)
            recent = self.recent_waits[service_id]
            record.told_baseline = sum(recent) / len(recent) if recent else 0.0
        return ticket

    # -- calling and serving ---------------------------------------------------------------

    def floor(self) -> Floor:
        """What the server knows of the hall right now (the estimate's input)."""
        now = self.at(self.now)
        counters = tuple(
            CounterNow(
                counter_id=d.spec.number,
                profile=d.profile,
                state=d.state,
                serving=d.ticket.service_id if d.ticket is not None else None,
                since=self.at(d.since) if d.since is not None else None,
                paused_at=self.at(d.paused_at) if d.paused_at is not None else None,
            )
            for d in self.desks
        )
        expected = tuple(
            (self.ids[v.matter], v.booking.slot_start)
            for v in self.pending_bookings.values()
            if v.booking is not None
        )
        stats = {
            sid: ServiceStats(tuple(self.recent[sid]), self.services[sid].typical_minutes)
            for sid in self.services
        }
        return Floor(
            counters, tuple(self.waiting.values()), expected, stats, now,
            break_minutes=self.break_minutes, no_show_rate=self.scenario.bookings.no_show,
            arrivals=self._recent_arrivals(),
        )  # fmt: skip

    def _recent_arrivals(self) -> dict[tuple[int, str], float]:
        """Priority walk-ins and transfers per minute over the last hour, as the server
        counts them from its tickets."""
        since = self.now - ARRIVAL_WINDOW
        counts: dict[tuple[int, str], int] = {}
        for record in reversed(self.issued):
            if record.queued < since:
                break
            if record.kind == TicketKind.TRANSFER:
                key = (self.ids[record.matter], TRANSFER)
            elif record.kind == TicketKind.WALK_IN:
                key = (self.ids[record.matter], record.visitor.priority)
            else:
                continue
            counts[key] = counts.get(key, 0) + 1
        return arrival_rates(counts, self.now - self.first_open)

    def _dispatch(self) -> None:
        """Every idle open counter calls, in counter order, while someone waits for it."""
        if not self.waiting:
            return
        for desk in self.desks:
            if not desk.idle:
                continue
            floor = self.floor()
            counter = next(c for c in floor.counters if c.counter_id == desk.spec.number)
            mine = [c for c in self.waiting.values() if c.service_id in desk.profile]
            if not mine:
                continue
            choice = self.choose(counter, mine, self.at(self.now), floor)
            if choice is None:
                continue
            self._call(desk, choice)
            if not self.waiting:
                return

    def _call(self, desk: _Desk, choice: Choice) -> None:
        now = self.at(self.now)
        ticket = self.tickets[choice.candidate.ticket_id]
        del self.waiting[ticket.ref]
        ticket.call(desk.spec.number, None, now, choice.reason)
        ticket.start(desk.spec.number, now)
        record = self.records[ticket.ref]
        record.called = self.now
        record.counter = desk.spec.number
        record.level = desk.profile[ticket.service_id]
        record.reason = choice.reason
        if record.kind == TicketKind.WALK_IN and not record.visitor.booked:
            # The baseline: the mean wait of the matter's last walk-ins called.
            self.recent_waits[ticket.service_id].append(self.now - record.queued)
        desk.ticket = ticket
        desk.since = self.now
        visitor = record.visitor
        matter = self.scenario.matter(record.matter)
        u = visitor.transfer_u if ticket.kind == TicketKind.TRANSFER else visitor.service_u
        minutes = matter.service.quantile(u)
        if record.level == ServiceLevel.SECONDARY:
            minutes *= self.scenario.secondary_speed
        self.schedule(self.now + minutes, Kind.SERVICE_ENDS, desk)

    def _service_ends(self, desk: _Desk) -> None:
        ticket = desk.ticket
        assert ticket is not None and desk.since is not None
        now = self.at(self.now)
        record = self.records[ticket.ref]
        record.ended = self.now
        self.recent[ticket.service_id].appendleft(self.now - desk.since)
        visitor = record.visitor
        if ticket.kind != TicketKind.TRANSFER and visitor.transfer_to is not None:
            self._enqueue(visitor, TicketKind.TRANSFER, None, visitor.transfer_to, ticket)
        else:
            ticket.finish(desk.spec.number, Outcome.DONE, None, now)
        self.outcome.last_service_ends = max(self.outcome.last_service_ends, self.now)
        desk.ticket = None
        desk.since = None
        if ticket.state not in (TicketState.DONE, TicketState.TRANSFERRED):
            raise AssertionError(f"{ticket.label} ended in {ticket.state}")
