"""What a waiting visitor is told: the projected wait, as a range, and who is ahead."""

from __future__ import annotations

import collections
import heapq
import random
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from msgspec import structs

from queue_server.domain import estimate
from queue_server.domain.estimate import (
    TRANSFER,
    _expected,
    band,
    project,
    project_traced,
    resume,
    tell,
    tell_traced,
)
from queue_server.domain.floor import Candidate, CounterNow, Floor, ServiceStats, arrival_rates
from queue_server.domain.model import CounterState, ServiceLevel, TicketKind
from queue_server.domain.policy import Chooser, PolicyConfig, SilentChooser, chooser

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai
CHOOSE = chooser(PolicyConfig(), SHANGHAI)
PASSPORTS, RESIDENCE = 10, 11
PRIMARY, SECONDARY = ServiceLevel.PRIMARY, ServiceLevel.SECONDARY


def waiting(
    ticket_id: int,
    joined_min_ago: float,
    service_id: int = PASSPORTS,
    priority: str = "none",
    kind: TicketKind = TicketKind.WALK_IN,
    due_in_min: float | None = None,
) -> Candidate:
    return Candidate(
        ticket_id=ticket_id,
        number=f"A{ticket_id:03d}",
        service_id=service_id,
        kind=kind,
        priority=priority,
        queued_at=NOW - timedelta(minutes=joined_min_ago),
        due_at=None if due_in_min is None else NOW + timedelta(minutes=due_in_min),
    )


def counter(
    counter_id: int,
    profile: dict[int, ServiceLevel] | None = None,
    state: CounterState = CounterState.OPEN,
    serving: int | None = None,
    busy_for: float = 0,
    paused_min_ago: float | None = None,
) -> CounterNow:
    """A counter; ``serving`` a matter whose 10-minute service began ``10 - busy_for`` ago."""
    return CounterNow(
        counter_id=counter_id,
        profile=profile or {PASSPORTS: PRIMARY},
        state=state,
        serving=serving,
        since=NOW - timedelta(minutes=10 - busy_for) if serving is not None else None,
        paused_at=None if paused_min_ago is None else NOW - timedelta(minutes=paused_min_ago),
    )


def floor(
    *tickets: Candidate,
    counters: list[CounterNow] | None = None,
    expected: list[tuple[int, datetime]] | None = None,
    arrivals: dict[tuple[int, str], float] | None = None,
    minutes: float = 10,
    no_show_rate: float = 0.0,
) -> Floor:
    """Every matter's services took exactly ``minutes`` lately."""
    stats = {sid: ServiceStats((minutes,) * 20, minutes) for sid in (PASSPORTS, RESIDENCE)}
    return Floor(
        counters=counters if counters is not None else [counter(1)],
        waiting=list(tickets),
        expected=expected or [],
        stats=stats,
        now=NOW,
        no_show_rate=no_show_rate,
        arrivals=arrivals or {},
    )


def minutes_until_called(hall: Floor) -> dict[int, float]:
    return {tid: (at - NOW).total_seconds() / 60 for tid, at in project(hall, CHOOSE).items()}


def test_one_counter_calls_the_queue_one_service_after_another() -> None:
    hall = floor(waiting(1, 30), waiting(2, 20), waiting(3, 10))

    assert minutes_until_called(hall) == {1: 0, 2: 10, 3: 20}


def test_a_busy_counter_first_finishes_what_it_is_serving() -> None:
    hall = floor(waiting(1, 5), counters=[counter(1, serving=PASSPORTS, busy_for=4)])

    # Recent services all took 10 minutes, and this one has run 6: 4 more to go.
    assert minutes_until_called(hall) == pytest.approx({1: 4})


def test_a_counter_shared_with_another_matter_serves_it_too() -> None:
    general = counter(1, {PASSPORTS: PRIMARY, RESIDENCE: PRIMARY})
    hall = floor(waiting(1, 40, service_id=RESIDENCE), waiting(2, 10), counters=[general])

    # The residence visitor waited longer: the shared counter takes them first.
    assert minutes_until_called(hall)[2] == 10


def test_due_appointments_and_transfers_count_even_in_another_matter() -> None:
    general = counter(1, {PASSPORTS: PRIMARY, RESIDENCE: SECONDARY})
    hall = floor(
        waiting(1, 30),
        waiting(2, 1, service_id=RESIDENCE, kind=TicketKind.TRANSFER),
        waiting(3, 2, kind=TicketKind.APPOINTMENT, due_in_min=-1),
        counters=[general],
    )

    assert minutes_until_called(hall)[1] == 20


def test_bookings_not_checked_in_yet_are_expected_less_the_usual_no_shows() -> None:
    assert [
        c.due_at
        for c in _expected(
            floor(expected=[(PASSPORTS, NOW)] * 3, no_show_rate=0.1), {PASSPORTS}, -1
        )
    ] == [NOW] * 3
    # One in three missed: of three bookings, the first and the third are expected.
    thirds = floor(expected=[(PASSPORTS, NOW + timedelta(minutes=m)) for m in (0, 30, 60)],
                   no_show_rate=1 / 3)  # fmt: skip
    assert [c.due_at for c in _expected(thirds, {PASSPORTS}, -1)] == [
        NOW,
        NOW + timedelta(minutes=60),
    ]

    queue = [waiting(i, 5 - i) for i in range(1, 5)]
    booked_at_quarter_past = [(PASSPORTS, NOW + timedelta(minutes=15))]
    comes = floor(*queue, expected=booked_at_quarter_past)
    may_not_come = floor(*queue, expected=booked_at_quarter_past, no_show_rate=0.6)

    # The booked visitor is expected 10 minutes before the slot; the one counter must call
    # them at 10, before its next walk-in, to keep the slot: the last walk-in waits longer.
    assert minutes_until_called(comes) == {1: 0, 2: 20, 3: 30, 4: 40}
    # Most bookings are not kept: of one booking, none is expected.
    assert minutes_until_called(may_not_come) == {1: 0, 2: 10, 3: 20, 4: 30}


def test_priority_visitors_expected_to_come_go_ahead_of_an_ordinary_one() -> None:
    queue = [waiting(i, 4 - i) for i in range(1, 4)]
    quiet = floor(*queue)
    elderly_coming = floor(*queue, arrivals={(PASSPORTS, "elderly"): 1 / 10})

    assert minutes_until_called(quiet)[3] == 20
    assert minutes_until_called(elderly_coming)[3] > 20


def test_transfers_expected_to_come_go_ahead_too() -> None:
    queue = [waiting(i, 4 - i) for i in range(1, 4)]
    transfers = floor(*queue, arrivals={(PASSPORTS, TRANSFER): 1 / 10})

    assert minutes_until_called(transfers)[3] > 20


def test_a_paused_counter_is_expected_back_after_a_usual_break() -> None:
    paused = counter(2, state=CounterState.PAUSED, paused_min_ago=20)
    hall = floor(*[waiting(i, 40 - i) for i in range(1, 6)], counters=[counter(1), paused])

    # Back 30 min after it paused, i.e. in 10 minutes: then two counters share the queue.
    assert minutes_until_called(hall) == {1: 0, 2: 10, 3: 10, 4: 20, 5: 20}


def test_with_no_counter_open_only_the_place_in_the_queue_is_told() -> None:
    queue = [waiting(1, 5), waiting(2, 3, priority="elderly"), waiting(3, 1)]
    hall = floor(*queue, counters=[counter(1, state=CounterState.CLOSED)])

    told = tell(3, hall, CHOOSE)

    assert minutes_until_called(hall) == {}
    assert told is not None
    assert (told.minutes, told.low, told.high) == (None, None, None)
    assert told.people_ahead == 2
    assert told.basis == "no counter for this matter is open now"
    assert tell(99, hall, CHOOSE) is None, "a ticket not waiting is told nothing"


def test_what_the_visitor_is_told() -> None:
    hall = floor(*[waiting(i, 30 - i) for i in range(1, 5)], waiting(9, 50, service_id=RESIDENCE))
    general = counter(1, {PASSPORTS: PRIMARY, RESIDENCE: PRIMARY})
    hall = floor(*hall.waiting, counters=[general])

    told = tell(4, hall, CHOOSE)

    assert told is not None
    assert told.minutes == 40, "three of the same matter and the residence visitor first"
    assert told.people_ahead == 3, "people ahead counts the visitor's own matter"
    assert (told.low, told.high) == band(40)
    assert told.low <= told.minutes <= told.high


@pytest.mark.parametrize(
    ("point", "told"),
    [(0, (0, 0)), (0.4, (0, 0)), (2, (0, 8)), (10, (3, 25)), (20, (8, 40)), (45, (20, 70))],
)
def test_the_range_around_the_projection(point: float, told: tuple[int, int]) -> None:
    assert band(point) == told


def test_the_range_grows_with_the_wait_and_always_holds_the_projection() -> None:
    last = (0, 0)
    for point in range(0, 240):
        low, high = band(point)
        assert low <= point <= high or point == 0
        assert low >= last[0] and high >= last[1]
        last = (low, high)


def test_service_times_from_recent_services_or_the_configured_duration() -> None:
    measured = ServiceStats((4, 30, 8), 10)
    unmeasured = ServiceStats((4, 30), 10)

    assert measured.mean() == 14
    assert unmeasured.mean() == 10
    # A service that has run 6 minutes: of the recent ones longer than that, 30 and 8
    # had 24 and 2 to go; fewer than three samples: not below a quarter of the mean.
    assert measured.remaining(6) == 13
    assert unmeasured.remaining(4) == 6
    assert ServiceStats((10,) * 5, 10).ends_within(9, 2) == 1.0
    assert ServiceStats((10,) * 5, 10).ends_within(2, 2) == 0.0


def test_a_counter_paused_past_its_usual_break_is_soon_back_or_else_not_counted() -> None:
    queue = [waiting(i, 40 - i) for i in range(1, 4)]

    def called_with(paused_min_ago: float) -> dict[int, float]:
        paused = counter(2, state=CounterState.PAUSED, paused_min_ago=paused_min_ago)
        return minutes_until_called(floor(*queue, counters=[counter(1), paused]))

    # Usual break 30 min. Paused 45 min ago: overrun, back in a quarter of a break.
    assert called_with(45) == {1: 0, 2: 7.5, 3: 10}
    # Paused 3 hours ago: not expected back at all.
    assert called_with(180) == {1: 0, 2: 10, 3: 20}


def test_arrival_rates_are_not_extrapolated_from_the_first_minutes_of_the_day() -> None:
    counts = {(PASSPORTS, "elderly"): 5, (PASSPORTS, TRANSFER): 3}

    assert arrival_rates(counts, minutes_open=3) == {
        (PASSPORTS, "elderly"): 5 / 30,
        (PASSPORTS, TRANSFER): 3 / 30,
    }
    assert arrival_rates(counts, minutes_open=45)[(PASSPORTS, "elderly")] == 5 / 45
    assert arrival_rates(counts, minutes_open=300)[(PASSPORTS, "elderly")] == 5 / 60


def _project_weighing_everyone(hall: Floor, choose: Chooser = CHOOSE) -> dict[int, datetime]:
    """The projection as first written: every waiting ticket weighed at every call. The
    indexed projection must call the same tickets at the same moments."""
    from dataclasses import replace

    from queue_server.domain.estimate import (
        PROJECTION_STEPS,
        _arriving,
        _back_from_break,
    )

    now = hall.now
    free = []
    for c in hall.counters:
        at = now
        if c.state == CounterState.PAUSED:
            back = _back_from_break(c, hall)
            if back is None:
                continue
            at = back
        elif c.state != CounterState.OPEN:
            continue
        if c.serving is not None and c.since is not None:
            elapsed = max(0.0, (now - c.since).total_seconds() / 60)
            at = max(at, now + timedelta(minutes=hall.stat(c.serving).remaining(elapsed)))
        free.append((at, c.counter_id, c))
    served = {sid for _, _, c in free for sid in c.profile}
    pool = [c for c in hall.waiting if c.service_id in served]
    real = {c.ticket_id for c in pool}
    pool.extend(_expected(hall, served, start_id=-1))
    pool.extend(_arriving(hall, served, start_id=-1 - len(pool)))
    heapq.heapify(free)
    busy = {c.counter_id: (c.serving, c.since) for _, _, c in free}
    called: dict[int, datetime] = {}
    steps = 0
    while free and real - called.keys() and steps < PROJECTION_STEPS:
        steps += 1
        at, counter_id, c = heapq.heappop(free)
        visible = [t for t in pool if t.queued_at <= at and t.service_id in c.profile]
        choice = None
        if visible:
            busy[counter_id] = (None, None)
            here = [*free, (at, counter_id, c)]
            counters = [
                CounterNow(cid, cc.profile, CounterState.OPEN, *busy[cid]) for _, cid, cc in here
            ]
            seen = [t for t in pool if t.queued_at <= at]
            ahead = replace(hall, counters=counters, waiting=seen, expected=(), now=at)
            choice = choose(c, visible, at, ahead)
        if choice is None:
            later = [t.queued_at for t in pool if t.service_id in c.profile and t.queued_at > at]
            if later:
                heapq.heappush(free, (min(later), counter_id, c))
            continue
        pool.remove(choice.candidate)
        called[choice.candidate.ticket_id] = at
        busy[counter_id] = (choice.candidate.service_id, at)
        minutes = hall.stat(choice.candidate.service_id).mean()
        heapq.heappush(free, (at + timedelta(minutes=minutes), counter_id, c))
    return {tid: at for tid, at in called.items() if tid in real}


def random_hall(dice: random.Random, appointments: bool = True) -> Floor:
    """Walk-ins of every priority, transfers, appointments due soon and later, shared
    counters (some busy, one paused), bookings to come and arrivals (without
    ``appointments``: no appointment waiting or booked)."""
    matters = (PASSPORTS, RESIDENCE)
    tickets = []
    for tid in range(1, dice.randint(5, 120)):
        kind = dice.choices(
            [TicketKind.WALK_IN, TicketKind.TRANSFER, TicketKind.APPOINTMENT],
            [8, 1, 2 if appointments else 0],
        )[0]
        tickets.append(
            waiting(
                tid,
                joined_min_ago=dice.choice([dice.uniform(0, 90), 5.0]),  # some joined together
                service_id=dice.choice(matters),
                priority=dice.choice(["none", "none", "none", "elderly", "disabled"]),
                kind=kind,
                due_in_min=dice.uniform(-10, 60) if kind == TicketKind.APPOINTMENT else None,
            )
        )
    counters = []
    for cid in range(1, dice.randint(2, 6)):
        first = dice.choice(matters)
        profile = {first: PRIMARY}
        if dice.random() < 0.6:
            profile[RESIDENCE if first == PASSPORTS else PASSPORTS] = SECONDARY
        state = CounterState.PAUSED if dice.random() < 0.15 else CounterState.OPEN
        counters.append(
            counter(
                cid,
                profile,
                state=state,
                serving=dice.choice([None, first]) if state == CounterState.OPEN else None,
                busy_for=dice.uniform(0, 9),
                paused_min_ago=dice.uniform(0, 40) if state == CounterState.PAUSED else None,
            )
        )
    expected = [
        (dice.choice(matters), NOW + timedelta(minutes=dice.choice(range(0, 240, 30))))
        for _ in range(dice.randint(0, 12) if appointments else 0)
    ]
    arrivals = {(dice.choice(matters), dice.choice(["elderly", "none", TRANSFER])): 0.05}
    minutes = dice.choice([4.0, 10.0, 15.0])
    return floor(
        *tickets,
        counters=counters,
        expected=expected,
        arrivals=arrivals,
        minutes=minutes,
        no_show_rate=0.1,
    )


@pytest.mark.parametrize("seed", range(40))
def test_the_indexed_projection_calls_whom_weighing_everyone_would(seed: int) -> None:
    hall = random_hall(random.Random(seed))
    weighed = _project_weighing_everyone(hall)
    assert project(hall, CHOOSE) == weighed
    # The server projects without putting choices in words: the same calls.
    assert project(hall, chooser(PolicyConfig(), SHANGHAI, reasons=False)) == weighed


@pytest.mark.parametrize("seed", range(40))
def test_without_appointments_the_projection_calls_whom_weighing_everyone_would(
    seed: int,
) -> None:
    """With no appointment in the pool there is no look-ahead, and the projection takes
    the least key of each turn's first tickets, keeping each first ticket's key while it
    waits (``_Pool.least_at``): the policy's choice at every turn, for priorities,
    transfers and matters served at either level."""
    dice = random.Random(seed)
    hall = random_hall(dice, appointments=False)
    # A steeper policy than the default: boosts and a handicap that reorder often.
    config = PolicyConfig(
        priority_boosts={"elderly": timedelta(minutes=dice.choice([5, 15, 40])),
                         "disabled": timedelta(minutes=dice.choice([0, 25, 60]))},
        secondary_handicap=timedelta(minutes=dice.choice([0, 10, 20, 45])),
    )  # fmt: skip
    weighed = _project_weighing_everyone(hall, chooser(config, SHANGHAI))
    assert weighed, "the hall's counters call someone"
    assert project(hall, chooser(config, SHANGHAI, reasons=False)) == weighed


def test_past_what_the_projection_plays_forward_the_place_by_arrival_is_told() -> None:
    """A hall with more waiting than the projection's steps: the last visitor's figure is
    not guessed, their place is told (and quickly: no projection per visitor ahead)."""
    from queue_server.domain.estimate import PROJECTION_STEPS

    many = [waiting(tid, joined_min_ago=300 - tid * 0.1) for tid in range(1, PROJECTION_STEPS + 51)]
    hall = floor(*many, counters=[counter(1), counter(2)])
    last = many[-1].ticket_id
    told = tell(last, hall, CHOOSE)
    assert told is not None
    assert (told.minutes, told.low, told.high) == (None, None, None)
    assert told.people_ahead == len(many) - 1
    assert told.basis == "more are waiting than the estimate plays forward"
    first = tell(many[0].ticket_id, hall, CHOOSE)
    assert first is not None and first.minutes == 0 and first.people_ahead == 0


@pytest.mark.parametrize("seed", range(60))
def test_a_projection_resumed_with_new_walk_ins_calls_as_a_fresh_one(seed: int) -> None:
    """A kiosk rush extends the last projection with the walk-ins who joined since
    (``resume``): random halls; walk-ins of every priority, some of a group nobody else is
    in, some joining just now, some at the very moment of a ticket already waiting, some
    committed late (joined before tickets already read); in one to four batches. Each
    resumed projection calls everyone when a fresh one would, and tells them the same."""
    dice = random.Random(seed)
    hall = random_hall(dice)
    joined = []
    for tid in range(1000, 1000 + dice.randint(1, 12)):
        when = dice.choice(["now", "now", "tie", "late"])
        if when == "tie" and hall.waiting:
            ago = (NOW - dice.choice(hall.waiting).queued_at).total_seconds() / 60
        elif when == "late":
            ago = dice.uniform(0, 30)
        else:
            ago = -dice.choice([0.0, dice.uniform(0, 0.1)])
        joined.append(
            waiting(
                tid,
                joined_min_ago=ago,
                service_id=dice.choice((PASSPORTS, RESIDENCE)),
                priority=dice.choice(["none", "none", "none", "elderly"]),
            )
        )
    choose = chooser(PolicyConfig(), SHANGHAI, reasons=False)
    cuts = sorted(dice.randint(0, len(joined)) for _ in range(dice.randint(0, 3)))
    traced = project_traced(hall, choose)
    for start, end in zip([0, *cuts], [*cuts, len(joined)], strict=True):
        traced = resume(traced, joined[start:end], choose)
        so_far = replace(hall, waiting=[*hall.waiting, *joined[:end]])
        assert traced.called == project(so_far, choose)
    # And so is everyone told, whether a counter serves their matter or not.
    for ticket in [*hall.waiting[:3], *hall.waiting[-3:], *joined]:
        assert tell(ticket.ticket_id, traced.floor, choose, traced.called) == tell(
            ticket.ticket_id, so_far, choose
        )


@pytest.mark.parametrize("seed", range(30))
def test_projections_resumed_from_one_projection_keep_their_own_walk_ins(seed: int) -> None:
    """A resumed projection shares its groups' lists with the one it was resumed from,
    appending a walk-in who joins last in place (``estimate.Members``). Two projections
    resumed from the same one with different walk-ins (a shared projection extended
    twice, a failed extension retried) each call as a fresh projection of their own
    floor, and the projection they came from still calls and tells as before."""
    dice = random.Random(seed)
    hall = random_hall(dice)
    choose = chooser(PolicyConfig(), SHANGHAI, reasons=False)
    base = project_traced(hall, choose)
    before = dict(base.called)
    told_before = [tell_traced(c.ticket_id, base, NOW, choose) for c in hall.waiting]

    def walk_ins(first: int) -> list[Candidate]:
        return [
            waiting(
                tid,
                joined_min_ago=-dice.choice([0.0, dice.uniform(0, 0.1)]),
                service_id=dice.choice((PASSPORTS, RESIDENCE)),
                priority=dice.choice(["none", "none", "elderly"]),
            )
            for tid in range(first, first + dice.randint(1, 5))
        ]

    one, other = walk_ins(1000), walk_ins(2000)
    first = resume(base, one, choose)
    second = resume(base, other, choose)
    again = resume(first, walk_ins(3000), choose)  # the first goes on growing
    assert first.called == project(replace(hall, waiting=[*hall.waiting, *one]), choose)
    assert second.called == project(replace(hall, waiting=[*hall.waiting, *other]), choose)
    assert again.called == project(again.floor, choose)
    assert base.called == before
    assert [tell_traced(c.ticket_id, base, NOW, choose) for c in hall.waiting] == told_before
    for key, members in base.groups.items():
        assert all(c.ticket_id < 1000 for c in members), key
    # Resumed floors share one list of everyone waiting, each reading its own part of it:
    # a second resume from ``first`` (which ``again`` grew already) gets its own.
    later = walk_ins(4000)
    other_again = resume(first, later, choose)
    assert other_again.called == project(other_again.floor, choose)
    assert list(base.floor.waiting) == list(hall.waiting)
    assert list(first.floor.waiting) == [*hall.waiting, *one]
    assert list(second.floor.waiting) == [*hall.waiting, *other]
    assert list(other_again.floor.waiting) == [*hall.waiting, *one, *later]
    assert list(again.floor.waiting)[: len(hall.waiting) + len(one)] == [*hall.waiting, *one]
    assert list(reversed(other_again.floor.waiting))[: len(later)] == later[::-1]


def test_told_from_the_projection_as_from_everyone_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the server tells (``tell_traced``: from the projection's turns and groups,
    without going through the queue) is what ``tell`` works out from everyone waiting:
    every ticket of random halls, resumed with walk-ins, told a little later, with
    projections cut short (so that some are beyond what is played forward) or not. Over
    the halls, every kind of answer is compared: a projected wait, only a place beyond
    the projection, no counter open; and a ticket not waiting is told nothing."""
    choose = chooser(PolicyConfig(), SHANGHAI, reasons=False)
    bases = set()
    for seed in range(80):
        dice = random.Random(seed)
        monkeypatch.setattr(estimate, "PROJECTION_STEPS", dice.choice([2000, 3, 10, 40]))
        hall = random_hall(dice)
        if dice.random() < 0.5:  # a rush: visitors expected every few seconds, among walk-ins
            hall = replace(hall, arrivals={key: 20.0 for key in hall.arrivals})
        joined = [
            waiting(
                tid,
                joined_min_ago=dice.choice([-0.5, -0.05, 0.0, dice.uniform(0, 30)]),
                service_id=dice.choice((PASSPORTS, RESIDENCE)),
                priority=dice.choice(["none", "none", "elderly"]),
            )
            for tid in range(1000, 1000 + dice.randint(0, 8))
        ]
        traced = resume(project_traced(hall, choose), joined, choose)
        now = NOW + timedelta(seconds=dice.uniform(0, 5))
        at_now = replace(traced.floor, now=now)
        for ticket in traced.floor.waiting:
            told = tell_traced(ticket.ticket_id, traced, now, choose)
            assert told == tell(ticket.ticket_id, at_now, choose, traced.called), seed
            assert told is not None
            bases.add(told.basis)
        assert tell_traced(99_999, traced, now, choose) is None
    assert bases == {
        "projected by the queue policy",
        "more are waiting than the estimate plays forward",
        "no counter for this matter is open now",
    }


def test_told_right_through_a_rush_of_resumed_projections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A kiosk rush as the server meets it: a projection resumed batch after batch, and
    everyone waiting told after each batch (which makes the projection's indexes over its
    turns; a resumed projection with the same turns keeps them). Each answer is what
    ``tell`` works out from everyone waiting, whether the projection reaches the ticket or
    stops short of it (cut to a few turns on some halls)."""
    choose = chooser(PolicyConfig(), SHANGHAI, reasons=False)
    kept = 0
    for seed in range(40):
        dice = random.Random(seed)
        monkeypatch.setattr(estimate, "PROJECTION_STEPS", dice.choice([2000, 5, 30]))
        hall = random_hall(dice)
        traced = project_traced(hall, choose)
        next_id = 1000
        for _ in range(dice.randint(2, 5)):
            batch = [
                waiting(
                    tid,
                    joined_min_ago=dice.choice([-0.5, 0.0, dice.uniform(0, 30)]),
                    service_id=dice.choice((PASSPORTS, RESIDENCE)),
                    priority=dice.choice(["none", "none", "elderly"]),
                )
                for tid in range(next_id, next_id + dice.randint(1, 4))
            ]
            next_id += len(batch)
            before = traced
            traced = resume(traced, batch, choose)
            kept += "called_arrivals" in traced.__dict__ and traced.steps is before.steps
            now = NOW + timedelta(seconds=dice.uniform(0, 5))
            at_now = replace(traced.floor, now=now)
            assert traced.called == project(traced.floor, choose), seed
            for ticket in traced.floor.waiting:
                told = tell_traced(ticket.ticket_id, traced, now, choose)
                assert told == tell(ticket.ticket_id, at_now, choose, traced.called), seed
    assert kept > 0  # some batches joined beyond the projection and kept its indexes


def test_a_resumed_projection_replays_from_any_checkpoint_as_a_fresh_one() -> None:
    """A walk-in whose commit came late joins a long queue in the middle: the projection
    goes on from the checkpoint before the turn it changes (``CHECKPOINT_EVERY``), at every
    offset from a checkpoint, at a checkpoint itself, and past the last turn. Each resumed
    projection calls everyone when a fresh one would, and keeps its checkpoints in step."""
    from queue_server.domain.estimate import CHECKPOINT_EVERY

    queue = [
        waiting(tid, joined_min_ago=200 - tid * 0.5, service_id=(PASSPORTS, RESIDENCE)[tid % 2])
        for tid in range(1, 161)
    ]
    hall = floor(
        *queue,
        counters=[counter(1), counter(2, {RESIDENCE: PRIMARY, PASSPORTS: SECONDARY})],
    )
    choose = chooser(PolicyConfig(), SHANGHAI, reasons=False)
    traced = project_traced(hall, choose)
    assert [c.turn for c in traced.checkpoints] == list(
        range(0, len(traced.steps) + 1, CHECKPOINT_EVERY)
    )
    divergences = set()
    for late, ahead in enumerate(range(2, 161, 3), start=1000):
        # Joined just after ticket ``ahead`` (its commit came late): invisible until then.
        walk_in = structs.replace(
            queue[ahead - 1], ticket_id=late, number=f"L{late}",
            queued_at=queue[ahead - 1].queued_at + timedelta(seconds=1),
        )  # fmt: skip
        divergences.add(traced.turn_of[ahead] % CHECKPOINT_EVERY)
        resumed = resume(traced, [walk_in], choose)
        assert resumed.called == project(resumed.floor, choose), ahead
        assert [c.turn for c in resumed.checkpoints] == list(
            range(0, len(resumed.steps) + 1, CHECKPOINT_EVERY)
        )
    assert len(divergences) > CHECKPOINT_EVERY // 2  # at many offsets from a checkpoint
    # Past the last turn: someone joins after everyone is called.
    last = waiting(2000, joined_min_ago=-500)
    resumed = resume(traced, [last], choose)
    assert resumed.called == project(resumed.floor, choose)


def test_a_walk_in_joining_a_long_queue_is_projected_without_asking_the_policy_again() -> None:
    """The point of ``resume``: a walk-in at the end of a long queue changes nothing the
    projection played before everyone ahead of them was called, so those turns are
    replayed, not chosen again."""
    queue = [waiting(tid, joined_min_ago=60 - tid * 0.1) for tid in range(1, 301)]
    hall = floor(
        *queue, counters=[counter(1), counter(2, {PASSPORTS: PRIMARY, RESIDENCE: SECONDARY})]
    )
    asked = 0

    def counting(*args: Any) -> Any:
        nonlocal asked
        asked += 1
        return CHOOSE(*args)

    traced = project_traced(hall, counting)
    fresh = asked
    newcomer = waiting(301, joined_min_ago=0)
    asked = 0
    resumed = resume(traced, [newcomer], counting)
    assert resumed.called == project(replace(hall, waiting=[*queue, newcomer]), CHOOSE)
    assert resumed.called[301] > max(resumed.called[c.ticket_id] for c in queue)
    assert fresh == 300 and asked == 1  # only the newcomer's own turn was chosen


def test_a_walk_in_beyond_what_the_projection_plays_forward_costs_no_choice() -> None:
    """More waiting than the projection's steps: a walk-in joining them is not reached, so
    the projection is the one before, and no choice is made again."""
    from queue_server.domain.estimate import PROJECTION_STEPS

    queue = [
        waiting(tid, joined_min_ago=300 - tid * 0.1) for tid in range(1, PROJECTION_STEPS + 51)
    ]
    hall = floor(*queue, counters=[counter(1), counter(2)])
    traced = project_traced(hall, CHOOSE)
    asked = 0

    def counting(*args: Any) -> Any:
        nonlocal asked
        asked += 1
        return CHOOSE(*args)

    newcomer = waiting(PROJECTION_STEPS + 51, joined_min_ago=0)
    resumed = resume(traced, [newcomer], counting)
    with_newcomer = replace(hall, waiting=[*queue, newcomer])
    assert (
        resumed.called == project(with_newcomer, CHOOSE)
        and newcomer.ticket_id not in resumed.called
    )
    assert asked == 0
    told = tell(newcomer.ticket_id, resumed.floor, CHOOSE, resumed.called)
    assert told == tell(newcomer.ticket_id, with_newcomer, CHOOSE)
    assert told is not None and told.people_ahead == len(queue)


class CountingKeys(SilentChooser):
    """The server's projection chooser, counting the keys it makes, by ticket."""

    __slots__ = ("made",)

    def __init__(self) -> None:
        super().__init__(PolicyConfig(priority_boosts={"elderly": timedelta(minutes=15)}))
        self.made: list[int] = []

    def key(self, c: Candidate, level: ServiceLevel) -> tuple[int, object, object, int]:
        self.made.append(c.ticket_id)
        return super().key(c, level)


def test_a_rush_of_resumes_makes_each_tickets_key_once_per_level() -> None:
    """In a kiosk rush every resume plays the queue's tail again: the tickets' keys are
    made once for the projection and those resumed from it, not again by each resume, and
    the projection still calls as a fresh one does."""
    queue = [
        waiting(tid, joined_min_ago=60 - tid * 0.1, service_id=(PASSPORTS, RESIDENCE)[tid % 2])
        for tid in range(1, 201)
    ]
    both = {PASSPORTS: PRIMARY, RESIDENCE: SECONDARY}
    other = {PASSPORTS: SECONDARY, RESIDENCE: PRIMARY}
    hall = floor(*queue, counters=[counter(1, both), counter(2, other), counter(3, both)])
    choose = CountingKeys()
    traced = project_traced(hall, choose)
    assert sorted(set(choose.made)) == list(range(1, 201))
    everyone = list(queue)
    for tid in range(201, 241):  # a rush: one walk-in at a time, of either matter
        newcomer = waiting(tid, joined_min_ago=0, service_id=(PASSPORTS, RESIDENCE)[tid % 2])
        everyone.append(newcomer)
        traced = resume(traced, [newcomer], choose)
        assert traced.called == project(replace(hall, waiting=everyone), CHOOSE)
    made = collections.Counter(choose.made)
    assert max(made.values()) <= 2  # at most once at each of the two levels
    assert set(made) == set(range(1, 241))


def test_a_ticket_read_again_is_keyed_anew() -> None:
    """A key is kept with the ticket it was made for: another ticket of the same id (read
    again, elderly now) is not told the first one's key."""
    choose = CountingKeys()
    keys = estimate.Keys().of(choose)
    key_of = keys.at(PRIMARY)
    ordinary = waiting(7, joined_min_ago=30)
    elderly = structs.replace(ordinary, priority="elderly")
    assert key_of(ordinary) == choose.key(ordinary, PRIMARY)
    assert key_of(ordinary) is key_of(ordinary)
    assert key_of(elderly) == choose.key(elderly, PRIMARY) != key_of(ordinary)
    other = estimate.Keys().of(choose)
    assert other.of(CountingKeys()) is not other  # another chooser: keys of its own


def test_visitors_who_joined_together_are_called_by_ticket_number_whatever_the_listing() -> None:
    """Within a matter, who joined first is called first, and of those who joined at the
    same moment the lower ticket: however the floor happens to list them."""
    same_moment = [waiting(tid, joined_min_ago=5) for tid in (7, 3, 9, 1)]
    earlier = waiting(12, joined_min_ago=6)
    later = waiting(2, joined_min_ago=4)
    hall = floor(later, *same_moment, earlier)
    called = project(hall, CHOOSE)
    assert sorted(called, key=called.__getitem__) == [12, 1, 3, 7, 9, 2]


def test_a_long_queue_sets_off_the_garbage_collector_no_more_than_a_short_one() -> None:
    """Each collection holds the interpreter, and a serving process's event loop with it;
    ordering the waiting for a play must not make an object per visitor (it once made a
    tuple each, all alive at once: tens of collections per play of a busy hall)."""
    import gc

    def collections_in_a_play(people: int) -> int:
        queue = [
            waiting(
                tid, joined_min_ago=600 - tid * 0.01, service_id=(PASSPORTS, RESIDENCE)[tid % 2]
            )
            for tid in range(1, people + 1)
        ]
        hall = floor(
            *queue, counters=[counter(1), counter(2, {PASSPORTS: PRIMARY, RESIDENCE: SECONDARY})]
        )
        started: list[int] = []

        def seen(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started.append(info["generation"])

        assert gc.isenabled(), "with the collector off there is nothing to count"
        thresholds, switch = gc.get_threshold(), sys.getswitchinterval()
        gc.collect()
        gc.set_threshold(1000, 10, 10)
        # Only the play allocates meanwhile: no other thread gets the interpreter.
        sys.setswitchinterval(60)
        gc.callbacks.append(seen)
        try:
            project_traced(hall, CHOOSE)
        finally:
            gc.callbacks.remove(seen)
            sys.setswitchinterval(switch)
            gc.set_threshold(*thresholds)
        return len(started)

    # Before: 5 and 21 (a key tuple per visitor); a play's own turns set off the same few.
    short, long = collections_in_a_play(2_000), collections_in_a_play(20_000)
    assert long <= short + 3, (short, long)


def test_a_kept_projection_leaves_the_garbage_collector_nothing_per_visitor_to_walk() -> None:
    """Every serving process keeps its hall's projection, every waiting ticket's candidate
    in it, and makes new ones as walk-ins join. A collection walks every tracked object of
    its generations while it holds the interpreter, so what is kept must not grow with the
    queue: candidates and turns are structs the collector does not track, and the tuples
    around them (keys, arrivals) stop being tracked at their first collection. Before:
    4,516 tracked objects kept for a queue of 2,000, 22,539 for 20,000."""
    import gc

    def kept_for(people: int) -> tuple[int, estimate.Traced]:
        gc.collect()
        before = len(gc.get_objects())
        matters = (PASSPORTS, RESIDENCE)
        hall = floor(
            *(
                waiting(tid, joined_min_ago=600 - tid * 0.01, service_id=matters[tid % 2])
                for tid in range(1, people + 1)
            ),
            counters=[counter(1), counter(2, {PASSPORTS: PRIMARY, RESIDENCE: SECONDARY})],
        )
        traced = project_traced(hall, CHOOSE)
        for tid in range(people + 1, people + 201):  # walk-ins joining, each told
            traced = resume(traced, [waiting(tid, 0, matters[tid % 2])], CHOOSE)
            assert tell_traced(tid, traced, NOW, CHOOSE) is not None
        del hall
        gc.collect()
        return len(gc.get_objects()) - before, traced

    (short, short_kept), (long, long_kept) = kept_for(2_000), kept_for(20_000)
    assert len(short_kept.floor.waiting) == 2_200 and len(long_kept.floor.waiting) == 20_200
    assert short < 1_000, short  # no object per visitor (here: 317)
    assert long <= short + 100, (short, long)  # and none more for ten times the queue
