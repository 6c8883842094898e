"""The booking path parses a matter's rules and calendar once per stored configuration
(SQLite and PostgreSQL). A change another server process writes must count at the very
next request: here that other process is a second engine writing the rows directly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from booking.context import load_matter
from booking.service import BookSlot, SlotOut, book_slot, list_slots
from queue_server.clock import FixedClock
from queue_server.db.engine import create_engine
from queue_server.db.tables import HallRow, ServiceRow
from queue_server.domain.errors import DomainError
from queue_server.service.bus import Bus
from queue_server.service.errors import Invalid
from queue_server.settings import Settings
from tests.support import bookable_matter


@pytest.fixture
async def other_process(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings.effective_database_url, pool_size=2)
    try:
        yield engine
    finally:
        await engine.dispose()


async def first_slots(bus: Bus, hall_id: int, matter: int) -> list[SlotOut]:
    listed = await bus.run(list_slots, hall_id, matter, None, 3)
    return [s for day in listed.days for s in day.slots]


async def test_same_configuration_same_snapshot_changed_configuration_new_one(
    bus: Bus, clock: FixedClock, other_process: AsyncEngine
) -> None:
    hall_id, matter = await bookable_matter(bus, capacity=2, window_days=3)
    first = await bus.run(load_matter, hall_id, matter)
    again = await bus.run(load_matter, hall_id, matter)
    assert again is first  # parsed once
    # A booking bumps the hall's event counter: that is not configuration.
    slot = (await first_slots(bus, hall_id, matter))[0]
    await bus.run(book_slot, BookSlot(hall_id, matter, slot.start, "王芳", "13800138000"))
    assert await bus.run(load_matter, hall_id, matter) is first
    async with other_process.begin() as conn:
        await conn.execute(update(HallRow).where(HallRow.id == hall_id).values(name_en="Renamed"))
    renamed = await bus.run(load_matter, hall_id, matter)
    assert renamed is not first and renamed.hall_row.name_en == "Renamed"


async def test_another_process_switching_booking_off_refuses_the_next_booking(
    bus: Bus, clock: FixedClock, other_process: AsyncEngine
) -> None:
    hall_id, matter = await bookable_matter(bus, capacity=2, window_days=3)
    slots = await first_slots(bus, hall_id, matter)
    await bus.run(book_slot, BookSlot(hall_id, matter, slots[0].start, "王芳", "13800138000"))
    async with other_process.begin() as conn:
        await conn.execute(update(ServiceRow).where(ServiceRow.id == matter).values(booking=None))
    with pytest.raises(DomainError, match="not booked online; take a ticket"):
        await bus.run(book_slot, BookSlot(hall_id, matter, slots[1].start, "李雷", "13900139000"))
    async with other_process.begin() as conn:
        await conn.execute(
            update(ServiceRow)
            .where(ServiceRow.id == matter)
            .values(booking={"slot_minutes": 30, "walk_in_share": 0, "capacity": 3})
        )
    made = await bus.run(
        book_slot,
        BookSlot(hall_id, matter, slots[1].start, "李雷", "13900139000"),
    )
    assert made.state == "booked"
    # The rules the booking was checked against are the new ones.
    assert (await bus.run(load_matter, hall_id, matter)).rules.capacity == 3


async def test_another_process_adding_a_holiday_closes_that_day_at_once(
    bus: Bus, clock: FixedClock, other_process: AsyncEngine
) -> None:
    hall_id, matter = await bookable_matter(bus, capacity=2, window_days=3)
    tomorrow = (clock.now() + timedelta(days=1)).astimezone(
        (await bus.run(load_matter, hall_id, matter)).tz
    )
    listed = await bus.run(list_slots, hall_id, matter, tomorrow.date(), 1)
    slot = listed.days[0].slots[0]
    async with other_process.begin() as conn:
        await conn.execute(
            update(HallRow)
            .where(HallRow.id == hall_id)
            .values(booking_calendar={"holidays": [tomorrow.date().isoformat()]})
        )
    with pytest.raises(Invalid, match="no slot starting"):
        await bus.run(book_slot, BookSlot(hall_id, matter, slot.start, "王芳", "13800138000"))
    closed = await bus.run(list_slots, hall_id, matter, tomorrow.date(), 1)
    assert [d.slots for d in closed.days if d.date == tomorrow.date().isoformat()] in ([], [[]])
