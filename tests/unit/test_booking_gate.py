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
