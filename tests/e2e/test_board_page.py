"""The board page in headless Chromium: a clerk's call shows within a blink, is announced,
and the page recovers by itself when the server restarts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.e2e.pages import SHOTS, browser
from tests.e2e.test_live_feeds import Clerk, issue
from tests.servers import Server, load_demo_without_printer, server_env

__all__ = ["browser"]
pytestmark = pytest.mark.slow


@pytest.fixture
def hall(tmp_path: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    env = server_env(tmp_path / "var", f"sqlite+aiosqlite:///{tmp_path / 'hall.sqlite3'}")
    creds = load_demo_without_printer(env)
    server = Server(env).start()
    yield server, creds
    server.stop()


@pytest.mark.parametrize(("width", "height"), [(1920, 1080), (412, 915)])
async def test_the_board_shows_and_announces_a_call(
    browser: Any, hall: tuple[Server, dict[str, str]], width: int, height: int
) -> None:
    server, creds = hall
    page = await browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{server.base}/board/1?token={creds['board']}")
    await page.wait_for_function("() => window.onedoorBoard && window.onedoorBoard.seq !== null")
    assert await page.locator("h1").inner_text() == "示范政务服务中心 Demo Service Centre"
    assert await page.locator("#counters li").count() == 8

    await issue(server.base, creds["kiosk"])
    async with Clerk(server.base, creds["clerk"]) as clerk:
        await clerk.do(1, "open")
        clicked = time.monotonic()
        await clerk.do(1, "call-next")
        await page.wait_for_function(
            "() => document.querySelector('#now .number')?.textContent === 'A001'", timeout=3000
        )
        shown_after = time.monotonic() - clicked
    assert shown_after < 1.5, f"the call took {shown_after:.2f} s to show"
    now = await page.locator("#now").inner_text()
    assert "请到 1 号窗口" in now and "Counter 1" in now
    assert await page.locator("#now").get_attribute("role") == "status"
    tile = page.locator("#counters li[data-counter='1'] .ticket")
    assert await tile.inner_text() == "A001"
    await page.wait_for_function("() => window.onedoorBoard.spoken.includes('A001')", timeout=3000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"board-{width}x{height}.png"))
    assert errors == []


async def test_the_board_recovers_when_the_server_restarts(
    browser: Any, hall: tuple[Server, dict[str, str]]
) -> None:
    server, creds = hall
    page = await browser.new_page(viewport={"width": 1280, "height": 720})
    await page.goto(f"{server.base}/board/1?token={creds['board']}")
    await page.wait_for_function("() => window.onedoorBoard && window.onedoorBoard.seq !== null")
    server.kill()
    await page.wait_for_function(
        "() => document.getElementById('link').textContent.includes('Reconnecting')", timeout=5000
    )
    server.start()  # same port, same database
    await issue(server.base, creds["kiosk"])
    async with Clerk(server.base, creds["clerk"]) as clerk:
        await clerk.do(1, "open")
        await clerk.do(1, "call-next")
    await page.wait_for_function(
        "() => document.querySelector('#now .number')?.textContent === 'A001'", timeout=15000
    )
    assert await page.locator("#link").inner_text() == ""


def test_the_board_page_needs_a_board_token(hall: tuple[Server, dict[str, str]]) -> None:
    server, creds = hall
    assert httpx.get(f"{server.base}/board/1").status_code == 401
    assert httpx.get(f"{server.base}/board/1?token={creds['kiosk']}").status_code == 403
    speech = httpx.get(
        f"{server.base}/api/halls/1/speech",
        params={"number": "A001", "counter": 1, "lang": "zh", "token": creds["board"]},
    )
    if speech.status_code == 200:
        assert speech.headers["content-type"] == "audio/wav"
        assert speech.content[:4] == b"RIFF"
    else:
        assert speech.status_code == 503
        assert "no server speech" in speech.json()["detail"]


async def test_the_board_keeps_the_halls_time_and_shows_every_matter_waiting(
    browser: Any, hall: tuple[Server, dict[str, str]]
) -> None:
    """A screen whose computer is set to another time zone still shows the hall's clock;
    on a 1920×1080 board every matter's waiting line is on the screen."""
    server, creds = hall
    context = await browser.new_context(
        viewport={"width": 1920, "height": 1080}, timezone_id="America/New_York"
    )
    page = await context.new_page()
    await page.goto(f"{server.base}/board/1?token={creds['board']}")
    await page.wait_for_function("() => window.onedoorBoard && window.onedoorBoard.seq !== null")
    shanghai = ZoneInfo("Asia/Shanghai")
    shown = await page.locator("#clock-time").inner_text()
    now = datetime.now(shanghai)
    # The board ticks every second (later on a busy machine): the hall's time within a few
    # seconds, where the screen's own zone is 12 or 13 hours away.
    hours, minutes, seconds = (int(part) for part in shown.split(":"))
    behind = (now.hour * 3600 + now.minute * 60 + now.second) - (
        hours * 3600 + minutes * 60 + seconds
    )
    lag = behind % 86400  # seconds the board is behind, across midnight too
    assert lag <= 10 or lag >= 86400 - 2, (
        f"the board shows {shown}, the hall's time is {now:%H:%M:%S}"
    )

    # Eight calls: the recent calls list is full.
    for _ in range(8):
        await issue(server.base, creds["kiosk"])
    async with Clerk(server.base, creds["clerk"]) as clerk:
        await clerk.do(1, "open")
        for _ in range(8):
            await clerk.do(1, "call-next")
            await clerk.do(1, "no-show")
    await page.wait_for_function(
        "() => window.onedoorBoard.seq >= 0 && "
        "document.querySelector('#recent li .num')?.textContent === 'A008'"
    )
    side = await page.locator(".side").bounding_box()
    assert side is not None
    rows = page.locator("#waiting li")
    snapshot = httpx.get(
        f"{server.base}/api/halls/1/snapshot", headers={"Authorization": f"Bearer {creds['board']}"}
    ).json()
    matters = len(snapshot["waiting"])
    assert matters >= 6, snapshot["waiting"]
    await page.wait_for_function(
        f"() => document.querySelectorAll('#waiting li').length === {matters}"
    )
    for n in range(matters):
        box = await rows.nth(n).bounding_box()
        assert box is not None and box["height"] > 0, f"waiting row {n} has no room"
        assert box["y"] + box["height"] <= min(1080, side["y"] + side["height"]) + 1, (
            f"waiting row {n} is cut off"
        )
        assert await rows.nth(n).is_visible()
    await page.screenshot(path=str(SHOTS / "board-waiting-1920x1080.png"))
    await context.close()
