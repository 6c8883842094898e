"""Staff sessions live on the server: signing out ends the session (a copied cookie with
it), "sign out everywhere" ends all of a user's, a password change ends the others, and a
deactivation, a password reset or a device's revocation closes the open live feeds at once —
in one process on SQLite, and across two processes sharing PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from litestar.testing import AsyncTestClient
from playwright.async_api import expect
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection

from queue_server.db.tables import StaffSessionRow
from queue_server.service.bus import Bus
from queue_server.service.unit_of_work import UnitOfWork
from tests.e2e.pages import axe_check, browser, new_page
from tests.e2e.test_admin_pages import sign_in as admin_sign_in
from tests.e2e.test_counter_page import sign_in as counter_sign_in
from tests.servers import Server, load_demo_without_printer, server_env, two_servers_own_redis
from tests.support import Staff, build_hall, call_as, login

__all__ = ["browser"]
ME = "/api/auth/me"


async def test_a_copied_cookie_is_refused_once_its_session_signed_out(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await build_hall(client, bus, clerks=1)
    clerk = hall.clerks[0]
    copy = Staff(httpx.Cookies(clerk.cookies), clerk.csrf, clerk.user_id)
    assert (await call_as(client, copy, "GET", ME)).status_code == 200
    out = await call_as(client, clerk, "POST", "/api/auth/logout")
    assert out.status_code == 200, out.text
    refused = await call_as(client, copy, "GET", ME)
    assert refused.status_code == 401
    assert "sign in" in refused.json()["detail"]
    # Signing in again makes a new session; the old cookie stays refused.
    again = await login(client, "clerk0", "clerk0-password")
    assert (await call_as(client, again, "GET", ME)).status_code == 200
    assert (await call_as(client, copy, "GET", ME)).status_code == 401


async def test_sign_out_everywhere_ends_every_session_of_that_user_only(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await build_hall(client, bus, clerks=2)
    office = await login(client, "clerk0", "clerk0-password")
    phone = await login(client, "clerk0", "clerk0-password")
    other = hall.clerks[1]
    listed = await call_as(client, office, "GET", "/api/auth/sessions")
    assert listed.status_code == 200, listed.text
    # Newest first: the phone's, the office's (this one), the one build_hall signed in.
    assert [s["current"] for s in listed.json()] == [False, True, False]

    ended = await call_as(client, office, "POST", "/api/auth/logout-everywhere")
    assert ended.status_code == 200, ended.text
    assert ended.json()["detail"] == "signed out of 3 sessions"
    for gone in (office, phone, hall.clerks[0]):
        assert (await call_as(client, gone, "GET", ME)).status_code == 401
    assert (await call_as(client, other, "GET", ME)).status_code == 200
    assert (await call_as(client, hall.manager, "GET", ME)).status_code == 200


async def test_changing_ones_password_ends_the_other_sessions_and_keeps_this_one(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await build_hall(client, bus, clerks=1)
    here, elsewhere = hall.clerks[0], await login(client, "clerk0", "clerk0-password")
    url = "/api/auth/password"

    wrong = await call_as(
        client, here, "POST", url,
        json={"current_password": "not-it-at-all", "new_password": "a-much-better-one"},
    )  # fmt: skip
    assert wrong.status_code == 403 and "current password is wrong" in wrong.json()["detail"]
    short = await call_as(
        client, here, "POST", url,
        json={"current_password": "clerk0-password", "new_password": "short"},
    )  # fmt: skip
    assert short.status_code == 400
    assert (await call_as(client, elsewhere, "GET", ME)).status_code == 200, "nothing changed"
    no_csrf = await call_as(
        client, here, "POST", url, headers={"X-CSRF-Token": ""},
        json={"current_password": "clerk0-password", "new_password": "a-much-better-one"},
    )  # fmt: skip
    assert no_csrf.status_code == 403

    changed = await call_as(
        client, here, "POST", url,
        json={"current_password": "clerk0-password", "new_password": "a-much-better-one"},
    )  # fmt: skip
    assert changed.status_code == 200, changed.text
    assert changed.json()["detail"] == "password changed; 1 other session ended"
    assert (await call_as(client, here, "GET", ME)).status_code == 200
    assert (await call_as(client, elsewhere, "GET", ME)).status_code == 401
    old = await client.post(
        "/api/auth/login", json={"username": "clerk0", "password": "clerk0-password"}
    )
    assert old.status_code == 401
    assert (await login(client, "clerk0", "a-much-better-one")).user_id == here.user_id


# ---- open live feeds, on real servers ------------------------------------------------


def sign_in(base: str, username: str, password: str) -> tuple[dict[str, str], int]:
    """Headers carrying a fresh session (cookie and CSRF token), and the user's id."""
    answer = httpx.post(f"{base}/api/auth/login", json={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    cookie = "; ".join(f"{k}={v}" for k, v in answer.cookies.items())
    headers = {"Cookie": cookie, "X-CSRF-Token": answer.json()["csrf_token"]}
    return headers, answer.json()["user"]["user_id"]


@contextlib.asynccontextmanager
async def opened(
    url: str, headers: dict[str, str] | None = None
) -> AsyncIterator[ClientConnection]:
    socket = await websockets.connect(
        url, proxy=None, open_timeout=5, additional_headers=headers or {}
    )
    try:
        first = await asyncio.wait_for(socket.recv(), 5)
        assert '"snapshot"' in str(first)
        yield socket
    finally:
        await socket.close()


async def closed_with(socket: ClientConnection, timeout: float = 10.0) -> int | None:
    """The code the server closed the socket with (what comes before it is read and
    dropped: snapshots, updates, pings)."""
    with contextlib.suppress(websockets.exceptions.ConnectionClosed):
        async with asyncio.timeout(timeout):
            while True:
                await socket.recv()
    return socket.close_code


def cookie_only(headers: dict[str, str]) -> dict[str, str]:
    return {"Cookie": headers["Cookie"]}


async def feeds_end_when_access_does(writer: Server, reader: Server, creds: dict[str, str]) -> None:
    """Feeds opened on ``reader``; the changes made through ``writer``."""
    manager, _ = sign_in(writer.base, "manager", creds["manager"])
    clerk, clerk_id = sign_in(reader.base, "clerk", creds["clerk"])
    bystander, _ = sign_in(reader.base, "manager", creds["manager"])
    counter = f"{reader.ws}/ws/counters/1"

    # The clerk signs out everywhere (from the other process): the console closes.
    async with (
        opened(counter, cookie_only(clerk)) as console,
        opened(counter, cookie_only(bystander)) as watching,
    ):
        again, _ = sign_in(writer.base, "clerk", creds["clerk"])
        out = httpx.post(f"{writer.base}/api/auth/logout-everywhere", headers=again)
        assert out.status_code == 200, out.text
        assert await closed_with(console) == 4401
        # The manager's console on the same counter goes on.
        pong = await watching.ping()
        await asyncio.wait_for(pong, 5)

    # A password reset by the manager closes the clerk's new console.
    clerk, _ = sign_in(reader.base, "clerk", creds["clerk"])
    async with opened(counter, cookie_only(clerk)) as console:
        reset = httpx.patch(
            f"{writer.base}/api/halls/1/staff/{clerk_id}", headers=manager,
            json={"password": "a-brand-new-password"},
        )  # fmt: skip
        assert reset.status_code == 200, reset.text
        assert await closed_with(console) == 4401

    # A deactivation too; and the clerk cannot open it again.
    clerk, _ = sign_in(reader.base, "clerk", "a-brand-new-password")
    async with opened(counter, cookie_only(clerk)) as console:
        gone = httpx.patch(
            f"{writer.base}/api/halls/1/staff/{clerk_id}", headers=manager, json={"active": False}
        )
        assert gone.status_code == 200, gone.text
        assert await closed_with(console) == 4401
    with pytest.raises(websockets.exceptions.InvalidStatus):
        await websockets.connect(counter, proxy=None, additional_headers=cookie_only(clerk))

    # The board's device is revoked: its feed closes.
    async with opened(f"{reader.ws}/ws/halls/1/board?token={creds['board']}") as board:
        devices = httpx.get(f"{writer.base}/api/halls/1/devices", headers=manager).json()
        board_id = next(d["id"] for d in devices if d["kind"] == "board")
        revoked = httpx.delete(f"{writer.base}/api/halls/1/devices/{board_id}", headers=manager)
        assert revoked.status_code == 200, revoked.text
        assert await closed_with(board) == 4401


@pytest.fixture
def one_process(tmp_path: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    env = server_env(tmp_path / "var", f"sqlite+aiosqlite:///{tmp_path / 'hall.sqlite3'}")
    creds = load_demo_without_printer(env)
    server = Server(env).start()
    yield server, creds
    output = server.stop()
    assert "Traceback" not in output, output


@pytest.mark.slow
async def test_open_feeds_close_when_their_access_ends(
    one_process: tuple[Server, dict[str, str]],
) -> None:
    server, creds = one_process
    await feeds_end_when_access_does(server, server, creds)


@pytest.fixture
def two_processes(tmp_path: Path, pg_url: str) -> Iterator[tuple[Server, Server, dict[str, str]]]:
    with two_servers_own_redis(tmp_path / "var", pg_url) as (a, b, creds, logs):
        yield a, b, creds
    for output in logs:
        assert "Traceback" not in output, output


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
async def test_open_feeds_close_when_access_ends_in_another_process(
    two_processes: tuple[Server, Server, dict[str, str]],
) -> None:
    writer, reader, creds = two_processes
    await feeds_end_when_access_does(writer, reader, creds)


@pytest.mark.slow
async def test_pages_follow_an_ended_session_and_a_revoked_board(
    browser: Any, one_process: tuple[Server, dict[str, str]]
) -> None:
    server, creds = one_process
    page = await new_page(browser, "desktop", "en")
    await counter_sign_in(page, server, creds["clerk"])
    # The clerk signs out everywhere from another browser: the console goes to sign-in.
    elsewhere, _ = sign_in(server.base, "clerk", creds["clerk"])
    out = httpx.post(f"{server.base}/api/auth/logout-everywhere", headers=elsewhere)
    assert out.status_code == 200, out.text
    await expect(page.locator("#username")).to_be_visible()
    await expect(page.locator("#error")).to_contain_text("Your session has ended")

    board = await browser.new_page(viewport={"width": 1920, "height": 1080})
    await board.goto(f"{server.base}/board/1?token={creds['board']}")
    await board.wait_for_function("() => window.onedoorBoard && window.onedoorBoard.seq !== null")
    manager, _ = sign_in(server.base, "manager", creds["manager"])
    devices = httpx.get(f"{server.base}/api/halls/1/devices", headers=manager).json()
    board_id = next(d["id"] for d in devices if d["kind"] == "board")
    revoked = httpx.delete(f"{server.base}/api/halls/1/devices/{board_id}", headers=manager)
    assert revoked.status_code == 200, revoked.text
    await expect(board.locator("#link")).to_contain_text("This screen's access was revoked")


@pytest.mark.slow
async def test_a_manager_signs_out_everywhere_from_the_admin_page(
    browser: Any, one_process: tuple[Server, dict[str, str]]
) -> None:
    server, creds = one_process
    office = await new_page(browser, "desktop", "zh_CN")
    home = await new_page(browser, "desktop", "en")
    await admin_sign_in(office, server, creds["manager"], lang="zh_CN")
    await admin_sign_in(home, server, creds["manager"])
    await office.get_by_role("button", name="在所有浏览器上退出").click()
    await expect(office.locator("#signin-note")).to_have_text("您已在所有浏览器上退出登录。")
    await axe_check(office, "admin: signed out everywhere, zh")
    # The other browser's dashboard feed closes; its next step finds the session ended,
    # whether it is the manager's (opening another section) or the dashboard's own read
    # again (every 5 s while its feed is down), which may come first on a slow machine and
    # hide the sections: so the step is taken by the address, which works either way.
    await home.evaluate("() => { location.hash = '#staff'; }")
    await expect(home.locator("#signin-note")).to_contain_text("Your session has ended")
    await expect(home.locator("#app")).to_be_hidden()


# ---- sign-in throttling and the client's address -------------------------------------


async def test_failed_sign_ins_are_throttled_per_account_and_per_address(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await build_hall(client, bus, clerks=2)

    async def try_as(username: str, password: str) -> httpx.Response:
        return await client.post(
            "/api/auth/login", json={"username": username, "password": password}
        )

    # Four failures, then the right password: the count starts again.
    for _ in range(4):
        assert (await try_as("clerk0", "guess-guess")).status_code == 401
    assert (await try_as("clerk0", "clerk0-password")).status_code == 200
    for _ in range(5):
        assert (await try_as("clerk0", "guess-guess")).status_code == 401
    # Past five failures the account is held, even with the right password.
    held = await try_as("clerk0", "clerk0-password")
    assert held.status_code == 429, held.text
    assert "too many failed sign-ins" in held.json()["detail"]
    assert 0 < int(held.headers["Retry-After"]) <= 900
    assert (await try_as("CLERK0 ", "clerk0-password")).status_code == 429, "same account"
    # Another account from the same address still signs in; the held one's session too.
    assert (await try_as("clerk1", "clerk1-password")).status_code == 200
    assert (await call_as(client, hall.clerks[0], "GET", ME)).status_code == 200

    # Guessing across many accounts from one address: the address is held at 30 failures
    # (nine so far; refusals while held are not counted).
    for n in range(30 - 9):
        assert (await try_as(f"nobody{n}", "guess-guess")).status_code == 401
    address_held = await try_as("manager", "manager-password")
    assert address_held.status_code == 429


@pytest.fixture
def behind_a_proxy(tmp_path: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    here = tmp_path / "behind-a-proxy"  # its own hall, beside one_process's
    env = server_env(here / "var", f"sqlite+aiosqlite:///{here / 'hall.sqlite3'}")
    env["ONEDOOR_TRUSTED_PROXIES"] = "127.0.0.1"
    creds = load_demo_without_printer(env)
    server = Server(env).start()
    yield server, creds
    output = server.stop()
    assert "Traceback" not in output, output


def session_address(base: str, password: str, forwarded: str) -> str:
    headers, _ = sign_in_via(base, "manager", password, {"X-Forwarded-For": forwarded})
    listed = httpx.get(f"{base}/api/auth/sessions", headers=headers).json()
    return str(next(s["address"] for s in listed if s["current"]))


def sign_in_via(
    base: str, username: str, password: str, extra: dict[str, str]
) -> tuple[dict[str, str], int]:
    answer = httpx.post(
        f"{base}/api/auth/login", json={"username": username, "password": password}, headers=extra
    )
    assert answer.status_code == 200, answer.text
    cookie = "; ".join(f"{k}={v}" for k, v in answer.cookies.items())
    return {"Cookie": cookie, "X-CSRF-Token": answer.json()["csrf_token"]}, 0


@pytest.mark.slow
def test_x_forwarded_for_counts_only_from_a_trusted_proxy(
    one_process: tuple[Server, dict[str, str]],
    behind_a_proxy: tuple[Server, dict[str, str]],
) -> None:
    direct, creds = one_process
    assert session_address(direct.base, creds["manager"], "198.51.100.1") == "127.0.0.1"
    proxied, creds = behind_a_proxy
    assert session_address(proxied.base, creds["manager"], "1.2.3.4, 198.51.100.1") == (
        "198.51.100.1"
    )


async def test_pages_carry_a_content_security_policy_and_every_answer_the_usual_headers(
    client: AsyncTestClient[Any],
) -> None:
    for path in ("/counter", "/admin", "/book"):
        page = await client.get(path)
        assert page.status_code == 200, path
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["x-frame-options"] == "DENY"
    docs = await client.get("/schema/swagger")
    assert docs.status_code == 200
    assert "content-security-policy" not in docs.headers, "Swagger UI starts inline"
    api = await client.get("/api/public/halls")
    assert api.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in api.headers
    assert "strict-transport-security" not in api.headers  # plain HTTP here


async def test_a_session_past_its_twelve_hours_is_refused(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await build_hall(client, bus, clerks=1)
    clerk = hall.clerks[0]
    assert (await call_as(client, clerk, "GET", ME)).status_code == 200

    async def age(uow: UnitOfWork) -> None:
        rows = await uow.session.scalars(
            select(StaffSessionRow).where(StaffSessionRow.user_id == clerk.user_id)
        )
        for row in rows:
            row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        await uow.commit()

    await bus.run(age)
    assert (await call_as(client, clerk, "GET", ME)).status_code == 401
    assert (await call_as(client, hall.manager, "GET", ME)).status_code == 200
