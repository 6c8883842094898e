"""The booking gate lets at most its limit of bookings run at once, in arrival order, and
frees its place whatever the booking did."""

from __future__ import annotations

import asyncio

import pytest
from litestar.exceptions import ServiceUnavailableException

from queue_server.api.deps import BookingGate


async def run_through(gate: BookingGate, count: int) -> tuple[int, list[int]]:
    running = 0
    most = 0
    order: list[int] = []

    async def booking(n: int) -> None:
        nonlocal running, most
        async with gate:
            order.append(n)
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.01)
            running -= 1

    await asyncio.gather(*(booking(n) for n in range(count)))
    return most, order


async def test_at_most_the_limit_run_at_once_in_arrival_order() -> None:
    most, order = await run_through(BookingGate(3), 20)
    assert most == 3
    assert order == list(range(20))


async def test_zero_means_no_limit() -> None:
    most, _ = await run_through(BookingGate(0), 20)
    assert most == 20


async def test_a_failed_booking_gives_its_place_back() -> None:
    gate = BookingGate(1)
    with pytest.raises(RuntimeError):
        async with gate:
            raise RuntimeError("refused")
    async with asyncio.timeout(1):
        async with gate:
            pass


async def test_a_booking_waiting_too_long_is_told_to_try_again() -> None:
    gate = BookingGate(1, wait=0.05)
    async with gate:
        with pytest.raises(ServiceUnavailableException, match="try again") as refused:
            async with gate:
                pass
    assert refused.value.status_code == 503
    assert refused.value.headers == {"Retry-After": "5"}
    async with gate:  # its place was never taken
        pass


class Full(Exception):
    """A stand-in for the 409 a booking for a full slot gets."""


class Memory:
    """What the gate watches: how many slots became known full, and which."""

    def __init__(self) -> None:
        self.learned = 0
        self.full: set[str] = set()
        self.asked = 0

    def learn(self, slot: str) -> None:
        self.full.add(slot)
        self.learned += 1

    def refusal(self, slot: str) -> BaseException | None:
        self.asked += 1
        return Full(slot) if slot in self.full else None


async def waiting(gate: BookingGate, count: int) -> None:
    """Until ``count`` bookings wait at ``gate`` (states, not time)."""
    async with asyncio.timeout(5):
        # Yield to the bookings' tasks until they have queued: the gate has no event for
        # "someone queued", and this looks at its state, not at the clock.
        while gate.waiting < count:  # noqa: ASYNC110
            await asyncio.sleep(0)


async def test_a_waiting_booking_whose_slot_fills_is_refused_when_the_next_one_leaves() -> None:
    gate, memory = BookingGate(1), Memory()
    gate.watch(lambda: memory.learned)
    served: list[str] = []

    async def book(name: str, slot: str) -> None:
        async with gate.turn(lambda: memory.refusal(slot)):
            served.append(name)
            await asyncio.sleep(0)

    first_in = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with gate.turn(lambda: memory.refusal("9:00")):
            first_in.set()
            await release.wait()
            memory.learn("9:00")  # it took the last place of 9:00

    holder = asyncio.create_task(first())
    await first_in.wait()
    late = [
        asyncio.create_task(book("a", "9:00")),
        asyncio.create_task(book("b", "9:30")),
        asyncio.create_task(book("c", "9:00")),
        asyncio.create_task(book("d", "10:00")),
    ]
    await waiting(gate, 4)
    assert memory.asked == 0  # nothing learned yet: nobody asked again
    release.set()
    await holder
    results = await asyncio.gather(*late, return_exceptions=True)
    # Both 9:00 bookings refused with their slot's refusal, without a turn; the others in
    # their arrival order.
    assert [type(r).__name__ for r in results] == ["Full", "NoneType", "Full", "NoneType"]
    assert served == ["b", "d"]
    assert memory.asked == 4  # each waiter asked once, when 9:00 was learned full
    async with asyncio.timeout(1), gate:  # every turn came back
        pass


async def test_refusals_pass_the_turn_to_the_next_waiter_and_free_it_at_the_end() -> None:
    gate, memory = BookingGate(2), Memory()
    gate.watch(lambda: memory.learned)
    holders_in = asyncio.Event()
    release = asyncio.Event()
    inside = 0

    async def holder() -> None:
        nonlocal inside
        async with gate:
            inside += 1
            if inside == 2:
                holders_in.set()
            await release.wait()

    holders = [asyncio.create_task(holder()) for _ in range(2)]
    await holders_in.wait()
    doomed = [asyncio.create_task(_enter(gate, memory, "full")) for _ in range(5)]
    await waiting(gate, 5)
    memory.learn("full")
    release.set()
    await asyncio.gather(*holders)
    results = await asyncio.gather(*doomed, return_exceptions=True)
    assert all(isinstance(r, Full) for r in results)
    # Both places free again: two bookings at once get in without waiting.
    async with asyncio.timeout(1), gate, gate:
        assert gate.waiting == 0


async def _enter(gate: BookingGate, memory: Memory, slot: str) -> None:
    async with gate.turn(lambda: memory.refusal(slot)):
        pass


async def test_a_waiter_that_gives_up_as_its_turn_comes_passes_the_turn_on() -> None:
    gate = BookingGate(1)
    await gate.enter(lambda: None)  # this test holds the one place
    quitter = asyncio.create_task(_enter(gate, Memory(), "9:00"))
    patient = asyncio.create_task(_enter(gate, Memory(), "9:30"))
    await waiting(gate, 2)
    gate.leave()  # the turn is handed to the quitter ...
    quitter.cancel()  # ... which is cancelled before it runs (its visitor went away)
    with pytest.raises(asyncio.CancelledError):
        await quitter
    async with asyncio.timeout(1):
        await patient  # the turn went on to the next in line
    async with asyncio.timeout(1), gate:  # and came back
        assert gate.waiting == 0


async def test_a_refusal_check_that_fails_leaves_the_booking_waiting_its_turn() -> None:
    gate = BookingGate(1)
    news = [0]
    gate.watch(lambda: news[0])
    holder_in, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with gate:
            holder_in.set()
            await release.wait()
            news[0] += 1

    def broken() -> BaseException | None:
        raise RuntimeError("memory unreadable")

    held = asyncio.create_task(holder())
    await holder_in.wait()
    entered: list[bool] = []

    async def waiter() -> None:
        async with gate.turn(broken):
            entered.append(True)

    waiting_one = asyncio.create_task(waiter())
    await waiting(gate, 1)
    release.set()
    await held
    async with asyncio.timeout(1):
        await waiting_one
    assert entered == [True]
