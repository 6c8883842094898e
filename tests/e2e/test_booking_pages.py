"""The booking site, "my booking" and the ticket follower in headless Chromium against the
demo hall: booking by keyboard alone on a phone, a full slot and a 409 with the next free
times, rescheduling and cancelling, remote check-in, a live call with a transfer and a
rating; every state passes axe at phone and desktop size in both languages. Also checks
the booking catalog: every Chinese message translated, both languages with the same ids,
and every string the scripts ask for handed to them by their template."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from babel.messages.pofile import read_po

from tests.e2e.pages import SIZES, axe_check, browser, demo, new_page, screenshot
from tests.servers import Server

__all__ = ["browser", "demo"]
pytestmark = pytest.mark.slow

WEB = Path(__file__).parents[2] / "queue_server" / "web"
Demo = tuple[Server, dict[str, str]]
LANGS = ("zh_CN", "en")


# --- helpers ----------------------------------------------------------------------------


@asynccontextmanager
async def staff(base: str, username: str, password: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client signed in as ``username``, sending the CSRF header."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        answer = await http.post(
            "/api/auth/login", json={"username": username, "password": password}
        )
        assert answer.status_code == 200, answer.text
        http.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
        yield http


async def counter(http: httpx.AsyncClient, action: str, **body: Any) -> dict[str, Any]:
    answer = await http.post(f"/api/counters/1/{action}", json=body or None)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def slot_days(base: str, service: int = 1) -> list[dict[str, Any]]:
    """The open days of a matter that still have a free slot."""
    async with httpx.AsyncClient(base_url=base) as http:
        answer = await http.get(f"/api/public/halls/1/services/{service}/slots", params={"days": 3})
    assert answer.status_code == 200, answer.text
    return [d for d in answer.json()["days"] if any(s["free"] for s in d["slots"])]


async def book_by_api(base: str, start: str, phone: str, service: int = 1) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base) as http:
        answer = await http.post(
            "/api/public/halls/1/bookings",
            json={"service_id": service, "slot_start": start, "name": "测试", "phone": phone},
        )
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def booking_by_api(base: str, code: str, phone: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base) as http:
        answer = await http.get(f"/api/bookings/{code}", params={"phone": phone})
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def tab_to(page: Any, selector: str, limit: int = 120) -> None:
    """Press Tab (only) until the focus is on ``selector``."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if await page.evaluate("(s) => document.activeElement?.matches(s) ?? false", selector):
            return
    raise AssertionError(f"{limit} presses of Tab never reached {selector}")


async def visible_step(page: Any, step: str) -> None:
    await page.locator(f"#step-{step}:not([hidden])").wait_for(timeout=5000)


async def check(page: Any, name: str) -> None:
    """No serious accessibility problem, and a screenshot to look at."""
    await page.wait_for_timeout(50)  # let layout settle
    await axe_check(page, name)
    await screenshot(page, name)


def same_moment(a: str, b: str) -> bool:
    from datetime import datetime

    return datetime.fromisoformat(a.replace("Z", "+00:00")) == datetime.fromisoformat(
        b.replace("Z", "+00:00")
    )


# --- 1. booking -------------------------------------------------------------------------


async def test_book_on_a_phone_in_chinese_by_keyboard_alone(browser: Any, demo: Demo) -> None:
    server, _ = demo
    phone = "13800138001"
    page = await new_page(browser, "phone", "zh_CN")
    await page.goto(f"{server.base}/book")
    await page.locator("[data-hall='1']").wait_for()
    assert await page.get_attribute("html", "lang") == "zh-CN"
    assert "第 1 步，共 5 步" in await page.inner_text("#progress")

    await tab_to(page, "a[data-hall='1']")
    await page.keyboard.press("Enter")
    await visible_step(page, "service")
    assert page.url.endswith("/book?hall=1")
    # The materials checklist sits under each matter; only bookable matters are offered.
    social = page.locator("a[data-service='1']")
    await social.wait_for()
    assert "身份证 ID card" in await social.inner_text()
    assert await page.locator("a[data-service]").count() == 3
    assert await page.evaluate("document.activeElement.id") == "title-service"

    await tab_to(page, "a[data-service='1']")
    await page.keyboard.press("Enter")
    await visible_step(page, "date")
    await page.locator("#days a[data-date]").first.wait_for()
    tomorrow = (await slot_days(server.base))[-1]["date"]
    await tab_to(page, f"a[data-date='{tomorrow}']")
    await page.keyboard.press("Enter")
    await visible_step(page, "slot")
    assert f"date={tomorrow}" in page.url

    wanted = next(s for s in (await slot_days(server.base))[-1]["slots"] if s["time"] >= "10:00")
    await page.locator("#slots a.slot").first.wait_for()
    await tab_to(page, f"a.slot[data-start='{wanted['start']}']")
    await page.keyboard.press("Enter")
    await visible_step(page, "details")
    assert wanted["time"] in await page.inner_text("#summary")

    # Sent empty: inline errors, and the focus goes to the first field to fix.
    await tab_to(page, "#book-button")
    await page.keyboard.press("Enter")
    await page.locator("#name-error:not([hidden])").wait_for()
    assert await page.evaluate("document.activeElement.id") == "name"
    assert await page.get_attribute("#name", "aria-invalid") == "true"
    assert "姓名" in await page.inner_text("#name-error")
    assert await page.locator("#phone-error:not([hidden])").count() == 1
    await check(page, "booking-details-errors-phone-zh_CN")

    await page.keyboard.type("王小明")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "phone"
    await page.keyboard.type("138 0013 800")  # one digit short
    await page.keyboard.press("Tab")
    await page.keyboard.type("12345x")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "book-button"
    await page.keyboard.press("Enter")
    await page.locator("#phone-error:not([hidden])").wait_for()
    assert "11 位" in await page.inner_text("#phone-error")
    assert await page.evaluate("document.activeElement.id") == "phone"
    await page.keyboard.press("End")
    await page.keyboard.type("1")
    await tab_to(page, "#book-button")
    await page.keyboard.press("Enter")

    await visible_step(page, "done")
    code = await page.locator("#code[data-code]").get_attribute("data-code")
    assert code and len(code) == 8
    assert "预约成功" in await page.inner_text("#step-done")
    assert wanted["time"] in await page.inner_text("#done-when")
    assert "社保卡 social security card" in await page.inner_text("#done-docs")
    qr = await page.get_attribute("#qr", "src")
    assert qr and qr.startswith("/qr.svg?data=") and code in qr
    assert await page.evaluate("document.querySelector('#qr').naturalWidth") > 0
    assert "签到" in await page.inner_text("#done-checkin")
    booking = await booking_by_api(server.base, code, phone)
    assert booking["state"] == "booked"
    assert booking["service"]["id"] == 1
    assert same_moment(booking["slot_start"], wanted["start"])
    assert booking["name"] == "王小明"

    # Back leaves the confirmation for the time step (the booking is not sent twice).
    await page.go_back()
    await visible_step(page, "slot")
    assert "slot=" not in page.url and f"date={tomorrow}" in page.url
    await page.go_back()
    await visible_step(page, "date")


async def test_book_in_english_with_a_full_slot_and_a_slot_taken_meanwhile(
    browser: Any, demo: Demo
) -> None:
    server, _ = demo
    days = await slot_days(server.base)
    target_day = days[-1]
    taken = next(s for s in target_day["slots"] if s["time"] >= "09:00")
    page = await new_page(browser, "phone", "en")
    await page.goto(f"{server.base}/book?hall=1&service=1&date={target_day['date']}")
    await visible_step(page, "slot")
    assert await page.get_attribute("html", "lang") == "en"
    await page.click(f"a.slot[data-start='{taken['start']}']")
    await visible_step(page, "details")
    await page.fill("#name", "Li Lei")
    await page.fill("#phone", "+86 139-0013-9000")

    # Meanwhile every place of that slot goes to others.
    for i in range(taken["free"]):
        await book_by_api(server.base, taken["start"], f"1370013{i:04d}")
    await page.click("#book-button")
    error = page.locator("#form-error:not([hidden])")
    await error.wait_for()
    assert "fully booked" in await error.inner_text()
    offers = page.locator("#next-free-list button.slot")
    await offers.first.wait_for()
    offered = await offers.first.get_attribute("data-start")
    assert offered and not same_moment(offered, taken["start"])
    await check(page, "booking-slot-full-phone-en")

    # Back to the times: the taken slot is shown as full, not as a link.
    await page.go_back()
    await visible_step(page, "slot")
    full = page.locator(f".slot.full[data-start='{taken['start']}']")
    await full.wait_for()
    assert "Full" in await full.inner_text()
    assert await page.locator(f"a.slot[data-start='{taken['start']}']").count() == 0
    await page.go_forward()
    await visible_step(page, "details")
    await page.locator("#details-zone-note").wait_for(state="attached")
    assert "fully booked" in await page.inner_text("#problem-details")

    # Take one of the offered times instead: the details typed are kept.
    await page.click("#book-button")
    await page.locator("#next-free-list button.slot").first.click()
    await page.wait_for_function("() => document.activeElement.id === 'book-button'")
    assert await page.input_value("#name") == "Li Lei"
    assert "slot=" in page.url
    await page.click("#book-button")
    await visible_step(page, "done")
    code = await page.locator("#code[data-code]").get_attribute("data-code")
    assert code
    assert "Your booking is made" in await page.inner_text("#step-done")
    booking = await booking_by_api(server.base, code, "13900139000")
    assert booking["state"] == "booked"
    assert same_moment(booking["slot_start"], offered)

    # A second booking of the same matter by the same phone: the server says why not.
    await page.goto(f"{server.base}/book?hall=1&service=1&date={target_day['date']}")
    await page.locator("#slots a.slot").last.click()
    await page.fill("#name", "Li Lei")
    await page.fill("#phone", "13900139000")
    await page.click("#book-button")
    await error.wait_for()
    assert "already has 1 active booking" in await error.inner_text()
    assert code in await error.inner_text()


# --- 2. managing a booking --------------------------------------------------------------


async def test_manage_reschedule_then_cancel_from_the_qr_link(browser: Any, demo: Demo) -> None:
    server, _ = demo
    phone = "13800138002"
    day = (await slot_days(server.base))[-1]
    first, second = day["slots"][20], day["slots"][24]
    made = await book_by_api(server.base, first["start"], phone)
    code = made["code"]

    page = await new_page(browser, "phone", "zh_CN")
    await page.goto(f"{server.base}/b/{code}")
    await page.wait_for_url(f"**/book/manage?code={code}")
    await page.locator("#section-find:not([hidden])").wait_for()
    assert await page.input_value("#find-code") == code
    await check(page, "booking-manage-find-phone-zh_CN")
    await page.click("#find-button")  # no phone yet
    await page.locator("#find-phone-error:not([hidden])").wait_for()
    await page.fill("#find-phone", "13800138009")  # the wrong one
    await page.click("#find-button")
    await page.locator("#problem-find:not([hidden])").wait_for()
    assert "没有找到" in await page.inner_text("#problem-find")
    await page.fill("#find-phone", "138 0013 8002")
    await page.click("#find-button")
    await page.locator("#section-view:not([hidden])").wait_for()
    await page.locator("#view-code[data-code]").wait_for()
    assert await page.get_attribute("#view-code", "data-code") == code
    assert first["time"] in await page.inner_text("#view-when")
    assert "已预约" in await page.inner_text("#view-state")

    await page.click("#move-link")
    await page.locator(f"#move-days a[data-date='{day['date']}']").click()
    await page.locator(f".slot.full[data-start='{first['start']}']").wait_for()  # current time
    await check(page, "booking-manage-move-slot-phone-zh_CN")
    await page.click(f"#move-slots a.slot[data-start='{second['start']}']")
    await page.locator("#move-confirm:not([hidden])").wait_for()
    assert second["time"] in await page.inner_text("#move-to")
    await check(page, "booking-manage-move-confirm-phone-zh_CN")
    await page.click("#move-yes")
    await page.locator("#notice", has_text="改约成功").wait_for()
    assert second["time"] in await page.inner_text("#view-when")
    moved = await booking_by_api(server.base, code, phone)
    assert moved["code"] == code and same_moment(moved["slot_start"], second["start"])

    await page.click("#cancel-link")
    await page.locator("#section-cancel:not([hidden])").wait_for()
    assert await page.locator("#notice").is_hidden()
    await page.click("#cancel-no")  # changed my mind: nothing happens
    await page.locator("#section-view:not([hidden])").wait_for()
    assert (await booking_by_api(server.base, code, phone))["state"] == "booked"
    await page.click("#cancel-link")
    await page.locator("#section-cancel:not([hidden])").wait_for()
    assert second["time"] in await page.inner_text("#cancel-what")
    await check(page, "booking-manage-cancel-phone-zh_CN")
    await page.click("#cancel-yes")
    await page.locator("#notice", has_text="预约已取消").wait_for()
    assert "已取消" in await page.inner_text("#view-state")
    assert await page.locator("#change-box").is_hidden()
    assert await page.locator("#rebook").is_visible()
    assert (await booking_by_api(server.base, code, phone))["state"] == "cancelled"
    await check(page, "booking-manage-cancelled-phone-zh_CN")


async def test_a_visitor_deletes_their_details_from_a_booking(browser: Any, demo: Demo) -> None:
    server, _ = demo
    phone = "13800138004"
    day = (await slot_days(server.base))[-1]
    made = await book_by_api(server.base, day["slots"][22]["start"], phone)
    code = made["code"]
    page = await new_page(browser, "phone", "en")
    await page.goto(f"{server.base}/book/manage?code={code}&lang=en")
    await page.fill("#find-phone", phone)
    await page.click("#find-button")
    await page.locator("#section-view:not([hidden])").wait_for()
    await page.get_by_role("link", name="Delete my details").click()
    await page.locator("#section-erase:not([hidden])").wait_for()
    await check(page, "booking-manage-erase-phone-en")
    await page.get_by_role("button", name="Yes, delete my details").click()
    await page.locator(
        "#notice", has_text=f"Your details are deleted from booking {code}."
    ).wait_for()
    await page.locator("#section-find:not([hidden])").wait_for()
    async with httpx.AsyncClient(base_url=server.base) as http:
        gone = await http.get(f"/api/bookings/{code}", params={"phone": phone})
    assert gone.status_code == 404, "the booking cannot be looked up by that phone any more"


async def test_remote_check_in_only_where_the_hall_allows_it(browser: Any, demo: Demo) -> None:
    server, creds = demo
    phone = "13800138003"
    soonest = (await slot_days(server.base))[0]["slots"][0]  # check-in is open for it
    code = (await book_by_api(server.base, soonest["start"], phone))["code"]

    page = await new_page(browser, "phone", "en")
    await page.goto(f"{server.base}/book/manage?code={code}")
    await page.fill("#find-phone", phone)
    await page.click("#find-button")
    await page.locator("#view-code[data-code]").wait_for()
    kiosk = page.locator("#checkin-kiosk")
    await kiosk.wait_for()
    assert "check in at the kiosk" in await kiosk.inner_text()
    assert "does not take check-in from a phone" in await kiosk.inner_text()
    assert await page.locator("#checkin-button").is_hidden()
    await check(page, "booking-manage-kiosk-checkin-phone-en")

    async with staff(server.base, "manager", creds["manager"]) as manager:
        answer = await manager.put("/api/halls/1/booking-calendar", json={"remote_checkin": True})
        assert answer.status_code == 200, answer.text
    await page.reload()  # the phone number is remembered by this tab
    button = page.locator("#checkin-button")
    await button.wait_for()
    assert await kiosk.is_hidden()
    await check(page, "booking-manage-remote-checkin-phone-en")
    await button.click()
    await page.wait_for_url("**/t/*")
    token = page.url.rsplit("/t/", 1)[1]
    await page.locator("#card:not([hidden])").wait_for()
    number = await page.inner_text("#number")
    async with httpx.AsyncClient(base_url=server.base) as http:
        ticket = (await http.get(f"/api/follow/{token}")).json()
    assert ticket["number"] == number and ticket["kind"] == "appointment"
    assert ticket["booking"]["code"] == code
    assert "Social insurance" in await page.inner_text("#matter")
    assert "Your appointment" in await page.inner_text("#due")
    # Back on "my booking", the checked-in booking links to the ticket.
    await page.goto(f"{server.base}/book/manage?code={code}")
    await page.locator("#follow-link:not([hidden])").wait_for()
    assert "Checked in" in await page.inner_text("#view-state")
    assert await page.get_attribute("#follow-link", "href") == f"/t/{token}"
    # So does another phone that never saw the check-in: the link comes from the server.
    other = await new_page(browser, "phone", "en")
    await other.goto(f"{server.base}/book/manage?code={code}")
    await other.fill("#find-phone", phone)
    await other.click("#find-button")
    await other.locator("#follow-link:not([hidden])").wait_for()
    await other.click("#follow-link")
    await other.wait_for_url(f"**/t/{token}")
    await other.locator("#card:not([hidden])").wait_for()
    assert await other.inner_text("#number") == number


# --- 4. following a ticket (and 5. its states at both sizes, in both languages) ---------

# The call is shown and its flash is over (each page gets the call in its own time).
FLASHED = (
    "() => { const turn = document.getElementById('turn');"
    " return turn.textContent !== '' && turn.getAnimations().length === 0; }"
)


async def test_follower_is_called_live_transferred_and_rates_by_keyboard(
    browser: Any, demo: Demo
) -> None:
    server, creds = demo
    async with httpx.AsyncClient(base_url=server.base) as http:
        answer = await http.post(
            "/api/halls/1/tickets",
            json={"service_id": 1},
            headers={"Authorization": f"Bearer {creds['kiosk']}"},
        )
    assert answer.status_code == 201, answer.text
    token = answer.json()["follow_token"]
    # The same link open at every size and language; the English phone is the one used.
    pages = {
        f"{size}-{lang}": await new_page(browser, size, lang) for size in SIZES for lang in LANGS
    }
    for page in pages.values():
        await page.goto(f"{server.base}/t/{token}")
    page = pages["phone-en"]
    for tag, each in pages.items():
        await each.wait_for_function(
            "() => window.onedoorFollow && window.onedoorFollow.feed === 'open'"
        )
        await check(each, f"booking-follow-waiting-{tag}")
    assert await page.inner_text("#number") == "A001"
    assert "Waiting" in await page.inner_text("#state")
    assert "You are next" in await page.inner_text("#ahead")
    assert await page.inner_text("#turn") == ""
    assert "前面还有" not in await pages["phone-zh_CN"].inner_text("#ahead")  # next: no count
    assert "下一位就是您" in await pages["phone-zh_CN"].inner_text("#ahead")

    async with staff(server.base, "clerk", creds["clerk"]) as clerk:
        await counter(clerk, "open")
        called = time.monotonic()
        await counter(clerk, "call-next")
        alert = page.get_by_role("alert").filter(has_text="Your turn")
        await alert.wait_for(timeout=5000)
        assert time.monotonic() - called < 5
        assert "Please go to counter 1" in await alert.inner_text()
        assert await page.evaluate("window.onedoorFollow.beeps") >= 1
        assert await page.title() == "Your turn · A001"
        zh_alert = pages["phone-zh_CN"].get_by_role("alert").filter(has_text="轮到您了")
        await zh_alert.wait_for(timeout=5000)
        assert "请到 1 号窗口" in await zh_alert.inner_text()
        for tag, each in pages.items():
            await each.wait_for_function(FLASHED)
            await check(each, f"booking-follow-called-{tag}")

        # Sent on to medical insurance: the same link shows the new ticket, and its call.
        await counter(clerk, "start")
        await counter(clerk, "transfer", service_id=5)
        await page.locator("#moved:not([hidden])").wait_for(timeout=5000)
        assert "Medical insurance" in await page.inner_text("#matter")
        assert await page.inner_text("#turn") == ""
        alerts = await page.evaluate("window.onedoorFollow.alerts")
        await counter(clerk, "call-next")
        await page.wait_for_function(f"() => window.onedoorFollow.alerts > {alerts}", timeout=5000)
        assert "counter 1" in await page.inner_text("#turn")

        await counter(clerk, "start")
        await page.locator("#state", has_text="Being served at counter 1").wait_for(timeout=5000)
        assert await page.inner_text("#turn") == ""
        await counter(clerk, "finish", outcome="done")
    for tag, each in pages.items():
        await each.locator("#rating:not([hidden])").wait_for(timeout=5000)
        await check(each, f"booking-follow-rating-{tag}")

    # Sent without stars: said inline.
    zh = pages["phone-zh_CN"]
    await zh.click("#rate-button")
    await zh.locator("#stars-error:not([hidden])").wait_for()
    assert "1 到 5" in await zh.inner_text("#stars-error")

    # Rate by keyboard: into the group (5 stars first), one down to 4, a comment, send.
    await tab_to(page, "input[name=stars]")
    assert await page.evaluate("document.activeElement.id") == "star-5"
    await page.keyboard.press("ArrowDown")
    assert await page.is_checked("#star-4")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "comment"
    await page.keyboard.type("Quick and friendly")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")
    await page.locator("#thanks:not([hidden])").wait_for()
    assert await page.locator("#rating").is_hidden()
    await check(page, "booking-follow-thanks-phone-en")

    async with staff(server.base, "manager", creds["manager"]) as manager:
        ratings = (await manager.get("/api/halls/1/ratings")).json()
    assert [(r["stars"], r["comment"]) for r in ratings["ratings"]] == [(4, "Quick and friendly")]
    await zh.reload()  # rated: thanks, no second form
    await zh.locator("#thanks:not([hidden])").wait_for()
    assert await zh.locator("#rating").is_hidden()
    assert "感谢您的评价" in await zh.inner_text("#thanks")


# --- 5. booking and manage states at both sizes, in both languages ----------------------


async def test_booking_and_manage_states_pass_axe_at_both_sizes_in_both_languages(
    browser: Any, demo: Demo
) -> None:
    server, _ = demo
    day = (await slot_days(server.base))[-1]
    turns = asyncio.Semaphore(2)  # two pages at a time on a small machine

    async def sweep(n: int, size: str, lang: str) -> None:
        tag = f"{size}-{lang}"
        phone = f"1360013{n:04d}"
        slot = day["slots"][30 + n]
        async with turns:
            page = await new_page(browser, size, lang)
            await page.goto(f"{server.base}/book")
            await page.locator("[data-hall='1']").wait_for()
            await check(page, f"booking-hall-{tag}")
            await page.click("[data-hall='1']")
            await page.locator("[data-service='1']").wait_for()
            await check(page, f"booking-matter-{tag}")
            await page.click("[data-service='1']")
            await page.locator(f"a[data-date='{day['date']}']").wait_for()
            await check(page, f"booking-date-{tag}")
            await page.click(f"a[data-date='{day['date']}']")
            await page.locator(f"a.slot[data-start='{slot['start']}']").wait_for()
            await check(page, f"booking-slot-{tag}")
            await page.click(f"a.slot[data-start='{slot['start']}']")
            await visible_step(page, "details")
            await check(page, f"booking-details-{tag}")
            await page.fill("#name", "张三")
            await page.fill("#phone", phone)
            await page.click("#book-button")
            await page.locator("#code[data-code]").wait_for()
            await page.wait_for_function("() => document.querySelector('#qr').complete")
            await check(page, f"booking-confirmation-{tag}")
            await page.click("#manage-link")
            await page.fill("#find-phone", phone)
            await page.click("#find-button")
            await page.locator("#view-code[data-code]").wait_for()
            await page.wait_for_function("() => document.querySelector('#view-qr').complete")
            await check(page, f"booking-manage-view-{tag}")
            await page.context.close()

    combos = [(size, lang) for size in SIZES for lang in LANGS]
    await asyncio.gather(*(sweep(n, size, lang) for n, (size, lang) in enumerate(combos)))


# --- translations -----------------------------------------------------------------------


def _catalog(lang: str) -> Any:
    with (WEB / "locale" / lang / "LC_MESSAGES" / "booking.po").open("rb") as handle:
        return read_po(handle, locale=lang)


def test_booking_catalogs_match_and_chinese_is_complete() -> None:
    zh, en = _catalog("zh_CN"), _catalog("en")
    zh_ids = {m.id for m in zh if m.id}
    en_ids = {m.id for m in en if m.id}
    assert zh_ids == en_ids, (sorted(zh_ids - en_ids), sorted(en_ids - zh_ids))
    assert len(zh_ids) > 100
    untranslated = [m.id for m in zh if m.id and not m.string]
    assert not untranslated, untranslated
    # All catalogs of a language are merged into one: an id other pages share must be
    # translated the same there, or one page would silently get the other's words.
    for lang, mine in (("zh_CN", zh), ("en", en)):
        ours = {m.id: m.string for m in mine if m.id}
        for path in sorted((WEB / "locale" / lang / "LC_MESSAGES").glob("*.po")):
            if path.name == "booking.po":
                continue
            with path.open("rb") as handle:
                for m in read_po(handle, locale=lang):
                    if m.id in ours:
                        assert m.string == ours[m.id], (path.name, m.id, m.string, ours[m.id])
    # Placeholders survive translation, or the scripts would show "{n}".
    for message in zh:
        if message.id:
            wanted = sorted(re.findall(r"\{\w+\}|%\(\w+\)s", message.id))
            assert sorted(re.findall(r"\{\w+\}|%\(\w+\)s", message.string)) == wanted, message.id


def test_every_message_of_the_pages_and_their_scripts_is_in_the_catalog() -> None:
    from jinja2.ext import babel_extract

    catalog = {m.id for m in _catalog("zh_CN") if m.id}
    with (WEB / "locale" / "zh_CN" / "LC_MESSAGES" / "common.po").open("rb") as handle:
        catalog |= {m.id for m in read_po(handle, locale="zh_CN") if m.id}
    book_js = (WEB / "static" / "book.js").read_text()
    helpers = book_js[: book_js.index("// --- the booking site")]  # what manage.js imports
    scripts = {
        "book.html": book_js,
        "manage.html": helpers + (WEB / "static" / "manage.js").read_text(),
        "follow.html": (WEB / "static" / "follow.js").read_text(),
    }
    for template, script in scripts.items():
        with (WEB / "templates" / template).open("rb") as handle:
            found = babel_extract(handle, ["_"], [], {"extensions": "jinja2.ext.i18n"})
            ids = {m[0] if isinstance(m, tuple) else m for _, _, m, _ in found}
        assert not ids - catalog, (template, sorted(ids - catalog))
        # page_strings: each line '"id": _("id"),' hands one message to the script.
        source = (WEB / "templates" / template).read_text()
        if "_picker_strings.html" in source:  # the pickers' words, shared with the other page
            source += (WEB / "templates" / "_picker_strings.html").read_text()
        handed = set(re.findall(r'^\s+"((?:[^"\\]|\\.)+)": _\("\1"\)', source, re.M))
        asked = set(re.findall(r'\bt\(\s*"((?:[^"\\]|\\.)+)"', script))
        assert asked, template
        assert not asked - handed, (template, sorted(asked - handed))
