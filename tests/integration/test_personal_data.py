"""Visitors' personal data, on both databases: erased by the retention job once the hall's
period has passed (bookings keep their code, times and states; holders and visit hashes
go), kept while it has not; erased at once on a visitor's request, online with the
booking's phone or by staff (a booking still ahead is cancelled first, its place given
back); the retention cannot be shorter than the repeat window."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from booking import privacy
from booking.checkin import CheckIn, check_in
from booking.service import BookSlot, book_slot
from queue_server.clock import FixedClock
from queue_server.db.tables import BookingHolderRow, BookingRow, SlotRow, VisitRow
from queue_server.service import commands, hall_config
from queue_server.service.bus import Bus
from queue_server.service.errors import Invalid
from queue_server.service.unit_of_work import UnitOfWork
from tests.support import bookable_matter, build_hall, call_as

PHONE = "13900139000"


async def rows(bus: Bus) -> dict[str, Any]:
    async def read(uow: UnitOfWork) -> dict[str, Any]:
        bookings = (await uow.session.execute(
            select(BookingRow.code, BookingRow.name, BookingRow.phone, BookingRow.id_tail,
                   BookingRow.state).order_by(BookingRow.id)
        )).all()  # fmt: skip
        holders = await uow.session.scalar(select(func.count()).select_from(BookingHolderRow))
        hashes = (await uow.session.scalars(select(VisitRow.visitor_hash))).all()
        taken = await uow.session.scalar(select(func.sum(SlotRow.booked)))
        return {"bookings": [tuple(b) for b in bookings], "holders": holders,
                "hashes": list(hashes), "taken": taken}  # fmt: skip

    return await bus.run(read)


async def test_the_retention_job_erases_what_is_older_than_the_halls_period(
    bus: Bus, clock: FixedClock
) -> None:
    hall_id, matter_id = await bookable_matter(bus, capacity=4)
    start = clock.now().replace(minute=30, second=0, microsecond=0) + timedelta(hours=1)
    old = await bus.run(book_slot, BookSlot(hall_id, matter_id, start, "王小明", PHONE, "123X"))
    clock.set(start - timedelta(minutes=10))
    ticket = await bus.run(check_in, CheckIn(hall_id, commands.Actor(user_id=None), code=old.code))
    assert ticket
    before = await rows(bus)
    assert before["bookings"][0][1:4] == ("王小明", PHONE, "123X")
    assert before["holders"] == 2 and before["hashes"][0] is not None

    # 179 days on: still within the 180 days kept. A new booking made then, for later.
    clock.advance(days=179)
    fresh_start = clock.now().replace(minute=30, second=0, microsecond=0) + timedelta(hours=1)
    fresh = await bus.run(
        book_slot, BookSlot(hall_id, matter_id, fresh_start, "李四", "13800138000")
    )
    nothing = await bus.run(privacy.erase_expired, hall_id)
    assert (nothing.bookings, nothing.visits) == (0, 0)
    assert (await rows(bus))["bookings"][0][1] == "王小明"

    clock.advance(days=2)  # past 180 days
    erased = await bus.run(privacy.erase_expired, hall_id)
    assert (erased.bookings, erased.holders, erased.visits) == (1, 2, 1)
    after = await rows(bus)
    assert after["bookings"][0] == (old.code, privacy.ERASED, None, None, "checked_in")
    assert after["hashes"] == [None]
    assert after["bookings"][1][:3] == (fresh.code, "李四", "13800138000"), "recent: kept"
    again = await bus.run(privacy.erase_expired, hall_id)
    assert (again.bookings, again.holders, again.visits) == (0, 0, 0)


async def test_a_visitor_erases_a_booking_still_ahead_and_its_place_is_given_back(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    hall_id, matter_id = await bookable_matter(bus, capacity=1)
    start = clock.now().replace(minute=30, second=0, microsecond=0) + timedelta(hours=2)
    made = await bus.run(book_slot, BookSlot(hall_id, matter_id, start, "王小明", PHONE))
    assert (await rows(bus))["taken"] == 1

    wrong = await client.post(f"/api/bookings/{made.code}/erase", json={"phone": "13800138000"})
    assert wrong.status_code == 404
    erased = await client.post(f"/api/bookings/{made.code}/erase", json={"phone": PHONE})
    assert erased.status_code == 200, erased.text
    assert erased.json()["state"] == "cancelled"
    after = await rows(bus)
    assert after["bookings"][0][1:] == (privacy.ERASED, None, None, "cancelled")
    assert after["holders"] == 0 and after["taken"] == 0, "the place is free again"
    gone = await client.get(f"/api/bookings/{made.code}", params={"phone": PHONE})
    assert gone.status_code == 404
    # Someone else books the freed place.
    again = await bus.run(book_slot, BookSlot(hall_id, matter_id, start, "李四", "13800138000"))
    assert again.state == "booked"


async def test_staff_erase_on_request_and_it_is_audited(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    hall = await build_hall(client, bus, clerks=1)
    base = f"/api/halls/{hall.hall_id}"
    enabled = await call_as(
        client, hall.manager, "PUT", f"{base}/services/{hall.services['A']}/booking",
        json={"slot_minutes": 30, "capacity": 2, "walk_in_share": 0},
    )  # fmt: skip
    assert enabled.status_code == 200, enabled.text
    start = clock.now().replace(minute=30, second=0, microsecond=0) + timedelta(hours=2)
    made = await bus.run(
        book_slot, BookSlot(hall.hall_id, hall.services["A"], start, "王小明", PHONE)
    )
    answer = await call_as(client, hall.clerks[0], "POST", f"{base}/bookings/{made.code}/erase")
    assert answer.status_code == 200, answer.text
    assert (answer.json()["state"], answer.json()["name"]) == ("cancelled", privacy.ERASED)
    log = (await call_as(client, hall.manager, "GET", f"{base}/audit")).json()
    entry = next(e for e in log if e["action"] == "personal data erased")
    assert entry["target"] == f"booking {made.code}"
    assert entry["user_id"] == hall.clerks[0].user_id
    assert PHONE not in str(log)


async def test_the_retention_is_at_least_the_repeat_window(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await build_hall(client, bus, clerks=1)
    base = f"/api/halls/{hall.hall_id}"
    short = await call_as(client, hall.admin, "PATCH", base, json={"personal_data_days": 20})
    assert short.status_code == 400
    assert "at least as long as the repeat window (30 days)" in short.json()["detail"]
    fine = await call_as(
        client, hall.admin, "PATCH", base, json={"personal_data_days": 20, "repeat_window_days": 14}
    )
    assert fine.status_code == 200, fine.text
    assert fine.json()["personal_data_days"] == 20
    with pytest.raises(Invalid):
        await bus.run(
            hall_config.create_hall,
            {"name_zh": "厅", "name_en": "Hall", "timezone": "Asia/Shanghai",
             "opening_hours": {}, "priority_boosts": {}, "personal_data_days": 7},
        )  # fmt: skip
