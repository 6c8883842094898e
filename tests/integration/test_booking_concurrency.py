"""No overbooking and no doubled holder under real concurrency, on SQLite and PostgreSQL.

Capacity is kept by the slot row's conditional update and a person's limits by the lock on
their holder rows; these tests race hundreds of bookings through the service layer at once
and count what was stored.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from booking.domain.errors import LimitReached
from booking.service import BookSlot, CancelBooking, book_slot, cancel_booking
from queue_server.db.tables import BookingRow, SlotRow
from queue_server.service.bus import Bus
from queue_server.service.errors import Conflict
from queue_server.service.unit_of_work import UnitOfWork
from tests.support import bookable_matter

# Tuesday 2026-03-03 09:00 in Shanghai; the clock fixture stands at Monday 10:00.
TUESDAY_9 = datetime(2026, 3, 3, 1, 0, tzinfo=UTC)


def phone(n: int) -> str:
    return f"139{n:08d}"


async def attempt(bus: Bus, command: BookSlot) -> str:
    """What the visitor was told: booked, or the reason of the 409."""
    try:
        await bus.run(book_slot, command)
    except Conflict as exc:
        return str(exc.extra.get("reason"))
    except LimitReached:
        return "limit"
    return "booked"


async def stored(bus: Bus, service_id: int) -> tuple[dict[datetime, int], dict[datetime, int]]:
    """Per slot start: the slot row's ``booked``, and the bookings still standing."""

    async def read(uow: UnitOfWork) -> tuple[dict[datetime, int], dict[datetime, int]]:
        slots = await uow.session.execute(
            select(SlotRow.starts_at, SlotRow.booked).where(SlotRow.service_id == service_id)
        )
        bookings = await uow.session.execute(
            select(BookingRow.slot_start, func.count())
            .where(BookingRow.service_id == service_id, BookingRow.state == "booked")
            .group_by(BookingRow.slot_start)
        )
        return {s: b for s, b in slots}, {s: n for s, n in bookings}

    return await bus.run(read)


async def test_500_clients_racing_for_5_places_get_exactly_5(bus: Bus) -> None:
    hall_id, service_id = await bookable_matter(bus, capacity=5)
    answers = await asyncio.gather(
        *[
            attempt(bus, BookSlot(hall_id, service_id, TUESDAY_9, f"访客{n}", phone(n)))
            for n in range(500)
        ]
    )

    assert answers.count("booked") == 5
    assert answers.count("slot_full") == 495  # every other one a clean refusal
    booked, standing = await stored(bus, service_id)
    assert booked[TUESDAY_9] == 5
    assert standing == {TUESDAY_9: 5}


async def test_one_phone_racing_for_many_slots_gets_one_booking(bus: Bus) -> None:
    hall_id, service_id = await bookable_matter(bus, capacity=3, max_active_per_matter=1)
    starts = [TUESDAY_9 + timedelta(minutes=30 * i) for i in range(20)]
    answers = await asyncio.gather(
        *[attempt(bus, BookSlot(hall_id, service_id, s, "王小明", phone(1))) for s in starts]
    )

    assert answers.count("booked") == 1
    assert answers.count("limit") == 19
    booked, standing = await stored(bus, service_id)
    assert sum(standing.values()) == 1
    assert sum(booked.values()) == 1  # the refused ones gave back nothing they did not take


async def test_the_same_person_on_different_phones_is_held_to_one_booking(bus: Bus) -> None:
    hall_id, service_id = await bookable_matter(bus, capacity=3, max_active_per_matter=1)
    starts = [TUESDAY_9 + timedelta(minutes=30 * i) for i in range(12)]
    answers = await asyncio.gather(
        *[
            attempt(bus, BookSlot(hall_id, service_id, s, "李四", phone(100 + i), "12345X"))
            for i, s in enumerate(starts)
        ]
    )

    assert answers.count("booked") == 1
    assert answers.count("limit") == 11


async def test_cancellations_racing_bookings_never_overbook(bus: Bus) -> None:
    hall_id, service_id = await bookable_matter(bus, capacity=4)
    first = [
        await bus.run(book_slot, BookSlot(hall_id, service_id, TUESDAY_9, f"甲{n}", phone(n)))
        for n in range(4)
    ]
    # Two of the four cancel while 100 others try to take the places.
    cancels = [
        bus.run(cancel_booking, CancelBooking(b.code, phone(n))) for n, b in enumerate(first[:2])
    ]
    tries = [
        attempt(bus, BookSlot(hall_id, service_id, TUESDAY_9, f"乙{n}", phone(1000 + n)))
        for n in range(100)
    ]
    results = await asyncio.gather(*cancels, *tries)

    booked, standing = await stored(bus, service_id)
    assert booked[TUESDAY_9] == standing[TUESDAY_9] <= 4
    newly = results[2:].count("booked")
    assert 4 - 2 + newly == standing[TUESDAY_9]
