"""What every page shares, in headless Chromium: the language switch (kept across pages
and addresses), the larger-text switch, the skip link, and QR codes."""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.pages import axe_check, browser, demo, new_page, screenshot
from tests.servers import Server

__all__ = ["browser", "demo"]


async def test_language_switch_keeps_the_address_and_is_remembered(
    browser: Any, demo: tuple[Server, dict[str, str]]
) -> None:
    server, _ = demo
    page = await new_page(browser, "phone")
    await page.goto(f"{server.base}/book?hall=1")
    assert await page.get_attribute("html", "lang") == "zh-CN"
    await page.get_by_role("link", name="English").click()
    await page.wait_for_url("**/book?hall=1&lang=en")
    assert await page.get_attribute("html", "lang") == "en"
    await page.goto(f"{server.base}/counter")  # remembered by the cookie
    assert await page.get_attribute("html", "lang") == "en"
    await axe_check(page, "counter page in English")


async def test_larger_text_by_keyboard_and_the_skip_link(
    browser: Any, demo: tuple[Server, dict[str, str]]
) -> None:
    server, _ = demo
    page = await new_page(browser, "desktop")
    await page.goto(f"{server.base}/book")
    await page.wait_for_load_state("networkidle")  # the page's script has drawn its step
    size = await page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)")
    await page.evaluate("document.activeElement && document.activeElement.blur()")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.className") == "skip"
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "main"
    button = page.locator("[data-large-text]")
    await button.focus()
    await page.keyboard.press("Enter")
    assert await button.get_attribute("aria-pressed") == "true"
    larger = await page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)")
    assert larger >= size * 1.3
    await page.reload()  # the choice stays
    assert await page.locator("[data-large-text]").get_attribute("aria-pressed") == "true"
    await screenshot(page, "common-large-text")
    await axe_check(page, "booking page with larger text")


async def test_qr_codes_are_svg_and_bad_requests_are_4xx(
    demo: tuple[Server, dict[str, str]],
) -> None:
    server, _ = demo
    async with httpx.AsyncClient(base_url=server.base) as client:
        qr = await client.get("/qr.svg", params={"data": f"{server.base}/t/abc"})
        assert qr.status_code == 200
        assert qr.headers["content-type"].startswith("image/svg+xml")
        assert b"<svg" in qr.content
        assert (await client.get("/qr.svg")).status_code == 400
        assert (await client.get("/qr.svg", params={"data": "x" * 401})).status_code == 400
