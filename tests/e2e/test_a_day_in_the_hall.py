"""A day in the hall in miniature, every step on its page in headless Chromium: a citizen
books online on a phone, checks in at the kiosk, a walk-in takes a ticket, the board shows
the call, the clerk calls, finishes and transfers, the follower pages update live, and the
rating reaches the manager's page."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import expect

from tests.e2e.pages import axe_check, browser, demo, new_page, screenshot
from tests.e2e.test_admin_pages import ready
from tests.e2e.test_admin_pages import sign_in as admin_sign_in
from tests.e2e.test_booking_pages import staff, visible_step
from tests.e2e.test_counter_page import action, current, sign_in
from tests.e2e.test_kiosk_page import follow_token, kiosk_url, open_kiosk, screen_is
from tests.servers import Server

__all__ = ["browser", "demo"]
pytestmark = pytest.mark.slow


async def test_a_day_in_miniature(browser: Any, demo: tuple[Server, dict[str, str]]) -> None:
    server, creds = demo

    # 1. A citizen books social insurance on a phone, in Chinese: the first free slot.
    phone = await new_page(browser, "phone", "zh_CN")
    await phone.goto(f"{server.base}/book?hall=1&service=1")
    await visible_step(phone, "date")
    await phone.locator("#days a[data-date]").first.click()
    await visible_step(phone, "slot")
    await phone.locator("#slots a.slot").first.click()
    await visible_step(phone, "details")
    await phone.fill("#name", "王小明")
    await phone.fill("#phone", "138 0013 8000")
    await phone.click("#book-button")
    await visible_step(phone, "done")
    code = await phone.locator("#code[data-code]").get_attribute("data-code")
    assert code and len(code) == 8
    await screenshot(phone, "day-1-booked-phone-zh_CN")

    # 2. At the hall she checks in at the kiosk by typing her code (the first slot's
    #    check-in is open: it starts within the next half hour).
    kiosk = await new_page(browser, "desktop", "zh_CN")
    await open_kiosk(kiosk, kiosk_url(server, creds))
    await kiosk.get_by_role("button", name="预约签到").click()
    await screen_is(kiosk, "checkin")
    await kiosk.keyboard.type(code)
    await kiosk.keyboard.press("Enter")
    await screen_is(kiosk, "result")
    assert await kiosk.locator("#r-number").inner_text() == "A001"
    booked_token = follow_token(await kiosk.get_attribute("#r-qr", "src"))
    await kiosk.get_by_role("button", name="完成").click()
    await screen_is(kiosk, "start")

    # 3. A walk-in takes a ticket for the same matter.
    await kiosk.locator("button.k-matter", has_text="社会保险").click()
    await kiosk.get_by_role("button", name="取号", exact=True).click()
    await screen_is(kiosk, "result")
    assert await kiosk.locator("#r-number").inner_text() == "A002"
    walk_in_token = follow_token(await kiosk.get_attribute("#r-qr", "src"))
    await screenshot(kiosk, "day-3-walk-in-desktop-zh_CN")

    # Both visitors follow their turn on their phones; the hall's board is on.
    walk_in = await new_page(browser, "phone", "zh_CN")
    await walk_in.goto(f"{server.base}/t/{walk_in_token}")
    await expect(walk_in.locator("#number")).to_have_text("A002")
    booked = await new_page(browser, "phone", "en")
    await booked.goto(f"{server.base}/t/{booked_token}?lang=en")
    await expect(booked.locator("#number")).to_have_text("A001")
    board = await browser.new_page(viewport={"width": 1920, "height": 1080})
    await board.goto(f"{server.base}/board/1?token={creds['board']}")

    # 4. A colleague has counter 2 (social and medical insurance) open, free for the
    #    appointment when its slot comes. The clerk signs in at counter 1 (keyboard) and
    #    calls: the appointment can wait for its slot, so the walk-in goes first; the board
    #    and the walk-in's phone show it. (Alone, counter 1 would call the appointment
    #    first when its slot is close: whatever it called next might still be at its desk.)
    async with staff(server.base, "manager", creds["manager"]) as colleague:
        opened = await colleague.post("/api/counters/2/open")
        assert opened.status_code == 200, opened.text
    clerk = await new_page(browser, "desktop", "en")
    feed = await sign_in(clerk, server, creds["clerk"])
    await expect(clerk.locator("#waiting-list li")).to_have_count(2)
    async with feed.brings("A002", "called"):
        await clerk.keyboard.press("n")
    await expect(current(clerk)).to_have_text("A002")
    await expect(board.locator("#now")).to_contain_text("A002", timeout=5000)
    turn = walk_in.get_by_role("alert").filter(has_text="轮到您了")
    await expect(turn).to_contain_text("请到 1 号窗口", timeout=5000)
    await screenshot(board, "day-4-board-1920")
    await screenshot(walk_in, "day-4-your-turn-phone-zh_CN")

    # 5. Served and finished; the walk-in rates the service from the same page.
    async with feed.brings("A002", "serving"):
        await clerk.keyboard.press("s")
    await expect(clerk.locator("#current-state")).to_have_text("Serving")
    await clerk.keyboard.press("f")
    await expect(clerk.locator("#finish-form")).to_be_visible()
    async with feed.brings():
        await clerk.keyboard.press("Enter")
    await expect(clerk.locator("#current")).to_contain_text("No current ticket.")
    await walk_in.locator("#rating:not([hidden])").wait_for(timeout=5000)
    await walk_in.check("#star-5")
    await walk_in.fill("#comment", "一次就办好了")
    await walk_in.click("#rate-button")
    await walk_in.locator("#thanks:not([hidden])").wait_for()

    # 6. Next comes the appointment, with her booking's details on the console; she is
    #    sent on to medical insurance, and her phone follows her to the new matter.
    async with feed.brings("A001", "called"):
        await clerk.keyboard.press("n")
    await expect(current(clerk)).to_have_text("A001")
    await expect(clerk.locator("#current")).to_contain_text("王小明")
    await expect(clerk.locator("#current")).to_contain_text(code)
    await expect(booked.get_by_role("alert").filter(has_text="Your turn")).to_be_visible(
        timeout=5000
    )
    await clerk.keyboard.press("t")
    await clerk.locator("#transfer-service").select_option(label="E · Medical insurance")
    await clerk.get_by_role("button", name="Confirm transfer").click()
    await expect(clerk.locator("#last")).to_contain_text("transferred to Medical insurance")
    await booked.locator("#moved:not([hidden])").wait_for(timeout=5000)
    await expect(booked.locator("#matter")).to_contain_text("Medical insurance")
    await expect(action(clerk, "call-next")).to_be_enabled()
    await screenshot(booked, "day-6-transferred-phone-en")

    # 7. The manager sees the rating and the day's calls.
    manager = await new_page(browser, "desktop", "zh_CN")
    await admin_sign_in(manager, server, creds["manager"], lang="zh_CN")
    await manager.goto(f"{server.base}/admin#ratings")
    await ready(manager, "ratings")
    await expect(manager.locator("main")).to_contain_text("一次就办好了", timeout=5000)
    await expect(manager.locator("main")).to_contain_text("A002")
    await screenshot(manager, "day-7-ratings-desktop-zh_CN")
    for page, what in [(phone, "booking"), (kiosk, "kiosk"), (walk_in, "follower"),
                       (clerk, "counter"), (manager, "ratings")]:  # fmt: skip
        await axe_check(page, f"{what} at the end of the day")
