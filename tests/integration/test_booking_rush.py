"""A rush on full slots is refused from memory, and the memory never outlives a freed place:
on SQLite and PostgreSQL, through the service layer with a slot memory following the hall's
channel (in memory here; Redis between processes)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import msgspec
import pytest
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.memory import MemoryChannelsBackend
from sqlalchemy import event, update

from booking import config
from booking.domain.errors import InvalidContact, LimitReached, OutsideWindow
from booking.service import (
    BookSlot,
    CancelBooking,
    RescheduleBooking,
    book_slot,
    cancel_booking,
    known_full_refusal,
    refuse_if_known_full,
    reschedule_booking,
    slot_memory_of,
)
from booking.slot_memory import SlotMemory
from queue_server.clock import FixedClock
from queue_server.db.tables import BookingRow, ServiceRow, SlotRow
from queue_server.realtime.channels import hall_channel
from queue_server.service.bus import Bus
from queue_server.service.errors import Conflict
from queue_server.service.unit_of_work import UnitOfWork
from tests.integration.test_booking_concurrency import phone, stored
from tests.support import bookable_matter

# Tuesday 2026-03-03 09:00 in Shanghai; the clock fixture stands at Monday 10:00.
TUESDAY_9 = datetime(2026, 3, 3, 1, 0, tzinfo=UTC)


@pytest.fixture
async def memory() -> AsyncIterator[SlotMemory]:
    """A slot memory following its halls over in-memory channels, as one process's."""
    channels = ChannelsPlugin(backend=MemoryChannelsBackend(), arbitrary_channels_allowed=True)
    async with channels:
        slots = SlotMemory(channels)
        yield slots
        await slots.close()


async def listening(memory: SlotMemory, hall_id: int) -> None:
    memory.listen(hall_id)
    for _ in range(100):
        if memory.epoch(hall_id) is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the memory never subscribed to hall {hall_id}")


async def attempt(bus: Bus, memory: SlotMemory | None, command: BookSlot) -> str:
    """As the public route books: a slot known full is refused before any transaction."""
    try:
        refuse_if_known_full(memory, command, bus.clock.now())
        await bus.run(book_slot, command, memory)
    except Conflict as exc:
        return str(exc.extra.get("reason"))
    except LimitReached:
        return "limit"
    return "booked"


class Statements:
    """Counts the SQL statements sent through the bus's engine."""

    def __init__(self, bus: Bus) -> None:
        self.count = 0
        engine = bus.sessions.kw["bind"].sync_engine
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: object) -> None:
        self.count += 1


async def test_a_freed_place_is_booked_exactly_once_by_the_rush_that_follows(
    bus: Bus, memory: SlotMemory
) -> None:
    hall_id, service_id = await bookable_matter(bus, capacity=5)
    await listening(memory, hall_id)
    first = [
        await bus.run(book_slot, BookSlot(hall_id, service_id, TUESDAY_9, f"甲{n}", phone(n)))
        for n in range(5)
    ]
    # The slot is full: the first refusal reads it so, the ones after are answered from
    # memory, without a statement.
    answer = await attempt(bus, memory, BookSlot(hall_id, service_id, TUESDAY_9, "乙", phone(99)))
    assert answer == "slot_full"
    assert memory.is_full(hall_id, service_id, TUESDAY_9)
    statements = Statements(bus)
    refused = await asyncio.gather(
        *[
            attempt(bus, memory, BookSlot(hall_id, service_id, TUESDAY_9, f"丙{n}", phone(500 + n)))
            for n in range(100)
        ]
    )
    assert refused == ["slot_full"] * 100
    assert statements.count == 0

    # One cancels. Once that has committed, the rush that follows books the place once.
    await bus.run(cancel_booking, CancelBooking(first[0].code, phone(0)))
    assert not memory.is_full(hall_id, service_id, TUESDAY_9)
    answers = await asyncio.gather(
        *[
            attempt(
                bus, memory, BookSlot(hall_id, service_id, TUESDAY_9, f"丁{n}", phone(1000 + n))
            )
            for n in range(100)
        ]
    )
    assert answers.count("booked") == 1
    assert answers.count("slot_full") == 99
    booked, standing = await stored(bus, service_id)
    assert booked[TUESDAY_9] == standing[TUESDAY_9] == 5
    assert memory.is_full(hall_id, service_id, TUESDAY_9)  # learned from the one who took it


async def test_cancellations_racing_a_rush_on_a_full_slot_never_overbook_nor_strand_a_place(
    bus: Bus, memory: SlotMemory
) -> None:
    hall_id, service_id = await bookable_matter(bus, capacity=4)
    await listening(memory, hall_id)
    first = [
        await bus.run(book_slot, BookSlot(hall_id, service_id, TUESDAY_9, f"甲{n}", phone(n)))
        for n in range(4)
    ]
    answer = await attempt(bus, memory, BookSlot(hall_id, service_id, TUESDAY_9, "乙", phone(99)))
    assert answer == "slot_full"
    # Two cancel while 200 others, in waves, try for the places the memory knows full.
    cancels = [
        bus.run(cancel_booking, CancelBooking(b.code, phone(n))) for n, b in enumerate(first[:2])
    ]
    tries = [
        attempt(bus, memory, BookSlot(hall_id, service_id, TUESDAY_9, f"丙{n}", phone(1000 + n)))
        for n in range(100)
    ]
    during = await asyncio.gather(*cancels, *tries)
    after = await asyncio.gather(
        *[
            attempt(
                bus, memory, BookSlot(hall_id, service_id, TUESDAY_9, f"丁{n}", phone(2000 + n))
            )
            for n in range(100)
        ]
    )

    booked, standing = await stored(bus, service_id)
    # Both freed places were taken again: none was left refused from memory.
    assert booked[TUESDAY_9] == standing[TUESDAY_9] == 4
    assert during[2:].count("booked") + after.count("booked") == 2


async def test_a_place_given_back_by_a_reschedule_or_more_places_are_offered_at_once(
    bus: Bus, memory: SlotMemory
) -> None:
    hall_id, service_id = await bookable_matter(bus, capacity=1)
    await listening(memory, hall_id)
    ten = TUESDAY_9 + timedelta(hours=1)
    made = await bus.run(book_slot, BookSlot(hall_id, service_id, TUESDAY_9, "甲", phone(1)))
    await bus.run(book_slot, BookSlot(hall_id, service_id, ten, "乙", phone(2)))
    for start in (TUESDAY_9, ten):
        refused = await attempt(bus, memory, BookSlot(hall_id, service_id, start, "丙", phone(3)))
        assert refused == "slot_full"
        assert memory.is_full(hall_id, service_id, start)

    # 甲 moves to 11:00: 09:00 has its place again.
    await bus.run(
        reschedule_booking, RescheduleBooking(made.code, TUESDAY_9 + timedelta(hours=2), phone(1))
    )
    assert not memory.is_full(hall_id, service_id, TUESDAY_9)
    answer = await attempt(bus, memory, BookSlot(hall_id, service_id, TUESDAY_9, "丙", phone(3)))
    assert answer == "booked"
    # The manager raises every slot to two places: 10:00 is bookable at once.
    assert memory.is_full(hall_id, service_id, ten)
    await bus.run(
        config.set_booking_rules, hall_id, service_id, {"slot_minutes": 30, "capacity": 2}
    )
    assert not memory.is_full(hall_id, service_id, ten)
    assert (
        await attempt(bus, memory, BookSlot(hall_id, service_id, ten, "丁", phone(4))) == "booked"
    )


def suggested(refusal: Conflict) -> list[str]:
    """The local times of a 409's next free slots."""
    return [s["local"] for s in cast(list[dict[str, str]], refusal.extra["next_free"])]


async def test_a_refusal_from_memory_says_what_the_database_would(
    bus: Bus, memory: SlotMemory, clock: FixedClock
) -> None:
    hall_id, service_id = await bookable_matter(bus, capacity=1)
    await listening(memory, hall_id)
    ten = TUESDAY_9 + timedelta(hours=1)
    await bus.run(book_slot, BookSlot(hall_id, service_id, TUESDAY_9, "甲", phone(1)))
    await bus.run(book_slot, BookSlot(hall_id, service_id, ten, "乙", phone(2)))

    async def refusal(command: BookSlot) -> Conflict:
        with pytest.raises(Conflict) as refused:
            refuse_if_known_full(memory, command, bus.clock.now())
            await bus.run(book_slot, command, memory)
        return refused.value

    from_database = await refusal(BookSlot(hall_id, service_id, TUESDAY_9, "丙", phone(3)))
    assert memory.is_full(hall_id, service_id, TUESDAY_9)
    with pytest.raises(Conflict) as from_memory:
        refuse_if_known_full(memory, BookSlot(hall_id, service_id, TUESDAY_9, "丁", phone(4)),
                             bus.clock.now())  # fmt: skip
    assert str(from_memory.value) == str(from_database)
    assert from_memory.value.extra == from_database.extra
    # Asked again for a booking waiting its turn: the same refusal, as a value; nothing
    # for a slot with places left.
    asked = known_full_refusal(memory, BookSlot(hall_id, service_id, TUESDAY_9, "丁", phone(4)),
                               bus.clock.now())  # fmt: skip
    assert isinstance(asked, Conflict) and str(asked) == str(from_database)
    assert asked.extra == from_database.extra
    free = TUESDAY_9 + timedelta(hours=2)
    assert known_full_refusal(memory, BookSlot(hall_id, service_id, free, "丁", phone(4)),
                              bus.clock.now()) is None  # fmt: skip
    assert suggested(from_database) == ["2026-03-03 09:30", "2026-03-03 10:30", "2026-03-03 11:00",
                         "2026-03-03 11:30", "2026-03-03 12:00"]  # fmt: skip
    # 09:30 fills up here: the suggestions drop it at once.
    await bus.run(
        book_slot, BookSlot(hall_id, service_id, TUESDAY_9 + timedelta(minutes=30), "戊", phone(5)),
        memory,
    )  # fmt: skip
    later = await refusal(BookSlot(hall_id, service_id, TUESDAY_9, "己", phone(6)))
    assert suggested(later)[0] == "2026-03-03 10:30"
    # A phone number that cannot be used is still said so (400) rather than the slot full,
    # and a slot that has begun is refused for that, as the database path does.
    with pytest.raises(InvalidContact):
        refuse_if_known_full(memory, BookSlot(hall_id, service_id, TUESDAY_9, "庚", "12"),
                             bus.clock.now())  # fmt: skip
    clock.set(TUESDAY_9 + timedelta(minutes=1))
    with pytest.raises(OutsideWindow):
        refuse_if_known_full(memory, BookSlot(hall_id, service_id, TUESDAY_9, "辛", phone(7)),
                             bus.clock.now())  # fmt: skip


async def test_an_event_from_another_process_frees_the_slot_in_this_ones_memory(
    bus: Bus, memory: SlotMemory
) -> None:
    hall_id, service_id = await bookable_matter(bus, capacity=1)
    await listening(memory, hall_id)
    await bus.run(book_slot, BookSlot(hall_id, service_id, TUESDAY_9, "甲", phone(1)))
    answer = await attempt(bus, memory, BookSlot(hall_id, service_id, TUESDAY_9, "乙", phone(2)))
    assert answer == "slot_full"
    assert memory.is_full(hall_id, service_id, TUESDAY_9)
    # What another process's relay publishes for its cancellation.
    channels = memory._channels
    assert channels is not None
    message = {
        "hall_id": hall_id, "seq": 99, "name": "BookingCancelled",
        "data": {"hall_id": hall_id, "at": TUESDAY_9.isoformat(), "service_id": service_id,
                 "slot_start": TUESDAY_9.isoformat()},
    }  # fmt: skip
    await channels.wait_published(msgspec.json.encode(message), hall_channel(hall_id))
    for _ in range(100):
        if not memory.is_full(hall_id, service_id, TUESDAY_9):
            break
        await asyncio.sleep(0.01)
    assert not memory.is_full(hall_id, service_id, TUESDAY_9)


async def test_a_place_freed_behind_the_memorys_back_is_seen_when_it_reads_again(
    bus: Bus,
) -> None:
    channels = ChannelsPlugin(backend=MemoryChannelsBackend(), arbitrary_channels_allowed=True)
    async with channels:
        memory = slot_memory_of(channels, bus)
        hall_id, service_id = await bookable_matter(bus, capacity=1)
        await listening(memory, hall_id)
        ten = TUESDAY_9 + timedelta(hours=1)
        for start in (TUESDAY_9, ten):
            await bus.run(book_slot, BookSlot(hall_id, service_id, start, "甲", phone(start.hour)))
            refused = await attempt(
                bus, memory, BookSlot(hall_id, service_id, start, "乙", phone(9))
            )
            assert refused == "slot_full"
        assert memory.is_full(hall_id, service_id, TUESDAY_9)
        assert memory.is_full(hall_id, service_id, ten)

        # Another process cancels 10:00's booking and this one does not hear of it (a
        # message lost while Redis was away; here, SQL typed by hand).
        async def cancelled_unheard(uow: UnitOfWork) -> None:
            await uow.session.execute(
                update(BookingRow).where(BookingRow.slot_start == ten).values(state="cancelled")
            )
            await uow.session.execute(
                update(SlotRow).where(SlotRow.starts_at == ten).values(booked=0)
            )
            await uow.session.commit()

        await bus.run(cancelled_unheard)
        assert memory.is_full(hall_id, service_id, ten)
        await memory.refresh(hall_id)
        assert memory.is_full(hall_id, service_id, TUESDAY_9)
        assert not memory.is_full(hall_id, service_id, ten)
        answer = await attempt(bus, memory, BookSlot(hall_id, service_id, ten, "丙", phone(10)))
        assert answer == "booked"
        await memory.close()


@pytest.fixture
def at_once(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts the bookings tried in one statement (PostgreSQL, configuration read before)."""
    from booking import service, store

    tried: Counter[str] = Counter()

    async def counting(*args: Any, **kwargs: Any) -> store.Taken | None:
        taken = await store.book_at_once(*args, **kwargs)
        tried["booked" if taken else "declined"] += 1
        return taken

    monkeypatch.setattr(service, "book_at_once", counting)
    return tried


async def test_bookings_in_one_statement_keep_every_limit_under_races(
    bus: Bus, database_url: str, at_once: Counter[str]
) -> None:
    hall_id, service_id = await bookable_matter(bus, capacity=5, max_active_per_matter=1)
    # Read the matter once: then each booking is first tried in one statement.
    warm = BookSlot(hall_id, service_id, TUESDAY_9 + timedelta(days=1), "甲", phone(999))
    assert await attempt(bus, None, warm) == "booked"
    starts = [TUESDAY_9 + timedelta(minutes=30 * i) for i in range(10)]
    # 300 bookers on 20 phones for 50 places; then one person on 40 phones.
    answers = await asyncio.gather(
        *[
            attempt(
                bus, None, BookSlot(hall_id, service_id, starts[n % 10], f"乙{n}", phone(n % 20))
            )
            for n in range(300)
        ]
    )
    same_person = await asyncio.gather(
        *[
            attempt(
                bus,
                None,
                BookSlot(hall_id, service_id, starts[n % 10], "李四", phone(500 + n), "12345X"),
            )
            for n in range(40)
        ]
    )

    assert answers.count("booked") == 20  # one per phone
    assert answers.count("limit") == 280
    assert same_person.count("booked") == 1
    booked, standing = await stored(bus, service_id)
    assert {s: n for s, n in booked.items() if n} == standing
    assert max(standing.values()) <= 5
    if database_url.startswith("postgresql"):
        # All but perhaps the one that read the matter first (another test's identical
        # hall may have been read already: same configuration, same hash).
        assert at_once["booked"] in (20, 21)


async def test_a_booking_in_one_statement_is_not_made_under_a_changed_configuration(
    bus: Bus, database_url: str, at_once: Counter[str]
) -> None:
    hall_id, service_id = await bookable_matter(bus, capacity=5, max_active_per_matter=2)
    first = BookSlot(hall_id, service_id, TUESDAY_9, "甲", phone(1))
    assert await attempt(bus, None, first) == "booked"

    # Another process lowers the limit to one active booking: no event reaches this one.
    async def one_at_a_time(uow: UnitOfWork) -> None:
        await uow.session.execute(
            update(ServiceRow)
            .where(ServiceRow.id == service_id)
            .values(booking={"slot_minutes": 30, "capacity": 5, "max_active_per_matter": 1})
        )
        await uow.session.commit()

    await bus.run(one_at_a_time)
    second = BookSlot(hall_id, service_id, TUESDAY_9 + timedelta(hours=1), "甲", phone(1))
    assert await attempt(bus, None, second) == "limit"
    if database_url.startswith("postgresql"):
        assert at_once == {"declined": 1}
