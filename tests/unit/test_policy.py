"""Which waiting ticket a counter calls next, the reason the clerk sees, and the wait bound."""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from queue_server.domain.floor import CounterNow, ServiceStats
from queue_server.domain.floor import Floor as HallFloor
from queue_server.domain.model import CounterState, ServiceLevel, TicketKind
from queue_server.domain.policy import Candidate, PolicyConfig, choose_next, chooser, rank

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai
CONFIG = PolicyConfig()
PASSPORTS, RESIDENCE, SOCIAL_INSURANCE = 10, 11, 12
PRIMARY, SECONDARY = ServiceLevel.PRIMARY, ServiceLevel.SECONDARY
PASSPORT_DESK = {PASSPORTS: PRIMARY}
GENERAL_DESK = {PASSPORTS: PRIMARY, RESIDENCE: SECONDARY}

_ids = itertools.count(1)


def ticket(
    waited_min: float,
    service_id: int = PASSPORTS,
    kind: TicketKind = TicketKind.WALK_IN,
    priority: str = "none",
    due_in_min: float | None = None,
) -> Candidate:
    """A waiting ticket that joined the queue ``waited_min`` minutes before NOW."""
    ticket_id = next(_ids)
    return Candidate(
        ticket_id=ticket_id,
        number=f"A{ticket_id:03d}",
        service_id=service_id,
        kind=kind,
        priority=priority,
        queued_at=NOW - timedelta(minutes=waited_min),
        due_at=None if due_in_min is None else NOW + timedelta(minutes=due_in_min),
    )


def next_at(profile: Mapping[int, ServiceLevel], *waiting: Candidate) -> tuple[Candidate, str]:
    choice = choose_next(profile, list(waiting), NOW, CONFIG, SHANGHAI)
    assert choice is not None
    return choice.candidate, choice.reason


# --- each tier and its reason -------------------------------------------------------------


def test_a_transferred_visit_continues_before_anyone_else() -> None:
    transferred = ticket(3, kind=TicketKind.TRANSFER)
    due = ticket(40, kind=TicketKind.APPOINTMENT, due_in_min=-30)
    elderly = ticket(50, priority="elderly")

    chosen, reason = next_at(PASSPORT_DESK, elderly, due, transferred)

    assert chosen == transferred
    assert reason == "continues visit (transferred, waiting 3 min)"


def test_continuing_visits_go_oldest_first() -> None:
    newer = ticket(2, kind=TicketKind.TRANSFER)
    older = ticket(9, kind=TicketKind.ESCALATION)

    chosen, _ = next_at(PASSPORT_DESK, newer, older)

    assert chosen == older


def test_a_due_appointment_goes_ahead_of_walk_ins_with_its_local_time() -> None:
    due = ticket(5, kind=TicketKind.APPOINTMENT, due_in_min=-30)  # due 09:30 local
    walk_in = ticket(45, priority="elderly")

    chosen, reason = next_at(PASSPORT_DESK, walk_in, due)

    assert chosen == due
    assert reason == "appointment due 09:30"


def test_an_appointment_due_right_now_counts_as_due() -> None:
    due = ticket(1, kind=TicketKind.APPOINTMENT, due_in_min=0)

    chosen, reason = next_at(PASSPORT_DESK, ticket(30), due)

    assert chosen == due
    assert reason == "appointment due 10:00"


def test_due_appointments_go_by_due_time_not_arrival() -> None:
    due_0950_came_early = ticket(50, kind=TicketKind.APPOINTMENT, due_in_min=-10)
    due_0930 = ticket(5, kind=TicketKind.APPOINTMENT, due_in_min=-30)

    chosen, reason = next_at(PASSPORT_DESK, due_0950_came_early, due_0930)

    assert chosen == due_0930
    assert reason == "appointment due 09:30"


def test_the_due_time_is_shown_in_the_halls_timezone() -> None:
    due = Candidate(1, "A001", PASSPORTS, TicketKind.APPOINTMENT, "none", NOW, NOW)
    choice = choose_next(PASSPORT_DESK, [due], NOW + timedelta(minutes=30), CONFIG, SHANGHAI)

    assert choice is not None
    assert choice.reason == "appointment due 10:00"  # 02:00 UTC


def test_a_priority_class_is_worth_its_boost() -> None:
    walk_in = ticket(30)
    elderly = ticket(10, priority="elderly")  # joined 20 min later, boost 25 min

    chosen, reason = next_at(PASSPORT_DESK, walk_in, elderly)

    assert chosen == elderly
    assert reason == "priority: elderly (waiting 10 min)"


def test_a_priority_class_does_not_overtake_more_than_its_boost() -> None:
    walk_in = ticket(30)
    joined_25_later = ticket(5, priority="pregnancy")
    joined_26_later = ticket(4, priority="disability")

    assert next_at(PASSPORT_DESK, walk_in, joined_26_later)[0] == walk_in
    # Equal scores: the earlier queue time goes first.
    assert next_at(PASSPORT_DESK, joined_25_later, walk_in)[0] == walk_in


def test_otherwise_the_longest_wait_goes_first() -> None:
    longest = ticket(34.9)

    chosen, reason = next_at(PASSPORT_DESK, ticket(3), longest, ticket(12))

    assert chosen == longest
    assert reason == "longest wait 34 min"


def test_a_secondary_matter_goes_first_once_it_has_waited_its_handicap_longer() -> None:
    secondary = ticket(31, service_id=RESIDENCE)
    primary = ticket(10)  # the secondary one waited 21 min longer; the handicap is 20

    chosen, reason = next_at(GENERAL_DESK, primary, secondary)

    assert chosen == secondary
    assert reason == "longest wait 31 min (secondary matter here)"


def test_a_secondary_matter_counts_its_wait_less_than_the_counters_own_matters() -> None:
    secondary = ticket(19, service_id=RESIDENCE)
    primary = ticket(1)

    assert next_at(GENERAL_DESK, secondary, primary)[0] == primary
    assert next_at(GENERAL_DESK, secondary) == (
        secondary,
        "longest wait 19 min (secondary matter here)",
    )


def test_an_early_appointment_waits_while_anyone_else_is_waiting() -> None:
    early = ticket(40, kind=TicketKind.APPOINTMENT, due_in_min=60)  # due 11:00
    secondary = ticket(1, service_id=RESIDENCE)

    assert next_at(GENERAL_DESK, early, secondary)[0] == secondary
    assert next_at(GENERAL_DESK, early) == (
        early,
        "appointment at 11:00, checked in early; nobody else waiting",
    )


def test_tickets_of_matters_the_counter_does_not_serve_are_never_chosen() -> None:
    elsewhere = [
        ticket(90, service_id=SOCIAL_INSURANCE, kind=TicketKind.TRANSFER),
        ticket(80, service_id=SOCIAL_INSURANCE, kind=TicketKind.APPOINTMENT, due_in_min=-60),
        ticket(70, service_id=SOCIAL_INSURANCE, priority="elderly"),
    ]
    mine = ticket(1, service_id=RESIDENCE)

    assert choose_next(GENERAL_DESK, elsewhere, NOW, CONFIG, SHANGHAI) is None
    assert next_at(GENERAL_DESK, *elsewhere, mine)[0] == mine
    assert [c.candidate for c in rank(GENERAL_DESK, [*elsewhere, mine], NOW, CONFIG, SHANGHAI)] == [
        mine
    ]


def test_nobody_waiting_means_nothing_to_call() -> None:
    assert choose_next(GENERAL_DESK, [], NOW, CONFIG, SHANGHAI) is None
    assert choose_next({}, [ticket(5)], NOW, CONFIG, SHANGHAI) is None


def test_rank_lists_the_tiers_in_their_order() -> None:
    early = ticket(40, kind=TicketKind.APPOINTMENT, due_in_min=60)
    secondary = ticket(5, service_id=RESIDENCE)
    walk_in = ticket(2)
    due = ticket(4, kind=TicketKind.APPOINTMENT, due_in_min=-1)
    transferred = ticket(1, kind=TicketKind.TRANSFER)

    order = rank(GENERAL_DESK, [early, secondary, walk_in, due, transferred], NOW, CONFIG, SHANGHAI)

    assert [(c.candidate, c.tier) for c in order] == [
        (transferred, 1),
        (due, 2),
        (walk_in, 3),  # waited 2 min
        (secondary, 3),  # waited 5, counts as 5 - 20
        (early, 4),
    ]


# --- the wait bound over simulated days ---------------------------------------------------

SERVICES = (PASSPORTS, RESIDENCE, SOCIAL_INSURANCE)
PRIORITIES = ("none", "elderly", "disability", "pregnancy")
CONTINUING = (TicketKind.TRANSFER, TicketKind.ESCALATION)
Profile = dict[int, ServiceLevel]


def expected_tier(c: Candidate, level: ServiceLevel, now: datetime, config: PolicyConfig) -> int:
    """The tier as policy.py's docstring states it (without the hall floor), written
    independently."""
    if c.kind in CONTINUING:
        return 1
    if c.kind == TicketKind.APPOINTMENT and c.due_at is not None:
        return 2 if c.due_at <= now else 4
    return 3


profiles = st.dictionaries(
    st.sampled_from(SERVICES), st.sampled_from(ServiceLevel), min_size=1, max_size=3
)
configs = st.builds(
    PolicyConfig,
    secondary_handicap=st.integers(0, 40).map(lambda m: timedelta(minutes=m)),
    priority_boosts=st.fixed_dictionaries(
        {p: st.integers(0, 30).map(lambda m: timedelta(minutes=m)) for p in PRIORITIES[1:]}
    ),
)
seconds = st.integers(0, 10 * 60)


@dataclass(frozen=True)
class Arrival:
    gap: int
    service_id: int
    priority: str
    kind: TicketKind
    due_in: int


@dataclass(frozen=True)
class Call:
    gap: int
    counter: int


arrivals = st.builds(
    Arrival,
    gap=seconds,
    service_id=st.sampled_from(SERVICES),
    priority=st.sampled_from(PRIORITIES),
    # Mostly walk-ins; sampled_from shrinks towards the first element.
    kind=st.sampled_from([TicketKind.WALK_IN] * 6 + [TicketKind.APPOINTMENT, *CONTINUING]),
    due_in=st.integers(-30 * 60, 60 * 60),
)


@st.composite
def days(draw: st.DrawFn) -> tuple[PolicyConfig, list[Profile], list[Arrival | Call]]:
    config = draw(configs)
    counters = draw(st.lists(profiles, min_size=1, max_size=4))
    calls = st.builds(Call, gap=seconds, counter=st.integers(0, len(counters) - 1))
    # Two arrivals for each call on average, so that queues build up.
    steps = draw(st.lists(st.one_of(arrivals, arrivals, calls), max_size=60))
    return config, counters, steps


@dataclass
class Floor:
    """A simulated hall floor: the waiting tickets and the clock."""

    now: datetime = NOW
    waiting: dict[int, Candidate] = field(default_factory=dict)
    issued: list[Candidate] = field(default_factory=list)

    def arrive(self, arrival: Arrival) -> Candidate:
        ticket_id = len(self.issued) + 1
        candidate = Candidate(
            ticket_id=ticket_id,
            number=f"A{ticket_id:03d}",
            service_id=arrival.service_id,
            kind=arrival.kind,
            priority=arrival.priority,
            queued_at=self.now,
            due_at=(
                self.now + timedelta(seconds=arrival.due_in)
                if arrival.kind == TicketKind.APPOINTMENT
                else None
            ),
        )
        self.issued.append(candidate)
        self.waiting[ticket_id] = candidate
        return candidate


@settings(max_examples=200, deadline=None)
@given(days())
def test_within_a_tier_nobody_is_overtaken_by_a_ticket_that_joined_more_than_b_later(
    day: tuple[PolicyConfig, list[Profile], list[Arrival | Call]],
) -> None:
    config, counters, steps = day
    floor = Floor()
    for step in steps:
        floor.now += timedelta(seconds=step.gap)
        if isinstance(step, Arrival):
            floor.arrive(step)
            continue
        profile = counters[step.counter]
        choice = choose_next(profile, floor.waiting.values(), floor.now, config, SHANGHAI)
        served = [c for c in floor.waiting.values() if c.service_id in profile]
        if choice is None:
            assert served == []
            continue
        chosen = choice.candidate
        tiers = {
            c.ticket_id: expected_tier(c, profile[c.service_id], floor.now, config) for c in served
        }
        assert chosen.service_id in profile
        assert choice.tier == tiers[chosen.ticket_id] == min(tiers.values())
        if choice.tier == 3:
            for other in served:
                if tiers[other.ticket_id] == choice.tier:
                    assert chosen.queued_at - other.queued_at <= config.bound, (chosen, other)
        del floor.waiting[chosen.ticket_id]


@pytest.mark.parametrize("seed", range(20))
def test_the_estimates_silent_chooser_calls_whom_the_policy_calls(seed: int) -> None:
    """The chooser the estimate's projection plays (no reasons, no look-ahead: its own
    loop, not ``choose_next``'s ranked list) calls the same ticket in the same tier as the
    policy: random counters, configurations and queues of every kind (continuing visits,
    appointments due and not, priorities, matters served at secondary level), with ties."""
    dice = random.Random(seed)
    for _ in range(50):
        config = PolicyConfig(
            priority_boosts={p: timedelta(minutes=dice.randint(0, 30)) for p in PRIORITIES[1:]},
            secondary_handicap=timedelta(minutes=dice.randint(0, 40)),
        )
        silent = chooser(config, SHANGHAI, reasons=False)
        profile = {sid: dice.choice(list(ServiceLevel)) for sid in dice.sample(SERVICES, 2)}
        counter = CounterNow(1, profile, CounterState.OPEN)
        queue = []
        for ticket_id in range(1, dice.randint(1, 12)):
            kind = dice.choice([TicketKind.WALK_IN] * 3 + [TicketKind.APPOINTMENT, *CONTINUING])
            booked = kind == TicketKind.APPOINTMENT
            due = NOW + timedelta(minutes=dice.choice([-10, 0, 15])) if booked else None
            joined = NOW - timedelta(minutes=dice.choice([5, 10, 25]))
            service, priority = dice.choice(SERVICES), dice.choice(PRIORITIES)
            queue.append(Candidate(ticket_id, "A", service, kind, priority, joined, due))
        while True:
            told = choose_next(profile, queue, NOW, config, SHANGHAI)
            played = silent(counter, queue, NOW, None)
            assert (played and (played.candidate, played.tier)) == (
                told and (told.candidate, told.tier)
            ), seed
            if told is None:
                break
            queue.remove(told.candidate)


@st.composite
def busy_days(
    draw: st.DrawFn,
) -> tuple[PolicyConfig, list[Profile], list[tuple[Arrival, list[Call]]]]:
    """Walk-ins only; each arrival is followed by at least one call; every matter has a
    counter serving it at primary level."""
    config = draw(configs)
    counters = draw(st.lists(profiles, min_size=1, max_size=4))
    for service_id in SERVICES:
        if not any(p.get(service_id) == PRIMARY for p in counters):
            counters[draw(st.integers(0, len(counters) - 1))][service_id] = PRIMARY
    walk_ins = st.builds(
        Arrival,
        gap=seconds,
        service_id=st.sampled_from(SERVICES),
        priority=st.sampled_from(PRIORITIES),
        kind=st.just(TicketKind.WALK_IN),
        due_in=st.just(0),
    )
    calls = st.lists(
        st.builds(Call, gap=seconds, counter=st.integers(0, len(counters) - 1)),
        min_size=1,
        max_size=3,
    )
    steps = draw(st.lists(st.tuples(walk_ins, calls), max_size=40))
    return config, counters, steps


@settings(max_examples=200, deadline=None)
@given(busy_days())
def test_every_walk_in_is_called_within_its_bound_of_call_slots(
    day: tuple[PolicyConfig, list[Profile], list[tuple[Arrival, list[Call]]]],
) -> None:
    """A call slot of a ticket is a call, made while it waits, at a counter serving its matter
    at primary level. Each such call picks the ticket itself, or one that was waiting when it
    arrived, or one that joined within B after it; so it waits at most that many slots."""
    config, counters, steps = day
    floor = Floor()
    called: dict[int, int] = {}
    slots_waited: dict[int, int] = {}
    ahead_on_arrival: dict[int, int] = {}

    def call_at(counter: int) -> bool:
        profile = counters[counter]
        choice = choose_next(profile, floor.waiting.values(), floor.now, config, SHANGHAI)
        for c in floor.waiting.values():
            if profile.get(c.service_id) == PRIMARY:
                slots_waited[c.ticket_id] += 1
        if choice is None:
            return False
        chosen = choice.candidate.ticket_id
        slots_waited[chosen] -= profile.get(choice.candidate.service_id) == PRIMARY
        assert chosen not in called
        called[chosen] = counter
        del floor.waiting[chosen]
        return True

    for arrival, calls in steps:
        floor.now += timedelta(seconds=arrival.gap)
        ahead_on_arrival[len(floor.issued) + 1] = len(floor.waiting)
        slots_waited[floor.arrive(arrival).ticket_id] = 0
        for call in calls:
            floor.now += timedelta(seconds=call.gap)
            call_at(call.counter)
    # The day goes on until every counter finds nobody left to call.
    for _ in range(len(floor.issued) + 1):
        floor.now += timedelta(minutes=5)
        if not any([call_at(counter) for counter in range(len(counters))]):
            break

    assert floor.waiting == {}
    assert sorted(called) == [c.ticket_id for c in floor.issued]
    for mine in floor.issued:
        before = ahead_on_arrival[mine.ticket_id]
        within_b_after = sum(
            1
            for other in floor.issued[mine.ticket_id :]
            if other.queued_at - mine.queued_at <= config.bound
        )
        assert slots_waited[mine.ticket_id] <= before + within_b_after, mine


# --- appointments with the hall floor: just in time, and early when they would be late -----

DESK_ID, OTHER_DESK_ID = 1, 2


def hall_floor(*waiting: Candidate, other_busy_for: float | None, samples: float = 10) -> HallFloor:
    """This desk (free now) and another serving the same matter, busy for ``other_busy_for``
    more minutes (None: closed); passports take ``samples`` minutes each lately."""
    others = []
    if other_busy_for is not None:
        started = NOW - timedelta(minutes=samples - other_busy_for)
        others.append(
            CounterNow(OTHER_DESK_ID, PASSPORT_DESK, CounterState.OPEN, PASSPORTS, started)
        )
    return HallFloor(
        counters=[CounterNow(DESK_ID, PASSPORT_DESK, CounterState.OPEN), *others],
        waiting=list(waiting),
        expected=(),
        stats={PASSPORTS: ServiceStats((samples,) * 20, samples)},
        now=NOW,
    )


def with_floor(floor: HallFloor) -> tuple[Candidate, str]:
    choice = choose_next(PASSPORT_DESK, floor.waiting, NOW, CONFIG, SHANGHAI, floor, DESK_ID)
    assert choice is not None
    return choice.candidate, choice.reason


def test_a_due_appointment_waits_while_another_counter_will_free_up_in_time() -> None:
    due = ticket(8, kind=TicketKind.APPOINTMENT, due_in_min=-1)  # slot began a minute ago
    walk_in = ticket(20)

    chosen, _ = with_floor(hall_floor(due, walk_in, other_busy_for=1))

    assert chosen == walk_in, "the other counter frees up within the 5 minutes"


def test_a_due_appointment_is_called_before_it_would_be_late() -> None:
    due = ticket(8, kind=TicketKind.APPOINTMENT, due_in_min=-1)
    walk_in = ticket(20)

    chosen, reason = with_floor(hall_floor(due, walk_in, other_busy_for=9))

    assert chosen == due
    assert reason == "appointment due 09:59"


def test_an_appointment_is_called_early_when_no_counter_would_be_free_at_its_slot() -> None:
    # The slot is in 3 minutes; the only other counter is busy for 9 more, and a walk-in
    # here would take about 10: waiting for the slot would make the booked visitor late.
    soon = ticket(12, kind=TicketKind.APPOINTMENT, due_in_min=3)
    walk_in = ticket(20)

    chosen, reason = with_floor(hall_floor(soon, walk_in, other_busy_for=9))

    assert chosen == soon
    assert reason == "appointment at 10:03: called now to keep it on time"


def test_an_appointment_is_not_called_early_when_it_can_be_kept_anyway() -> None:
    soon = ticket(12, kind=TicketKind.APPOINTMENT, due_in_min=3)
    walk_in = ticket(20)

    chosen, _ = with_floor(hall_floor(soon, walk_in, other_busy_for=2))
    order = rank(PASSPORT_DESK, [soon, walk_in], NOW, CONFIG, SHANGHAI,
                 hall_floor(soon, walk_in, other_busy_for=2), DESK_ID)  # fmt: skip

    assert chosen == walk_in
    assert order[1].reason == "appointment at 10:03, checked in early; nobody else waiting"


def test_an_appointment_far_ahead_is_never_called_early_for_the_look_ahead() -> None:
    later = ticket(5, kind=TicketKind.APPOINTMENT, due_in_min=45)  # beyond the 20 min limit
    walk_in = ticket(20)

    assert with_floor(hall_floor(later, walk_in, other_busy_for=None))[0] == walk_in


def test_two_appointments_of_one_slot_need_two_counters_free_in_time() -> None:
    first = ticket(10, kind=TicketKind.APPOINTMENT, due_in_min=2)
    second = ticket(9, kind=TicketKind.APPOINTMENT, due_in_min=2)
    walk_in = ticket(20)
    # The other counter frees up in 1 minute: enough for one of them, not for both.
    chosen, _ = with_floor(hall_floor(first, second, walk_in, other_busy_for=1))

    assert chosen in (first, second)
