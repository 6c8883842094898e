"""A day closed or the hours changed where bookings exist, through the API on both
databases: the change is refused with the bookings it would strand listed; confirmed with a
reason, those bookings are cancelled (places given back, nothing else touched) and each
visitor is told once, in both languages, with a link to book again."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from litestar.testing import AsyncTestClient
from playwright.async_api import expect

from booking.jobs import send_reminders
from booking.notify import Reminder
from booking.service import BookSlot, book_slot
from queue_server.clock import FixedClock
from queue_server.service.bus import Bus
from tests.e2e.pages import axe_check, browser, demo, new_page
from tests.e2e.test_admin_pages import open_section
from tests.e2e.test_admin_pages import sign_in as admin_sign_in
from tests.e2e.test_booking_pages import book_by_api, booking_by_api, slot_days
from tests.servers import Server
from tests.support import ALL_DAY, build_hall, call_as

__all__ = ["browser", "demo"]
Demo = tuple[Server, dict[str, str]]

SHANGHAI = ZoneInfo("Asia/Shanghai")


class Outbox:
    """A notifier that keeps what it was given (the reminder channel's other end)."""

    def __init__(self) -> None:
        self.sent: list[Reminder] = []

    async def send(self, message: Reminder) -> None:
        self.sent.append(message)


async def test_closing_a_booked_day_lists_then_cancels_and_tells_each_visitor(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    hall = await build_hall(client, bus, clerks=1)
    base = f"/api/halls/{hall.hall_id}"
    matter = hall.services["A"]
    rules = {"slot_minutes": 30, "capacity": 2, "walk_in_share": 0}
    enabled = await call_as(client, hall.manager, "PUT", f"{base}/services/{matter}/booking",
                            json=rules)  # fmt: skip
    assert enabled.status_code == 200, enabled.text
    tomorrow = (clock.now().astimezone(SHANGHAI) + timedelta(days=1)).replace(
        hour=9, minute=0, second=0, microsecond=0
    )
    later = tomorrow + timedelta(days=1)
    hit = await bus.run(
        book_slot, BookSlot(hall.hall_id, matter, tomorrow, "王小明", "13900139000")
    )
    also = await bus.run(
        book_slot, BookSlot(hall.hall_id, matter, tomorrow + timedelta(hours=1), "李四", None,
                            "123X", hall.clerks[0].user_id)
    )  # fmt: skip
    safe = await bus.run(book_slot, BookSlot(hall.hall_id, matter, later, "赵六", "13800138000"))
    holiday = {"holidays": [tomorrow.date().isoformat()]}

    refused = await call_as(client, hall.manager, "PUT", f"{base}/booking-calendar", json=holiday)
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert body["extra"]["reason"] == "bookings_stranded"
    listed = body["extra"]["stranded"]
    assert [b["code"] for b in listed] == [hit.code, also.code]
    assert listed[0]["phone"] == "139****9000" and listed[0]["local_time"] == "09:00"
    calendar = (await call_as(client, hall.manager, "GET", f"{base}/booking-calendar")).json()
    assert calendar["holidays"] == [], "refused: nothing changed"
    no_reason = await call_as(
        client, hall.manager, "PUT", f"{base}/booking-calendar",
        json={**holiday, "cancel_stranded": True},
    )  # fmt: skip
    assert no_reason.status_code == 400 and "say why" in no_reason.json()["detail"]

    confirmed = await call_as(
        client, hall.manager, "PUT", f"{base}/booking-calendar",
        json={**holiday, "cancel_stranded": True, "reason": "闭馆检修 closed for repairs"},
    )  # fmt: skip
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["holidays"] == [tomorrow.date().isoformat()]
    states = {}
    for made in (hit, also, safe):
        seen = await call_as(client, hall.manager, "GET", f"{base}/bookings/{made.code}")
        states[made.code] = seen.json()["state"]
    assert states == {hit.code: "cancelled", also.code: "cancelled", safe.code: "booked"}

    outbox = Outbox()
    sent, failed = await send_reminders(bus, outbox, "https://hall.example.org")
    assert (sent, failed) == (1, 0), "one visitor has a phone; the assisted one has none"
    [notice] = outbox.sent
    assert notice.kind == "booking_cancelled_by_hall" and notice.code == hit.code
    assert (
        "闭馆检修 closed for repairs" in notice.text_zh
        and "cancelled by the hall" in notice.text_en
    )
    assert (
        notice.manage_url == f"https://hall.example.org/book?hall={hall.hall_id}&service={matter}"
    )
    again = Outbox()
    assert await send_reminders(bus, again, "https://hall.example.org") == (0, 0), "told once"

    # The day is closed now: it offers no time to book.
    slots = await client.get(f"/api/public/halls/{hall.hall_id}/services/{matter}/slots")
    closed = [d for d in slots.json()["days"] if d["date"] == tomorrow.date().isoformat()]
    assert all(not s["free"] for d in closed for s in d["slots"]), closed


async def test_new_opening_hours_that_strand_bookings_need_the_same_confirmation(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    hall = await build_hall(client, bus, clerks=1)
    base = f"/api/halls/{hall.hall_id}"
    matter = hall.services["A"]
    await call_as(client, hall.manager, "PUT", f"{base}/services/{matter}/booking",
                  json={"slot_minutes": 30, "capacity": 2, "walk_in_share": 0})  # fmt: skip
    evening = (clock.now().astimezone(SHANGHAI) + timedelta(days=1)).replace(
        hour=19, minute=0, second=0, microsecond=0
    )
    late = await bus.run(
        book_slot, BookSlot(hall.hall_id, matter, evening, "王小明", "13900139000")
    )
    shorter = {d: [["08:00", "17:00"]] for d in ALL_DAY}
    refused = await call_as(client, hall.admin, "PATCH", base, json={"opening_hours": shorter})
    assert refused.status_code == 409, refused.text
    assert [b["code"] for b in refused.json()["extra"]["stranded"]] == [late.code]
    hall_now = (await call_as(client, hall.admin, "GET", base)).json()
    assert hall_now["opening_hours"]["mon"] == [["00:00", "24:00"]], "refused: unchanged"
    done = await call_as(
        client, hall.admin, "PATCH", base,
        json={"opening_hours": shorter, "cancel_stranded": True, "reason": "shorter winter hours"},
    )  # fmt: skip
    assert done.status_code == 200, done.text
    assert done.json()["opening_hours"]["mon"] == [["08:00", "17:00"]]
    seen = await call_as(client, hall.manager, "GET", f"{base}/bookings/{late.code}")
    assert seen.json()["state"] == "cancelled"
    # Hours that strand nothing need no confirmation.
    fine = await call_as(
        client,
        hall.admin,
        "PATCH",
        base,
        json={"opening_hours": {d: [["07:00", "18:00"]] for d in ALL_DAY}},
    )
    assert fine.status_code == 200, fine.text


@pytest.mark.slow
async def test_the_manager_sees_the_stranded_bookings_and_confirms_on_the_admin_page(
    browser: Any, demo: Demo
) -> None:
    server, creds = demo
    day = (await slot_days(server.base))[-1]
    made = await book_by_api(server.base, day["slots"][4]["start"], "13800138005")
    page = await new_page(browser, "desktop", "en")
    await admin_sign_in(page, server, creds["manager"])
    section = await open_section(page, "calendar")
    await section.get_by_label("New holiday").fill(day["date"])
    await section.get_by_role("button", name="Add holiday").click()
    await section.get_by_role("button", name="Save calendar").click()
    form = section.locator("#calendar-form")
    await expect(form.locator(".form-error")).to_contain_text("1 booking still ahead")
    panel = form.locator("#calendar-stranded")
    await expect(panel).to_be_visible()
    await expect(panel).to_contain_text(made["code"])
    await expect(panel).to_contain_text("138****8005")
    await axe_check(page, "admin: calendar change with a stranded booking")
    await panel.get_by_label("Why (each visitor is told)").fill("Closed for a public holiday")
    await panel.get_by_label("Cancel these bookings and tell each visitor").check()
    await section.get_by_role("button", name="Save calendar").click()
    await expect(form.get_by_role("status")).to_contain_text(
        "Saved; the bookings listed are cancelled and each visitor will be told."
    )
    await expect(panel).to_be_hidden()
    assert (await booking_by_api(server.base, made["code"], "13800138005"))["state"] == "cancelled"
