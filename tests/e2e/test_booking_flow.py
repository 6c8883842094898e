"""Online to offline through the API, on both databases: a citizen books, gets a code,
checks in at the kiosk and is called ahead of walk-ins once due; a no-show gives its place
back; staff do all of it for a visitor without a phone."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from booking import jobs
from queue_server.app import create_app
from queue_server.clock import FixedClock
from queue_server.db.tables import DeviceRow, PrintJobRow, SlotRow
from queue_server.service import accounts
from queue_server.service.bus import Bus
from queue_server.service.unit_of_work import UnitOfWork
from queue_server.settings import Settings
from tests.e2e.test_queue_flow import act, issue, open_counter
from tests.support import DemoSetup, build_hall, call_as

PHONE = "13800138000"
RULES = {"slot_minutes": 30, "capacity": 2, "walk_in_share": 0, "window_days": 7}


def shanghai(day: int, hour: int, minute: int = 0) -> datetime:
    """2026-03-<day> hour:minute in Shanghai (UTC+8), as UTC."""
    return datetime(2026, 3, day, hour - 8, minute, tzinfo=UTC)


async def bookable_hall(client: AsyncTestClient[Any], bus: Bus, **rules: Any) -> DemoSetup:
    hall = await build_hall(client, bus)
    answer = await call_as(
        client,
        hall.manager,
        "PUT",
        f"/api/halls/{hall.hall_id}/services/{hall.services['A']}/booking",
        json={**RULES, **rules},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["bookable"] is True
    return hall


async def book(
    client: AsyncTestClient[Any], hall: DemoSetup, start: datetime, phone: str = PHONE, **body: Any
) -> Any:
    return await client.post(
        f"/api/public/halls/{hall.hall_id}/bookings",
        json={
            "service_id": hall.services["A"],
            "slot_start": start.isoformat(),
            "name": "王小明",
            "phone": phone,
            **body,
        },
    )


async def test_book_check_in_and_be_called_ahead_of_walk_ins_once_due(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    hall = await bookable_hall(client, bus)  # Monday 2026-03-02 10:00 in Shanghai
    slots = await client.get(
        f"/api/public/halls/{hall.hall_id}/services/{hall.services['A']}/slots?days=1"
    )
    assert slots.status_code == 200, slots.text
    today = slots.json()["days"][0]
    assert today["date"] == "2026-03-02"
    # The 10:00 slot has begun; the first one offered is 10:30, with both places free.
    assert today["slots"][0] == {
        "start": "2026-03-02T02:30:00Z", "end": "2026-03-02T03:00:00Z", "time": "10:30",
        "places": 2, "free": 2,
    }  # fmt: skip

    made = await book(client, hall, shanghai(2, 11), phone="+86 138-0013-8000")
    assert made.status_code == 201, made.text
    booking = made.json()
    code = booking["code"]
    assert len(code) == 8
    assert booking["qr_url"] == f"https://hall.example.org/b/{code}"
    assert booking["local_time"] == "11:00" and booking["local_date"] == "2026-03-02"
    assert booking["phone"] == "138****8000"
    assert booking["service"]["name_zh"] == "社会保险"
    listed = await client.get(
        f"/api/public/halls/{hall.hall_id}/services/{hall.services['A']}/slots?days=1"
    )
    eleven = next(s for s in listed.json()["days"][0]["slots"] if s["time"] == "11:00")
    assert eleven["free"] == 1

    # The visitor can look it up with code and phone; a wrong phone learns nothing.
    seen = await client.get(f"/api/bookings/{code}", params={"phone": PHONE})
    assert seen.status_code == 200 and seen.json()["state"] == "booked"
    wrong = await client.get(f"/api/bookings/{code}", params={"phone": "13900139000"})
    assert wrong.status_code == 404

    # Too early: check-in opens 30 minutes before the slot.
    clock.set(shanghai(2, 10, 20))
    early = await client.post(
        f"/api/halls/{hall.hall_id}/check-in", json={"code": code}, headers=hall.kiosk
    )
    assert early.status_code == 409
    assert "opens at 10:30" in early.json()["detail"]
    assert early.json()["extra"]["reason"] == "check_in_closed"  # for pages to translate

    # 10:32: a walk-in first, then the booked visitor scans the QR (the scanner types the URL).
    clock.set(shanghai(2, 10, 32))
    walk_in = await issue(client, hall, "A")
    checked = await client.post(
        f"/api/halls/{hall.hall_id}/check-in",
        json={"code": booking["qr_url"]},
        headers=hall.kiosk,
    )
    assert checked.status_code == 200, checked.text
    ticket = checked.json()
    assert ticket["kind"] == "appointment"
    assert ticket["number"] == "A002"
    assert ticket["due_at"] == "2026-03-02T03:00:00Z"
    assert ticket["booking"]["code"] == code
    assert ticket["booking"]["name"] == "王小明"
    assert ticket["printing"]["state"] == "no_printer"
    again = await client.post(
        f"/api/halls/{hall.hall_id}/check-in", json={"code": code}, headers=hall.kiosk
    )
    assert again.status_code == 409
    assert "in the queue already" in again.json()["detail"]

    # Before 11:00 the early appointment waits: the walk-in is called first (one service
    # of about 10 minutes still leaves the counter free in time for the 11:00 slot).
    await open_counter(client, hall, 0, 1)
    clock.set(shanghai(2, 10, 35))
    first = await act(client, hall, 0, 1, "call-next")
    assert first.json()["ticket"]["number"] == walk_in["number"]
    await act(client, hall, 0, 1, "start")
    await act(client, hall, 0, 1, "finish", json={"outcome": "done"})

    # A second walk-in has waited 10 minutes at 11:00, but the appointment is due.
    clock.set(shanghai(2, 10, 50))
    later_walk_in = await issue(client, hall, "A")
    clock.set(shanghai(2, 11, 0))
    called = await act(client, hall, 0, 1, "call-next")
    assert called.status_code == 200, called.text
    assert called.json()["ticket"]["number"] == "A002"
    assert called.json()["reason"] == "appointment due 11:00"
    assert called.json()["ticket"]["booking"]["code"] == code
    console = await call_as(client, hall.clerks[0], "GET", f"/api/counters/{hall.counters[1]}/")
    assert console.json()["current"]["booking"]["name"] == "王小明"
    waiting = await call_as(
        client, hall.clerks[0], "GET", f"/api/counters/{hall.counters[1]}/waiting"
    )
    assert [w["number"] for w in waiting.json()] == [later_walk_in["number"]]
    assert (await client.get(f"/api/bookings/{code}", params={"phone": PHONE})).json()[
        "state"
    ] == "checked_in"


async def slot_booked(bus: Bus, service_id: int, start: datetime) -> int:
    async def read(uow: UnitOfWork) -> int:
        return int(
            (
                await uow.session.execute(
                    select(SlotRow.booked).where(
                        SlotRow.service_id == service_id, SlotRow.starts_at == start
                    )
                )
            ).scalar_one()
        )

    return await bus.run(read)


async def test_a_no_show_frees_its_place_and_the_visitors_limit(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    hall = await bookable_hall(client, bus, capacity=1)
    made = await book(client, hall, shanghai(2, 11))
    assert made.status_code == 201, made.text
    full = await book(client, hall, shanghai(2, 11), phone="13900139000")
    assert full.status_code == 409
    assert full.json()["extra"]["reason"] == "slot_full"
    # The refusal offers the next free slots instead.
    assert [s["local"] for s in full.json()["extra"]["next_free"]][:2] == [
        "2026-03-02 11:30",
        "2026-03-02 12:00",
    ]
    # The same phone holds its one active booking of the matter: a second is refused.
    second = await book(client, hall, shanghai(3, 9))
    assert second.status_code == 409
    assert "already has 1 active booking" in second.json()["detail"]

    # 11:15 is the end of the late window; the sweep leaves the booking alone until then.
    clock.set(shanghai(2, 11, 15))
    assert await bus.run(jobs.sweep_no_shows) == 0
    clock.set(shanghai(2, 11, 16))
    assert await bus.run(jobs.sweep_no_shows) == 1
    assert await bus.run(jobs.sweep_no_shows) == 0  # idempotent
    code = made.json()["code"]
    seen = await client.get(f"/api/bookings/{code}", params={"phone": PHONE})
    assert seen.json()["state"] == "no_show"
    assert await slot_booked(bus, hall.services["A"], shanghai(2, 11)) == 0
    # The visitor may book again now.
    again = await book(client, hall, shanghai(3, 9))
    assert again.status_code == 201, again.text


async def test_staff_book_and_check_in_a_visitor_without_a_phone(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    hall = await bookable_hall(client, bus)
    clerk = hall.clerks[0]
    answer = await call_as(
        client,
        clerk,
        "POST",
        f"/api/halls/{hall.hall_id}/bookings",
        json={
            "service_id": hall.services["A"],
            "slot_start": shanghai(2, 14).isoformat(),
            "name": "李奶奶",
            "id_tail": "110105194912310021",
        },
    )
    assert answer.status_code == 201, answer.text
    booking = answer.json()
    assert booking["channel"] == "staff" and booking["phone"] is None
    code = booking["code"]
    listed = await call_as(client, clerk, "GET", f"/api/halls/{hall.hall_id}/bookings")
    assert [(b["code"], b["name"], b["id_tail"]) for b in listed.json()] == [
        (code, "李奶奶", "0021")
    ]
    # Online she cannot be looked up (no phone), but staff can reschedule, then check in.
    moved = await call_as(
        client,
        clerk,
        "POST",
        f"/api/halls/{hall.hall_id}/bookings/{code}/reschedule",
        json={"slot_start": shanghai(2, 13, 30).isoformat()},
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["local_time"] == "13:30"
    clock.set(shanghai(2, 13, 10))
    checked = await call_as(
        client, clerk, "POST", f"/api/halls/{hall.hall_id}/bookings/{code}/check-in"
    )
    assert checked.status_code == 200, checked.text
    assert checked.json()["kind"] == "appointment"
    assert checked.json()["booking"]["channel"] == "staff"

    # And a second one, cancelled at the desk just before its slot (online it would be late).
    other = await call_as(
        client,
        clerk,
        "POST",
        f"/api/halls/{hall.hall_id}/bookings",
        json={"service_id": hall.services["A"], "slot_start": shanghai(2, 15).isoformat(),
              "name": "张爷爷", "phone": "13700137000"},
    )  # fmt: skip
    assert other.status_code == 201, other.text
    clock.set(shanghai(2, 14, 50))
    online = await client.post(
        f"/api/bookings/{other.json()['code']}/cancel", json={"phone": "13700137000"}
    )
    assert online.status_code == 409
    assert "can no longer be cancelled online" in online.json()["detail"]
    desk = await call_as(
        client, clerk, "POST", f"/api/halls/{hall.hall_id}/bookings/{other.json()['code']}/cancel"
    )
    assert desk.status_code == 200 and desk.json()["state"] == "cancelled"
    assert await slot_booked(bus, hall.services["A"], shanghai(2, 15)) == 0


async def test_check_in_by_phone_asks_for_the_id_tail_when_two_people_share_it(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    # A daughter books for both her parents with her own phone (the hall allows two).
    hall = await bookable_hall(client, bus, max_active_per_matter=2)
    for start, name, tail in [
        (shanghai(2, 11), "王爸爸", "1234"),
        (shanghai(2, 11), "王妈妈", "5678"),
    ]:
        made = await book(client, hall, start, name=name, id_tail=tail)
        assert made.status_code == 201, made.text
    clock.set(shanghai(2, 10, 45))
    ask = await client.post(
        f"/api/halls/{hall.hall_id}/check-in", json={"phone": PHONE}, headers=hall.kiosk
    )
    assert ask.status_code == 409
    assert "give the last 4 characters of the ID" in ask.json()["detail"]
    assert ask.json()["extra"]["ask"] == "id_tail"
    assert len(ask.json()["extra"]["choices"]) == 2
    mum = await client.post(
        f"/api/halls/{hall.hall_id}/check-in",
        json={"phone": "138 0013 8000", "id_tail": "5678"},
        headers=hall.kiosk,
    )
    assert mum.status_code == 200, mum.text
    assert mum.json()["booking"]["name"] == "王妈妈"
    nobody = await client.post(
        f"/api/halls/{hall.hall_id}/check-in", json={"phone": "13900139000"}, headers=hall.kiosk
    )
    assert nobody.status_code == 404
    assert "no booking for today under this phone number" in nobody.json()["detail"]


async def test_check_in_by_phone_before_midnight_for_a_slot_just_after_it(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    """A hall open through the night: at 23:50 a 00:00 booking's check-in is open (30 min
    early), by phone as by code; a booking of tomorrow afternoon is not yet found."""
    hall = await bookable_hall(client, bus)
    soon = await book(client, hall, shanghai(2, 24))  # 00:00 on the 3rd
    later = await book(client, hall, shanghai(3, 15), phone="13900139000")
    assert soon.status_code == later.status_code == 201, (soon.text, later.text)
    clock.set(shanghai(2, 23, 50))
    found = await client.post(
        f"/api/halls/{hall.hall_id}/check-in", json={"phone": PHONE}, headers=hall.kiosk
    )
    assert found.status_code == 200, found.text
    assert found.json()["booking"]["code"] == soon.json()["code"]
    not_yet = await client.post(
        f"/api/halls/{hall.hall_id}/check-in", json={"phone": "13900139000"}, headers=hall.kiosk
    )
    assert not_yet.status_code == 404, not_yet.text


async def test_remote_check_in_only_where_the_hall_allows_it(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    hall = await bookable_hall(client, bus)
    code = (await book(client, hall, shanghai(2, 11))).json()["code"]
    clock.set(shanghai(2, 10, 40))
    refused = await client.post(f"/api/bookings/{code}/check-in", json={"phone": PHONE})
    assert refused.status_code == 403
    assert "check in at the kiosk" in refused.json()["detail"]
    allowed = await call_as(
        client,
        hall.manager,
        "PUT",
        f"/api/halls/{hall.hall_id}/booking-calendar",
        json={"remote_checkin": True},
    )
    assert allowed.status_code == 200, allowed.text
    remote = await client.post(f"/api/bookings/{code}/check-in", json={"phone": PHONE})
    assert remote.status_code == 200, remote.text
    ticket = remote.json()
    assert ticket["kind"] == "appointment"
    follow = await client.get(f"/api/follow/{ticket['follow_token']}")
    assert follow.json()["number"] == ticket["number"]
    # The booking now leads to its ticket, from any browser.
    seen = (await client.get(f"/api/bookings/{code}", params={"phone": PHONE})).json()
    assert seen["follow_url"] == f"https://hall.example.org/t/{ticket['follow_token']}"


async def test_booking_endpoints_are_rate_limited_per_address(
    settings: Settings, clock: FixedClock, bus: Bus
) -> None:
    limited = dataclasses.replace(settings, booking_rate_limit=3)
    async with AsyncTestClient(create_app(limited, clock), base_url="http://t.local") as client:
        hall = await bookable_hall(client, bus)
        url = f"/api/public/halls/{hall.hall_id}/services/{hall.services['A']}/slots?days=1"
        answers = [await client.get(url) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert "wait a minute" in answers[3].json()["detail"]
        # Staff and kiosks are not limited: the hall's own devices must always work.
        for _ in range(5):
            walk_in = await client.post(
                f"/api/halls/{hall.hall_id}/tickets",
                json={"service_id": hall.services["B"]},
                headers=hall.kiosk,
            )
            assert walk_in.status_code == 201


async def test_bad_booking_input_is_a_4xx_that_says_what_to_fix(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await bookable_hall(client, bus)
    cases = [
        ({"phone": "12345"}, 400, "is not a mainland China mobile number"),
        ({"name": "   "}, 400, "the name is empty"),
        ({"id_tail": "12"}, 400, "give its last 4 characters"),
        ({"slot_start": "2026-03-02T11:00:00"}, 400, "with a timezone component"),
        ({"slot_start": "2026-03-02T11:10:00+08:00"}, 400, "no slot starting 2026-03-02 11:10"),
        ({"service_id": hall.services["B"]}, 409, "is not booked online"),
        ({"service_id": 999}, 404, "no matter with id 999"),
    ]
    for change, status, shown in cases:
        body = {
            "service_id": hall.services["A"],
            "slot_start": shanghai(2, 11).isoformat(),
            "name": "王小明",
            "phone": PHONE,
            **change,
        }
        answer = await client.post(f"/api/public/halls/{hall.hall_id}/bookings", json=body)
        assert answer.status_code == status, (change, answer.text)
        assert shown in answer.text, (change, answer.text)
    bad_rules = await call_as(
        client,
        hall.manager,
        "PUT",
        f"/api/halls/{hall.hall_id}/services/{hall.services['A']}/booking",
        json={"walk_in_share": 2},
    )
    assert bad_rules.status_code == 400
    assert "walk-in share 2" in bad_rules.json()["detail"]
    bad_calendar = await call_as(
        client,
        hall.manager,
        "PUT",
        f"/api/halls/{hall.hall_id}/booking-calendar",
        json={"holidays": ["next monday"]},
    )
    assert bad_calendar.status_code == 400
    assert "write it as YYYY-MM-DD" in bad_calendar.json()["detail"]
    # Nothing half-written: no booking was stored by any of the refusals.
    listed = await call_as(client, hall.clerks[0], "GET", f"/api/halls/{hall.hall_id}/bookings")
    assert listed.json() == []


async def test_the_printed_ticket_of_a_checked_in_booking_shows_its_slot(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    hall = await bookable_hall(client, bus)

    async def kiosk_id(uow: UnitOfWork) -> int:
        return int(
            (
                await uow.session.execute(
                    select(DeviceRow.id).where(
                        DeviceRow.hall_id == hall.hall_id, DeviceRow.kind == "kiosk"
                    )
                )
            ).scalar_one()
        )

    await bus.run(
        accounts.create_device, hall.hall_id, accounts.DeviceKind.PRINTER, "打印机",
        await bus.run(kiosk_id),
    )  # fmt: skip
    code = (await book(client, hall, shanghai(2, 11))).json()["code"]
    clock.set(shanghai(2, 10, 50))
    checked = await client.post(
        f"/api/halls/{hall.hall_id}/check-in", json={"code": code}, headers=hall.kiosk
    )
    assert checked.status_code == 200, checked.text
    # No agent is connected: the kiosk is told at once to show the ticket on screen.
    assert checked.json()["printing"]["state"] == "pending"

    async def payload(uow: UnitOfWork) -> dict[str, Any]:
        return (await uow.session.execute(select(PrintJobRow.payload))).scalar_one()

    job = await bus.run(payload)
    assert (job["kind"], job["appointment_at"], job["number"]) == ("appointment", "11:00", "A001")


@pytest.mark.redis
async def test_with_redis_the_limit_counts_across_processes(
    settings: Settings, clock: FixedClock, bus: Bus, redis_url: str
) -> None:
    import redis.asyncio as aioredis

    flush = aioredis.Redis.from_url(redis_url)
    for key in await flush.keys("onedoor-rate-limit*"):
        await flush.delete(key)
    await flush.aclose()
    limited = dataclasses.replace(settings, booking_rate_limit=3, redis_url=redis_url)
    app_a, app_b = create_app(limited, clock), create_app(limited, clock)
    async with (
        AsyncTestClient(app_a, base_url="http://a.local") as a,
        AsyncTestClient(app_b, base_url="http://b.local") as b,
    ):
        hall = await bookable_hall(a, bus)
        url = f"/api/public/halls/{hall.hall_id}/services/{hall.services['A']}/slots?days=1"
        codes = [(await c.get(url)).status_code for c in (a, b, a, b)]
    assert codes == [200, 200, 200, 429]
