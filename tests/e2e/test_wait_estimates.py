"""What visitors are told of their wait, in headless Chromium against the demo hall: the
kiosk shows the range the server projects, in both languages, and the follower page keeps
it fresh as the queue moves, without a reload."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.e2e.pages import browser, demo, new_page
from tests.e2e.test_booking_pages import counter, staff
from tests.e2e.test_kiosk_page import followed, kiosk_url, open_kiosk, screen_is
from tests.servers import Server

__all__ = ["browser", "demo"]
pytestmark = pytest.mark.slow

Demo = tuple[Server, dict[str, str]]


async def walk_in(server: Server, creds: dict[str, str], service_id: int = 1) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.base) as http:
        answer = await http.post(
            "/api/halls/1/tickets",
            json={"service_id": service_id},
            headers={"Authorization": f"Bearer {creds['kiosk']}"},
        )
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def follow(server: Server, token: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.base) as http:
        answer = await http.get(f"/api/follow/{token}")
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


RANGE = re.compile(r"(\d+)–(\d+)")


async def shows_the_range_of(page: Any, server: Server, token: str, selector: str) -> None:
    """Wait until the page shows the range the server tells now (give or take a minute:
    the projection moves with the clock between the page's read and this one)."""
    for _ in range(50):
        told = await follow(server, token)
        text = await page.locator(selector).inner_text()
        found = RANGE.search(text)
        if found and all(
            abs(int(shown) - told[key]) <= 1
            for shown, key in zip(found.groups(), ("estimate_low", "estimate_high"), strict=True)
        ):
            return
        await page.wait_for_timeout(100)
    pytest.fail(
        f"{selector} shows {text!r}; the server tells {told['estimate_low']}–"
        f"{told['estimate_high']}"
    )


async def test_the_kiosk_tells_the_projected_range_in_both_languages(
    browser: Any, demo: Demo
) -> None:
    server, creds = demo
    async with staff(server.base, "clerk", creds["clerk"]) as clerk:
        await counter(clerk, "open")
    for _ in range(3):
        await walk_in(server, creds)
    told = {}
    for lang, button in (("zh_CN", "取号"), ("en", "Take a number")):
        page = await new_page(browser, "desktop", lang)
        await open_kiosk(page, kiosk_url(server, creds))
        await page.locator("button.k-matter").first.click()
        await page.get_by_role("button", name=button, exact=True).click()
        await screen_is(page, "result")
        ticket = await followed(server, page)
        low, high = ticket["estimate_low"], ticket["estimate_high"]
        assert ticket["people_ahead"] >= 3
        assert 0 < low < ticket["estimate_minutes"] < high, ticket
        told[lang] = await page.locator("#r-estimate").inner_text()
        await shows_the_range_of(page, server, ticket["follow_token"], "#r-estimate")
        assert not page.script_errors
    assert re.fullmatch(r"预计等候约 \d+–\d+ 分钟", told["zh_CN"]), told
    assert re.fullmatch(r"About \d+–\d+ minutes' wait", told["en"]), told


async def test_the_follower_page_keeps_the_estimate_fresh_as_the_queue_moves(
    browser: Any, demo: Demo
) -> None:
    server, creds = demo
    async with staff(server.base, "clerk", creds["clerk"]) as clerk:
        await counter(clerk, "open")
        for _ in range(4):
            await walk_in(server, creds)
        mine = await walk_in(server, creds)
        token = mine["follow_token"]
        page = await new_page(browser, "phone", "en")
        await page.goto(f"{server.base}/t/{token}")
        await page.wait_for_function(
            "() => window.onedoorFollow && window.onedoorFollow.feed === 'open'"
        )
        before = await follow(server, token)
        await shows_the_range_of(page, server, token, "#estimate")
        assert (await page.inner_text("#estimate")).startswith("Estimated wait: about ")
        assert "4 ahead of you" in await page.inner_text("#ahead")

        # The clerk calls and serves two: the page follows, with no reload.
        for _ in range(2):
            await counter(clerk, "call-next")
            await counter(clerk, "start")
            await counter(clerk, "finish", outcome="done")
        await page.locator("#ahead", has_text="2 ahead of you").wait_for(timeout=5000)
        after = await follow(server, token)
        assert after["estimate_minutes"] < before["estimate_minutes"]
        await shows_the_range_of(page, server, token, "#estimate")

        # A second counter opens: the same queue, shared, moves faster.
        async with staff(server.base, "manager", creds["manager"]) as manager:
            opened = await manager.post("/api/counters/2/open")
            assert opened.status_code == 200, opened.text
            shared = await follow(server, token)
            assert shared["estimate_minutes"] < after["estimate_minutes"]
            await shows_the_range_of(page, server, token, "#estimate")
    assert not page.script_errors
