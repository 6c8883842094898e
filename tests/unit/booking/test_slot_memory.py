"""The slot memory's rules, without a database: what it keeps, for how long, and what makes
it forget (booking.slot_memory)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import msgspec
import pytest

from booking.context import Matter
from booking.slot_memory import Reading, SlotMemory
from booking.slot_news import forget_after_commit

NINE = datetime(2026, 3, 3, 1, 0, tzinfo=UTC)
HALL, MATTER = 7, 3


@dataclass
class FakeSubscriber:
    messages: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)

    async def iter_events(self) -> AsyncGenerator[bytes, None]:
        while True:
            yield await self.messages.get()


@dataclass
class FakeChannels:
    subscriber: FakeSubscriber = field(default_factory=FakeSubscriber)
    subscribed: list[str] = field(default_factory=list)

    async def subscribe(self, channels: list[str]) -> FakeSubscriber:
        self.subscribed += channels
        return self.subscriber

    async def unsubscribe(self, subscriber: FakeSubscriber) -> None:
        pass


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class FakeService:
    id: int = MATTER


@dataclass(frozen=True)
class FakeMatter:
    service: FakeService = FakeService()


MATTER_SNAPSHOT = cast(Matter, FakeMatter())


@pytest.fixture
async def parts() -> AsyncIterator[tuple[SlotMemory, FakeChannels, Clock]]:
    channels, clock = FakeChannels(), Clock()
    memory = SlotMemory(cast(Any, channels), ttl=3.0, every=3600, monotonic=clock)
    memory.listen(HALL)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert memory.epoch(HALL) is not None
    yield memory, channels, clock
    await memory.close()


async def test_a_slot_read_full_is_remembered_until_its_time_is_up_unless_read_again(
    parts: tuple[SlotMemory, FakeChannels, Clock],
) -> None:
    memory, channels, clock = parts
    assert channels.subscribed == [f"onedoor:hall:{HALL}"]
    memory.learned_full(HALL, MATTER_SNAPSHOT, NINE, memory.epoch(HALL))
    assert memory.full_matter(HALL, MATTER, NINE) is MATTER_SNAPSHOT
    # Any spelling of the moment is the same slot.
    assert memory.is_full(HALL, MATTER, NINE.astimezone(timezone(timedelta(hours=8))))
    clock.now += 2.9
    assert memory.is_full(HALL, MATTER, NINE)
    clock.now += 0.2
    assert not memory.is_full(HALL, MATTER, NINE)


async def test_a_full_read_made_before_a_place_was_given_back_is_not_kept(
    parts: tuple[SlotMemory, FakeChannels, Clock],
) -> None:
    memory, _, _ = parts
    epoch = memory.epoch(HALL)  # a booking attempt starts reading
    memory.freed(HALL, MATTER, NINE + timedelta(hours=2))  # any place of the hall frees
    memory.learned_full(HALL, MATTER_SNAPSHOT, NINE, epoch)  # it read the slot full
    assert not memory.is_full(HALL, MATTER, NINE)
    memory.learned_full(HALL, MATTER_SNAPSHOT, NINE, memory.epoch(HALL))
    assert memory.is_full(HALL, MATTER, NINE)
    memory.freed(HALL, MATTER, NINE)
    assert not memory.is_full(HALL, MATTER, NINE)


async def test_it_counts_each_slot_it_newly_knows_full_for_the_waiting_bookings(
    parts: tuple[SlotMemory, FakeChannels, Clock],
) -> None:
    """``learned`` moves when a slot becomes known full, and only then: the booking gate
    asks its waiters again when it moves."""
    memory, _, _ = parts
    assert memory.learned == 0
    memory.learned_full(HALL, MATTER_SNAPSHOT, NINE, memory.epoch(HALL))
    assert memory.learned == 1
    memory.learned_full(HALL, MATTER_SNAPSHOT, NINE, memory.epoch(HALL))  # told again
    assert memory.learned == 1
    stale = memory.epoch(HALL)
    memory.freed(HALL, MATTER, NINE + timedelta(hours=1))
    memory.learned_full(HALL, MATTER_SNAPSHOT, NINE + timedelta(hours=1), stale)  # not kept
    assert memory.learned == 1
    memory.freed(HALL, MATTER, NINE)
    memory.learned_full(HALL, MATTER_SNAPSHOT, NINE, memory.epoch(HALL))  # full once more
    assert memory.learned == 2


async def test_nothing_is_kept_for_a_hall_whose_channel_is_not_followed() -> None:
    memory = SlotMemory(None)
    memory.listen(HALL)
    assert memory.epoch(HALL) is None
    memory.learned_full(HALL, MATTER_SNAPSHOT, NINE, 0)
    memory.keep_free_list(HALL, MATTER_SNAPSHOT, NINE, [NINE], True, 0)
    assert not memory.is_full(HALL, MATTER, NINE)
    assert memory.free_list(HALL, MATTER, NINE) is None


def event(name: str, **data: Any) -> bytes:
    return msgspec.json.encode({"hall_id": HALL, "seq": 5, "name": name, "data": data})


@pytest.mark.parametrize(
    "message",
    [
        event("BookingCancelled", service_id=MATTER, slot_start=NINE.isoformat()),
        event("BookingMarkedNoShow", service_id=MATTER, slot_start=NINE.isoformat()),
        event(
            "BookingRescheduled",
            service_id=MATTER,
            slot_start="2026-03-04T01:00:00+00:00",
            from_start=NINE.isoformat(),
        ),
        b"not json",
    ],
)
async def test_the_halls_events_free_the_slot(
    parts: tuple[SlotMemory, FakeChannels, Clock], message: bytes
) -> None:
    memory, channels, _ = parts
    memory.learned_full(HALL, MATTER_SNAPSHOT, NINE, memory.epoch(HALL))
    channels.subscriber.messages.put_nowait(message)
    await asyncio.sleep(0.01)
    assert not memory.is_full(HALL, MATTER, NINE)


async def test_other_events_leave_it_full(parts: tuple[SlotMemory, FakeChannels, Clock]) -> None:
    memory, channels, _ = parts
    memory.learned_full(HALL, MATTER_SNAPSHOT, NINE, memory.epoch(HALL))
    for message in (
        event("BookingMade", service_id=MATTER, slot_start=NINE.isoformat()),
        event("BookingCancelled", service_id=MATTER + 1, slot_start=NINE.isoformat()),
        event("TicketIssued", ticket_id=1, number="A001", service_id=MATTER, kind="walk_in",
              priority="normal"),
    ):  # fmt: skip
        channels.subscriber.messages.put_nowait(message)
    await asyncio.sleep(0.01)
    assert memory.is_full(HALL, MATTER, NINE)


async def test_the_free_list_is_kept_until_a_place_frees_slots_are_added_or_time_is_up(
    parts: tuple[SlotMemory, FakeChannels, Clock],
) -> None:
    memory, channels, clock = parts
    until = NINE + timedelta(days=7)
    starts = [NINE + timedelta(minutes=30 * i) for i in range(4)]

    def keep() -> None:
        memory.keep_free_list(HALL, MATTER_SNAPSHOT, until, starts, True, memory.epoch(HALL))

    keep()
    kept = memory.free_list(HALL, MATTER, until)
    assert kept is not None and list(kept.starts) == starts and kept.complete
    assert memory.free_list(HALL, MATTER, until + timedelta(days=1)) is None  # another window
    memory.freed(HALL, MATTER, NINE)
    assert memory.free_list(HALL, MATTER, until) is None
    keep()
    channels.subscriber.messages.put_nowait(
        event("BookingDayReleased", service_id=MATTER, day="2026-03-10", slots=20, places=50)
    )
    await asyncio.sleep(0.01)
    assert memory.free_list(HALL, MATTER, until) is None
    keep()
    clock.now += 3.1
    assert memory.free_list(HALL, MATTER, until) is None


async def test_a_commit_of_this_process_frees_the_slot_in_every_memory_of_it(
    parts: tuple[SlotMemory, FakeChannels, Clock],
) -> None:
    memory, _, _ = parts
    memory.learned_full(HALL, MATTER_SNAPSHOT, NINE, memory.epoch(HALL))
    memory.keep_free_list(HALL, MATTER_SNAPSHOT, NINE, [], True, memory.epoch(HALL))
    forget_after_commit([], [(HALL, MATTER)])
    assert memory.is_full(HALL, MATTER, NINE)
    assert memory.free_list(HALL, MATTER, NINE) is None
    forget_after_commit([(HALL, MATTER, NINE)], [])
    assert not memory.is_full(HALL, MATTER, NINE)


async def test_a_channel_that_ends_forgets_the_hall(
    parts: tuple[SlotMemory, FakeChannels, Clock],
) -> None:
    memory, _, _ = parts
    memory.learned_full(HALL, MATTER_SNAPSHOT, NINE, memory.epoch(HALL))
    await memory.close()
    assert memory.epoch(HALL) is None
    assert not memory.is_full(HALL, MATTER, NINE)


async def test_reading_again_renews_what_is_still_so_and_drops_the_rest(
    parts: tuple[SlotMemory, FakeChannels, Clock],
) -> None:
    memory, _, clock = parts
    until = NINE + timedelta(days=7)
    starts = [NINE + timedelta(minutes=30 * i) for i in range(6)]
    readings: dict[int, Reading] = {}
    asked: list[list[Matter]] = []

    async def refresh(hall_id: int, matters: list[Matter]) -> dict[int, Reading]:
        assert hall_id == HALL
        asked.append(matters)
        return readings

    memory._refresh = refresh
    epoch = memory.epoch(HALL)
    for start in starts[:3]:
        memory.learned_full(HALL, MATTER_SNAPSHOT, start, epoch)
    memory.keep_free_list(HALL, MATTER_SNAPSHOT, until, starts[3:], True, epoch)
    # Read again 2 s later: 09:00 still full, 09:30 has a place again (another process
    # gave it back without this one hearing), 10:00 is past a list cut short.
    clock.now += 2
    readings[MATTER] = Reading(MATTER_SNAPSHOT, until, [starts[1]], False)
    await memory.refresh(HALL)
    assert asked == [[MATTER_SNAPSHOT]]
    assert memory.is_full(HALL, MATTER, starts[0])
    assert not memory.is_full(HALL, MATTER, starts[1])
    assert not memory.is_full(HALL, MATTER, starts[2])
    kept = memory.free_list(HALL, MATTER, until)
    assert kept is not None and list(kept.starts) == [starts[1]] and not kept.complete
    clock.now += 2.5  # 4.5 s after it was read full, 2.5 s after it was read so again
    assert memory.is_full(HALL, MATTER, starts[0])
    # The matter's configuration changed: nothing of it is kept.
    readings[MATTER] = Reading(cast(Matter, FakeMatter()), until, [], True)
    await memory.refresh(HALL)
    assert not memory.is_full(HALL, MATTER, starts[0])
    # Taken offline: nor is its free list.
    readings[MATTER] = Reading(None, None, (), True)
    await memory.refresh(HALL)
    assert memory.free_list(HALL, MATTER, until) is None


async def test_a_hall_that_cannot_be_read_again_is_forgotten() -> None:
    channels, clock = FakeChannels(), Clock()

    async def refresh(hall_id: int, matters: list[Matter]) -> dict[int, Reading]:
        raise OSError("the database is away")

    memory = SlotMemory(cast(Any, channels), refresh, every=0.01, monotonic=clock)
    memory.listen(HALL)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    memory.learned_full(HALL, MATTER_SNAPSHOT, NINE, memory.epoch(HALL))
    await asyncio.sleep(0.05)
    assert not memory.is_full(HALL, MATTER, NINE)
    await memory.close()


async def test_a_hall_nobody_books_in_any_more_is_forgotten_not_read_every_second(
    parts: tuple[SlotMemory, FakeChannels, Clock],
) -> None:
    memory, _, clock = parts
    asked: list[int] = []

    async def refresh(hall_id: int, matters: list[Matter]) -> dict[int, Reading]:
        asked.append(hall_id)
        return {MATTER: Reading(MATTER_SNAPSHOT, NINE + timedelta(days=7), [], True)}

    memory._refresh = refresh
    memory.learned_full(HALL, MATTER_SNAPSHOT, NINE, memory.epoch(HALL))
    clock.now += 59
    await memory.refresh(HALL)
    assert asked == [HALL] and memory.is_full(HALL, MATTER, NINE)  # asked about: read again
    clock.now += 61
    await memory.refresh(HALL)
    assert asked == [HALL]
    assert not memory.is_full(HALL, MATTER, NINE)
