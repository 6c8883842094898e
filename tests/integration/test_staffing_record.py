"""The hall's record of how its counters were staffed (their opening, pausing and closing
events): counter-minutes per quarter of an hour for the booking plan, the usual break for
the wait estimate, and nine weeks of it kept by the day close. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update

from queue_server.clock import FixedClock
from queue_server.db.tables import HallEventRow
from queue_server.service import accounts, commands, hall_config, staffing
from queue_server.service.bus import Bus
from queue_server.service.day_close import close_day
from tests.support import hall_with_matter

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 3, 2)


def at(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SHANGHAI)


async def desks(bus: Bus, count: int) -> tuple[int, list[tuple[int, int]]]:
    hall_id, matter = await hall_with_matter(bus)
    found = []
    for number in range(1, count + 1):
        counter = await bus.run(
            hall_config.create_counter, hall_id, number, f"{number}", [(matter, "primary")]
        )
        clerk = await bus.run(
            accounts.create_user, f"clerk{number}", "clerk-password", accounts.Role.CLERK, hall_id
        )
        found.append((counter.id, clerk.id))
    return hall_id, found


async def test_counter_minutes_per_quarter_hour_follow_the_record(
    bus: Bus, clock: FixedClock
) -> None:
    hall_id, (one, two) = await desks(bus, 2)
    # Counter 1 works 09:00-10:00 with a break 09:15-09:30; counter 2 from 09:30 to closing.
    for moment, command in [
        (at(9), commands.OpenCounter(*one)),
        (at(9, 15), commands.PauseCounter(*one)),
        (at(9, 30), commands.OpenCounter(*one)),
        (at(9, 30), commands.OpenCounter(*two)),
        (at(10), commands.CloseCounter(*one)),
    ]:
        clock.set(moment)
        await bus.execute(command)

    staffed = await bus.run(staffing.staffed_minutes, hall_id, SHANGHAI, [DAY], 15)
    empty = await bus.run(staffing.staffed_minutes, hall_id, SHANGHAI, [DAY - timedelta(1)], 15)

    assert staffed is not None
    assert staffed[9 * 60] == 15  # counter 1
    assert staffed.get(9 * 60 + 15, 0) == 0  # on a break
    assert staffed[9 * 60 + 30] == staffed[9 * 60 + 45] == 30  # both
    assert staffed[10 * 60] == 15  # counter 2, open still at the end of the day
    assert staffed[23 * 60 + 45] == 15
    assert empty is None, "no record for a day without counters"


async def test_the_usual_break_is_the_median_pause_that_ended_in_a_reopening(
    bus: Bus, clock: FixedClock
) -> None:
    hall_id, (desk,) = await desks(bus, 1)
    clock.set(at(8, 30))
    await bus.execute(commands.OpenCounter(*desk))
    assert await bus.run(staffing.usual_break, hall_id) == 30, "nothing recorded: 30 min"
    staffing.forget()
    start = at(9)
    for minutes in (20, 45, 40, 2):  # a 2-minute pause is not a break
        clock.set(start)
        await bus.execute(commands.PauseCounter(*desk))
        clock.set(start + timedelta(minutes=minutes))
        await bus.execute(commands.OpenCounter(*desk))
        start += timedelta(hours=1)
    clock.set(start)

    assert await bus.run(staffing.usual_break, hall_id) == 40


async def test_the_day_close_keeps_nine_weeks_of_counters_and_one_of_the_rest(
    bus: Bus, clock: FixedClock
) -> None:
    hall_id, (desk,) = await desks(bus, 1)
    clock.set(at(9))
    await bus.execute(commands.OpenCounter(*desk))
    await bus.execute(commands.IssueTicket(hall_id, 1, commands.Actor()))
    await bus.run(_publish_all)

    async def kept() -> set[str]:
        return set(await bus.run(_names, hall_id))

    clock.set(at(9) + timedelta(days=10))
    await bus.run(close_day, hall_id, DAY + timedelta(days=9))  # the ticket ends unserved
    assert await kept() == {"CounterOpened", "TicketCancelled"}, "the issue is gone"
    await bus.run(_publish_all)
    clock.set(at(9) + timedelta(days=64))
    await bus.run(close_day, hall_id, DAY + timedelta(days=63))
    assert await kept() == set()


async def _publish_all(uow: object) -> None:
    session = uow.session  # type: ignore[attr-defined]
    await session.execute(update(HallEventRow).values(published_at=func.now()))
    await uow.commit()  # type: ignore[attr-defined]


async def _names(uow: object, hall_id: int) -> list[str]:
    session = uow.session  # type: ignore[attr-defined]
    rows = await session.execute(select(HallEventRow.name).where(HallEventRow.hall_id == hall_id))
    return [name for (name,) in rows]
