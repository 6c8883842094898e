"""The public booking route in a rush, on both databases: a slot known full is refused from
the process's memory with the same answer, and a cancellation over the API frees it at once."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from litestar.channels import ChannelsPlugin
from litestar.testing import AsyncTestClient

from booking.slot_memory import memory_of
from queue_server.app import create_app
from queue_server.clock import FixedClock
from queue_server.service.bus import Bus
from queue_server.settings import Settings
from tests.e2e.test_booking_flow import PHONE, book, bookable_hall, shanghai, slot_booked


async def test_a_full_slot_is_refused_from_memory_until_a_cancellation_frees_it(
    settings: Settings, bus: Bus, clock: FixedClock
) -> None:
    # Every request comes from one address here: no per-address limit.
    app = create_app(dataclasses.replace(settings, booking_rate_limit=0), clock)
    async with AsyncTestClient(app, base_url="http://testserver.local") as client:
        await rush_cancel_and_rush(client, bus)


async def rush_cancel_and_rush(client: AsyncTestClient[Any], bus: Bus) -> None:
    hall = await bookable_hall(client, bus, capacity=1)
    eleven = shanghai(2, 11)
    made = await book(client, hall, eleven)
    assert made.status_code == 201, made.text
    memory = memory_of(client.app.plugins.get(ChannelsPlugin))
    for _ in range(100):  # the first booking started following the hall's channel
        if memory.epoch(hall.hall_id) is not None:
            break
        await asyncio.sleep(0.01)

    first = await book(client, hall, eleven, phone="13900139000")
    assert first.status_code == 409
    assert memory.is_full(hall.hall_id, hall.services["A"], eleven)
    rush = await asyncio.gather(
        *[book(client, hall, eleven, phone=f"1390000{n:04d}") for n in range(20)]
    )
    assert {r.status_code for r in rush} == {409}
    assert all(r.json() == first.json() for r in rush)  # the database's answer, word for word

    cancelled = await client.post(
        f"/api/bookings/{made.json()['code']}/cancel", json={"phone": PHONE}
    )
    assert cancelled.status_code == 200, cancelled.text
    again = await asyncio.gather(
        *[book(client, hall, eleven, phone=f"1370000{n:04d}") for n in range(20)]
    )
    assert sorted(r.status_code for r in again) == [201] + [409] * 19
    assert await slot_booked(bus, hall.services["A"], eleven) == 1
