"""Time, as the hall's clock tells it, through the stored booking service (SQLite and
PostgreSQL): a hall in Asia/Shanghai while the server runs in UTC, a hall in Europe/Berlin
across both daylight-saving changes, holidays and special days, a slot at closing time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from booking import config
from booking.domain.errors import OutsideWindow
from booking.service import BookSlot, book_slot, list_slots
from queue_server.clock import FixedClock
from queue_server.service.bus import Bus
from queue_server.service.errors import Invalid
from tests.support import ALL_DAY, bookable_matter

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS_9_TO_5 = {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}


async def hall(bus: Bus, tz: str, hours: dict[str, Any], **rules: Any) -> tuple[int, int]:
    return await bookable_matter(bus, timezone=tz, hours=hours, capacity=2, **rules)


def local(tz: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=tz, fold=fold).astimezone(UTC)  # type: ignore[misc]


async def test_shanghai_days_and_release_follow_the_halls_clock_not_the_servers(
    bus: Bus, clock: FixedClock
) -> None:
    hall_id, matter = await hall(bus, "Asia/Shanghai", ALL_DAY, window_days=7)
    # 2026-03-02 23:59 UTC is already Tuesday 07:59 in Shanghai: before the 08:00 release.
    clock.set(local(SHANGHAI, 2026, 3, 3, 7, 59))
    before = await bus.run(list_slots, hall_id, matter, None, 31)
    assert [d.date for d in before.days] == [f"2026-03-{d:02d}" for d in range(3, 10)]
    assert before.next_release == local(SHANGHAI, 2026, 3, 3, 8, 0)
    clock.set(local(SHANGHAI, 2026, 3, 3, 8, 0))
    after = await bus.run(list_slots, hall_id, matter, None, 31)
    assert after.days[-1].date == "2026-03-10"
    # Today's list starts at the next slot on the hall's clock.
    assert after.days[0].slots[0].time == "08:30"

    with pytest.raises(OutsideWindow, match=r"2026-03-11 is not bookable yet.*2026-03-04 08:00"):
        await bus.run(
            book_slot,
            BookSlot(hall_id, matter, local(SHANGHAI, 2026, 3, 11, 9, 0), "王", "13800138000"),
        )
    made = await bus.run(
        book_slot,
        BookSlot(hall_id, matter, local(SHANGHAI, 2026, 3, 10, 9, 0), "王", "13800138000"),
    )
    assert (made.local_date, made.local_time) == ("2026-03-10", "09:00")


async def test_berlin_spring_forward_offers_no_slot_in_the_missing_hour(
    bus: Bus, clock: FixedClock
) -> None:
    hall_id, matter = await hall(bus, "Europe/Berlin", ALL_DAY, slot_minutes=60, window_days=3)
    clock.set(local(BERLIN, 2026, 3, 28, 12, 0))  # Saturday; Sunday 29 March springs forward
    listed = await bus.run(list_slots, hall_id, matter, date(2026, 3, 29), 1)
    sunday = listed.days[0]
    times = [s.time for s in sunday.slots]
    # 02:00 never comes, and the 01:00 slot would end at a 02:00 that does not exist on
    # the wall clock (the calendar's rule): neither is offered; every other hour is.
    assert times[:3] == ["00:00", "03:00", "04:00"]
    assert len(times) == 22
    three = next(s for s in sunday.slots if s.time == "03:00")
    assert three.start == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST
    made = await bus.run(book_slot, BookSlot(hall_id, matter, three.start, "Anna", "13800138000"))
    assert made.local_time == "03:00"
    with pytest.raises(Invalid, match="no slot starting"):
        # 02:00 never happened: 01:00 UTC is 03:00; 00:30 UTC would be 01:30 CET, mid-slot.
        await bus.run(
            book_slot,
            BookSlot(hall_id, matter, datetime(2026, 3, 29, 0, 30, tzinfo=UTC), "B", "13900139000"),
        )


async def test_berlin_fall_back_offers_no_slot_that_would_last_two_hours(
    bus: Bus, clock: FixedClock
) -> None:
    hall_id, matter = await hall(bus, "Europe/Berlin", ALL_DAY, slot_minutes=60, window_days=3)
    clock.set(local(BERLIN, 2026, 10, 24, 12, 0))
    listed = await bus.run(list_slots, hall_id, matter, date(2026, 10, 25), 1)
    slots = listed.days[0].slots
    times = [s.time for s in slots]
    # 02:00 to 03:00 on the wall clock takes two real hours that day: not a 60-minute slot,
    # so it is not offered; every slot offered lasts exactly an hour, each moment once.
    assert "02:00" not in times
    assert len(times) == 23
    assert all(s.end - s.start == timedelta(hours=1) for s in slots)
    assert len({s.start for s in slots}) == 23
    three = next(s for s in slots if s.time == "03:00")
    assert three.start == datetime(2026, 10, 25, 2, 0, tzinfo=UTC)  # 03:00 CET


async def test_holidays_special_days_breaks_and_the_slot_at_closing(
    bus: Bus, clock: FixedClock
) -> None:
    hall_id, matter = await hall(bus, "Asia/Shanghai", WEEKDAYS_9_TO_5, slot_minutes=45)
    await bus.run(
        config.set_calendar,
        hall_id,
        {"breaks": [["12:00", "13:30"]], "holidays": ["2026-03-04"],
         "special_days": {"2026-03-07": [["09:00", "12:00"]]}},
        None,
        None,
    )  # fmt: skip
    listed = await bus.run(list_slots, hall_id, matter, date(2026, 3, 3), 6)
    by_day = {d.date: [s.time for s in d.slots] for d in listed.days}
    # 45-minute slots from 09:00, none across the lunch break, none past 17:00 closing.
    assert by_day["2026-03-03"] == [
        "09:00", "09:45", "10:30", "11:15", "13:30", "14:15", "15:00", "15:45",
    ]  # fmt: skip
    assert by_day["2026-03-04"] == []  # holiday
    assert by_day["2026-03-07"] == ["09:00", "09:45", "10:30", "11:15"]  # a working Saturday
    assert by_day["2026-03-08"] == []  # an ordinary Sunday: closed
    with pytest.raises(Invalid, match="no slot starting 2026-03-03 16:30"):
        # 16:30 + 45 min would end after closing.
        await bus.run(
            book_slot,
            BookSlot(hall_id, matter, local(SHANGHAI, 2026, 3, 3, 16, 30), "王", "13800138000"),
        )
    last = await bus.run(
        book_slot,
        BookSlot(hall_id, matter, local(SHANGHAI, 2026, 3, 3, 15, 45), "王", "13800138000"),
    )
    assert last.slot_end == local(SHANGHAI, 2026, 3, 3, 16, 30)
    with pytest.raises(Invalid, match="no slot starting 2026-03-04 09:00"):
        await bus.run(
            book_slot,
            BookSlot(hall_id, matter, local(SHANGHAI, 2026, 3, 4, 9, 0), "李", "13900139000"),
        )


async def test_a_begun_slot_cannot_be_booked(bus: Bus, clock: FixedClock) -> None:
    hall_id, matter = await hall(bus, "Asia/Shanghai", ALL_DAY)
    now = clock.now()  # Monday 10:00 in Shanghai: the 10:00 slot has just begun
    with pytest.raises(OutsideWindow, match="has already begun"):
        await bus.run(book_slot, BookSlot(hall_id, matter, now, "王", "13800138000"))
    listed = await bus.run(list_slots, hall_id, matter, None, 1)
    assert listed.days[0].slots[0].start == now + timedelta(minutes=30)
