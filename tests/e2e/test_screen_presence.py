"""Kiosks and boards say they are there; staff are told when one goes silent.

A real server process with ``ONEDOOR_SCREEN_SILENT_SECONDS=1.5`` (instead of 120), the
demo hall's kiosk and board tokens, and the pages in Chromium: the kiosk and board pages'
own heartbeats, then the counter console telling the clerk, in Chinese, that it went away.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from tests.e2e.pages import browser, new_page  # noqa: F401 - the browser fixture
from tests.e2e.test_counter_page import Staff, sign_in
from tests.servers import Server, load_demo_without_printer, server_env

pytestmark = pytest.mark.slow
SILENT = 1.5
KIOSK = "大厅取号机 Kiosk 1"
BOARD = "大厅显示屏 Board 1"


@pytest.fixture
def hall(tmp_path: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    env = server_env(tmp_path / "var", f"sqlite+aiosqlite:///{tmp_path / 'hall.sqlite3'}")
    env["ONEDOOR_SCREEN_SILENT_SECONDS"] = str(SILENT)
    creds = load_demo_without_printer(env)
    server = Server(env).start()
    yield server, creds
    output = server.stop()
    assert "Traceback" not in output, output


def beat(server: Server, token: str) -> httpx.Response:
    return httpx.post(
        f"{server.base}/api/devices/heartbeat", headers={"Authorization": f"Bearer {token}"}
    )


def alerts(server: Server, creds: dict[str, str]) -> list[tuple[str, str, str]]:
    answer = httpx.get(
        f"{server.base}/api/halls/1/alerts", headers={"Authorization": f"Bearer {creds['board']}"}
    )
    assert answer.status_code == 200, answer.text
    return [(a["kind"], a["name"], a["problem"]) for a in answer.json()]


def test_a_silent_kiosk_or_board_is_an_alert_until_it_beats_again(
    hall: tuple[Server, dict[str, str]],
) -> None:
    server, creds = hall
    # Registered but never set up: not reported.
    assert alerts(server, creds) == []
    answer = beat(server, creds["kiosk"])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    # Four beats within the silence that counts (30 s apart with the default 120 s).
    assert body["next_in_seconds"] == SILENT / 4 and body["silent_after_seconds"] == SILENT
    assert alerts(server, creds) == []  # just seen
    assert beat(server, creds["board"]).status_code == 200
    time.sleep(SILENT + 0.5)
    assert alerts(server, creds) == [
        ("kiosk", KIOSK, "kiosk offline"),
        ("board", BOARD, "board offline"),
    ]
    assert beat(server, creds["kiosk"]).status_code == 200
    assert alerts(server, creds) == [("board", BOARD, "board offline")]


def test_only_kiosks_and_boards_send_heartbeats(hall: tuple[Server, dict[str, str]]) -> None:
    server, _ = hall
    stranger = httpx.post(f"{server.base}/api/devices/heartbeat")
    assert stranger.status_code == 401, stranger.text
    wrong = beat(server, "not-a-token")
    assert wrong.status_code == 401 and "unknown or revoked" in wrong.json()["detail"]


async def test_the_kiosk_page_beats_and_the_counter_says_when_it_went_away(
    browser: Any,  # noqa: F811 - the fixture
    hall: tuple[Server, dict[str, str]],
) -> None:
    server, creds = hall
    kiosk = await new_page(browser, "desktop", "zh_CN")
    await kiosk.goto(f"{server.base}/kiosk/1?token={creds['kiosk']}")
    board = await new_page(browser, "desktop", "zh_CN")
    await board.goto(f"{server.base}/board/1?token={creds['board']}")

    async def last_seen(kind: str) -> Any:
        async with Staff(server.base, "manager", creds["manager"]) as manager:
            devices = (await manager.http.get("/api/halls/1/devices")).json()
        return next(d["last_seen_at"] for d in devices if d["kind"] == kind)

    for kind in ("kiosk", "board"):
        deadline = time.monotonic() + 10
        while await last_seen(kind) is None:
            assert time.monotonic() < deadline, f"the {kind} page sent no heartbeat"
            time.sleep(0.1)
    # Open, they keep beating: nothing to report even after the silence that would count.
    time.sleep(SILENT + 0.5)
    assert alerts(server, creds) == []
    page = await new_page(browser, "desktop", "zh_CN")
    await sign_in(page, server, creds["clerk"], lang="zh_CN")
    await expect(page.locator("#alerts")).to_be_hidden()  # the kiosk is there
    await kiosk.context.close()  # switched off
    time.sleep(SILENT + 0.5)
    await page.reload()
    await expect(page.locator("#alert-list li")).to_have_text([f"{KIOSK}：取号机离线"])
    await board.context.close()
