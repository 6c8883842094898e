"""Booking places planned from the hall's walk-in history (``target_load``), and places from
what the counters can really serve: on SQLite and PostgreSQL, through the booking service."""

from __future__ import annotations

from datetime import datetime, timedelta

from booking import config
from booking.service import list_slots
from queue_server.clock import FixedClock
from queue_server.service import commands, hall_config
from queue_server.service.bus import Bus
from tests.support import book_online, bookable_matter, passport_hall

MORNINGS = {day: [["09:00", "12:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
# Monday 2026-03-02, 08:00 in Shanghai: before opening, with last Monday a week ago.
MONDAY_8AM = datetime.fromisoformat("2026-03-02T00:00:00+00:00")


async def places_by_time(bus: Bus, hall_id: int, matter: int) -> dict[str, int]:
    listed = await bus.run(list_slots, hall_id, matter, None, 1)
    return {s.time: s.places for day in listed.days for s in day.slots}


async def two_counters(bus: Bus, hall_id: int, matter: int) -> None:
    for number in (1, 2):
        await bus.run(
            hall_config.create_counter, hall_id, number, f"Counter {number}", [(matter, "primary")]
        )


async def walk_ins_at(bus: Bus, clock: FixedClock, hall_id: int, matter: int, at: datetime,
                      count: int) -> None:  # fmt: skip
    clock.set(at)
    for _ in range(count):
        await bus.execute(commands.IssueTicket(hall_id, matter, commands.Actor()))


async def test_the_plan_keeps_last_weeks_peak_for_walk_ins(bus: Bus, clock: FixedClock) -> None:
    hall_id, matter = await passport_hall(bus, hours=MORNINGS)
    await two_counters(bus, hall_id, matter)
    # Last Monday: 7 walk-ins at 09:05 (70 counter-minutes in a quarter of an hour that
    # has 30: a queue), 1 at 10:35, none after.
    last_monday = MONDAY_8AM - timedelta(days=7)
    await walk_ins_at(bus, clock, hall_id, matter, last_monday + timedelta(hours=1, minutes=5), 7)
    await walk_ins_at(bus, clock, hall_id, matter, last_monday + timedelta(hours=2, minutes=35), 1)
    clock.set(MONDAY_8AM)
    # Taken online now: today is released with the plan made from last Monday.
    await book_online(bus, hall_id, matter, walk_in_share=0.25, target_load=0.8, window_days=7)

    places = await places_by_time(bus, hall_id, matter)

    # Two counters, 10-minute visits: 6 visitors a slot. The peak offers nothing, and its
    # 10-minute backlog keeps the next slot down; quiet slots offer 80% of 6.
    assert places["09:00"] == 0
    assert places["09:30"] == 3
    assert places["10:30"] == 3
    assert places["11:30"] == 4
    assert max(places.values()) == 4


async def test_without_history_the_walk_in_share_is_held_back(bus: Bus, clock: FixedClock) -> None:
    hall_id, matter = await passport_hall(bus, hours=MORNINGS)
    await two_counters(bus, hall_id, matter)
    clock.set(MONDAY_8AM)
    await book_online(bus, hall_id, matter, walk_in_share=0.25, target_load=0.8, window_days=7)

    places = await places_by_time(bus, hall_id, matter)

    # What the two counters can serve, 6 a slot, less the quarter kept for walk-ins.
    assert set(places.values()) == {4}


async def test_places_follow_what_the_counters_can_serve(bus: Bus, clock: FixedClock) -> None:
    clock.set(MONDAY_8AM)
    hall_id, matter = await bookable_matter(bus, hours=MORNINGS, window_days=7)
    assert set((await places_by_time(bus, hall_id, matter)).values()) == {0}, "no counter yet"
    other = await bus.run(
        hall_config.create_service,
        hall_id,
        {"name_zh": "税务", "name_en": "Tax", "prefix": "T", "typical_minutes": 10},
    )
    # One counter for the matter alone, one sharing its time with tax: 1.5 counters.
    await bus.run(hall_config.create_counter, hall_id, 1, "One", [(matter, "primary")])
    await bus.run(
        hall_config.create_counter, hall_id, 2, "Two", [(matter, "primary"), (other.id, "primary")]
    )
    await bus.run(config.follow_counters, hall_id)  # what the counter API does after a change
    assert set((await places_by_time(bus, hall_id, matter)).values()) == {4}  # ⌊30 × 1.5 / 10⌋

    await bus.run(config.set_booking_rules, hall_id, matter, {"slot_minutes": 30, "per_counter": 1})
    assert set((await places_by_time(bus, hall_id, matter)).values()) == {2}
