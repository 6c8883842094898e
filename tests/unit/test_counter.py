"""A counter's shift: a clerk opens it, pauses, closes; only an open counter calls."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest

from queue_server.domain import events as ev
from queue_server.domain.errors import IllegalTransition
from queue_server.domain.model import Counter, CounterState, ServiceLevel

HALL = 1
ALICE = 42
BOB = 43
MORNING = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)  # 08:30 in Shanghai
BREAK = MORNING + timedelta(hours=2)
EVENING = MORNING + timedelta(hours=8)


def counter_5(state: CounterState = CounterState.CLOSED, clerk_id: int | None = None) -> Counter:
    """Counter 5, driven to ``state`` by ``clerk_id`` through its own methods."""
    counter = Counter(
        id=5, hall_id=HALL, number=5, name="综合窗口", profile={10: ServiceLevel.PRIMARY}
    )
    if state != CounterState.CLOSED:
        assert clerk_id is not None
        counter.open(clerk_id, MORNING)
    if state == CounterState.PAUSED:
        counter.pause(MORNING)
    counter.events.clear()
    return counter


def assert_unchanged(counter: Counter, before: Counter) -> None:
    assert (counter.state, counter.clerk_id) == (before.state, before.clerk_id)
    assert counter.events == before.events


def test_a_clerk_opens_a_closed_counter() -> None:
    counter = counter_5()

    counter.open(ALICE, MORNING)

    assert counter.state == CounterState.OPEN
    assert counter.clerk_id == ALICE
    assert counter.events == [ev.CounterOpened(HALL, MORNING, 5, ALICE)]


def test_pause_keeps_the_clerk_signed_in() -> None:
    counter = counter_5(CounterState.OPEN, ALICE)

    counter.pause(BREAK)

    assert counter.state == CounterState.PAUSED
    assert counter.clerk_id == ALICE
    assert counter.events == [ev.CounterPaused(HALL, BREAK, 5, ALICE)]


def test_the_same_clerk_reopens_after_a_pause() -> None:
    counter = counter_5(CounterState.PAUSED, ALICE)

    counter.open(ALICE, BREAK)

    assert counter.state == CounterState.OPEN
    assert counter.clerk_id == ALICE
    assert counter.events == [ev.CounterOpened(HALL, BREAK, 5, ALICE)]


@pytest.mark.parametrize("state", [CounterState.OPEN, CounterState.PAUSED])
def test_close_signs_the_clerk_out(state: CounterState) -> None:
    counter = counter_5(state, ALICE)

    counter.close(EVENING)

    assert counter.state == CounterState.CLOSED
    assert counter.clerk_id is None
    assert counter.events == [ev.CounterClosed(HALL, EVENING, 5, ALICE)]


@pytest.mark.parametrize("state", [CounterState.OPEN, CounterState.PAUSED])
def test_a_counter_held_by_another_clerk_refuses_to_open(state: CounterState) -> None:
    counter = counter_5(state, ALICE)
    before = copy.deepcopy(counter)

    with pytest.raises(IllegalTransition) as refused:
        counter.open(BOB, BREAK)

    assert f"it is {state.value} by another clerk" in str(refused.value)
    assert "close it first" in str(refused.value)
    assert "counter 5" in str(refused.value)
    assert_unchanged(counter, before)


def test_another_clerk_may_open_once_it_is_closed() -> None:
    counter = counter_5(CounterState.OPEN, ALICE)
    counter.close(BREAK)

    counter.open(BOB, BREAK)

    assert (counter.state, counter.clerk_id) == (CounterState.OPEN, BOB)
    assert counter.events[-1] == ev.CounterOpened(HALL, BREAK, 5, BOB)


def test_opening_twice_is_refused() -> None:
    counter = counter_5(CounterState.OPEN, ALICE)
    before = copy.deepcopy(counter)

    with pytest.raises(IllegalTransition, match="it is already open"):
        counter.open(ALICE, BREAK)

    assert_unchanged(counter, before)


@pytest.mark.parametrize("state", [CounterState.CLOSED, CounterState.PAUSED])
def test_only_an_open_counter_pauses(state: CounterState) -> None:
    counter = counter_5(state, ALICE)
    before = copy.deepcopy(counter)

    with pytest.raises(IllegalTransition, match=f"cannot pause counter 5: it is {state.value}"):
        counter.pause(BREAK)

    assert_unchanged(counter, before)


def test_a_closed_counter_cannot_close() -> None:
    counter = counter_5()
    before = copy.deepcopy(counter)

    with pytest.raises(IllegalTransition, match="cannot close counter 5: it is closed"):
        counter.close(EVENING)

    assert_unchanged(counter, before)


def test_an_open_counter_may_call() -> None:
    counter_5(CounterState.OPEN, ALICE).check_can_call()


@pytest.mark.parametrize("state", [CounterState.CLOSED, CounterState.PAUSED])
def test_a_closed_or_paused_counter_may_not_call(state: CounterState) -> None:
    counter = counter_5(state, ALICE)

    with pytest.raises(IllegalTransition) as refused:
        counter.check_can_call()

    assert f"it is {state.value}" in str(refused.value)
    assert "open it first" in str(refused.value)
