"""Board sockets: a hall screen (a device token, no cookie) is served beside Litestar's
stack, staff watching a board with their session cookie through the route; both are told
the same, counted the same, refused the same and closed when their access ends — on a busy
hall too, where no quiet spell ever prompts a check. Real servers, the ``websockets``
client, no mocks."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from litestar import Litestar
from websockets.asyncio.client import ClientConnection

from queue_server.app import create_app
from queue_server.realtime import boards
from queue_server.settings import load_settings
from tests.e2e.test_live_feeds import issue, sqlite_hall
from tests.e2e.test_sessions import closed_with, cookie_only, sign_in
from tests.servers import (
    Server,
    load_demo_without_printer,
    port_of,
    served_in_process,
    server_env,
)

pytestmark = pytest.mark.slow
__all__ = ["sqlite_hall"]
FEEDS_OPEN = re.compile(r"^onedoor_websocket_clients (\S+)$", re.MULTILINE)


async def next_message(socket: ClientConnection, kind: str) -> dict[str, Any]:
    """The next message of type ``kind`` (pings and others before it are dropped)."""
    while True:
        message = json.loads(await asyncio.wait_for(socket.recv(), 5))
        if message["type"] == kind:
            return message  # type: ignore[no-any-return]


async def feeds_open(base: str) -> int:
    async with httpx.AsyncClient(base_url=base) as http:
        found = FEEDS_OPEN.search((await http.get("/metrics")).text)
    assert found is not None
    return int(float(found[1]))


async def until_feeds_open(base: str, count: int) -> None:
    """Until the server counts ``count`` open feeds (a closed socket is let go as the server
    reads its close): asked again at once, bounded only for a failure."""
    deadline = time.monotonic() + 10
    while (now := await feeds_open(base)) != count:
        assert time.monotonic() < deadline, f"{now} feeds open, not {count}"


async def refused(url: str, headers: dict[str, str] | None = None) -> int:
    with pytest.raises(websockets.exceptions.InvalidStatus) as refusal:
        await websockets.connect(url, proxy=None, additional_headers=headers or {})
    return int(refusal.value.response.status_code)


async def handshake_status(port: int, path: str, host: str) -> int:
    """The status a websocket handshake with this ``Host`` header is answered with (sent
    by hand: client libraries will not send a malformed one)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n".encode())  # fmt: skip
    status = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    return int(status.split()[1])


async def test_a_screen_and_a_manager_see_the_same_board_and_are_counted_alike(
    sqlite_hall: tuple[Server, dict[str, str]],
) -> None:
    server, creds = sqlite_hall
    manager, _ = sign_in(server.base, "manager", creds["manager"])
    url = f"{server.ws}/ws/halls/1/board"
    assert await feeds_open(server.base) == 0
    async with (
        # The screen's token in the URL (as board pages send it) and in the header.
        websockets.connect(f"{url}?token={creds['board']}", proxy=None) as in_url,
        websockets.connect(url, proxy=None,
                           additional_headers={"Authorization": f"Bearer {creds['board']}"}) as in_header,
        websockets.connect(url, proxy=None, additional_headers=cookie_only(manager)) as desk,
    ):  # fmt: skip
        sockets = (in_url, in_header, desk)
        first = [await next_message(s, "snapshot") for s in sockets]
        assert first[0] == first[1] == first[2]
        assert await feeds_open(server.base) == 3

        ticket = await issue(server.base, creds["kiosk"])
        told = [await next_message(s, "event") for s in sockets]
        assert told[0] == told[1] == told[2]
        assert told[0]["event"]["name"] == "TicketIssued"
        assert told[0]["event"]["number"] == ticket["number"]
        assert told[0]["seq"] == first[0]["seq"] + 1

        # A screen coming back after a drop asks for what it missed, and gets just that.
        async with websockets.connect(
            f"{url}?token={creds['board']}&since={first[0]['seq']}", proxy=None
        ) as resumed:
            assert await next_message(resumed, "event") == told[0]
    await until_feeds_open(server.base, 0)


async def test_what_a_screen_may_not_open_is_refused_as_the_route_refuses_it(
    sqlite_hall: tuple[Server, dict[str, str]],
) -> None:
    server, creds = sqlite_hall
    board = f"{server.ws}/ws/halls/1/board"
    assert await refused(f"{board}?token=forged") == 403
    assert await refused(f"{server.ws}/ws/halls/2/board?token={creds['board']}") == 403
    assert await refused(f"{board}?token={creds['kiosk']}") == 403  # a kiosk is no board
    manager, _ = sign_in(server.base, "manager", creds["manager"])
    elsewhere = {**cookie_only(manager), "Origin": "https://elsewhere.example"}
    assert await refused(board, elsewhere) == 403  # staff only from our own pages
    for since in ("-1", "soon"):
        # Not a sequence number: the route's own validation refuses it.
        assert await refused(f"{board}?token={creds['board']}&since={since}") == 403
    # A Host no browser would send: the router refuses it, whatever the token.
    path = f"/ws/halls/1/board?token={creds['board']}"
    assert await handshake_status(server.port, path, f"127.0.0.1:{server.port}") == 101
    assert await handshake_status(server.port, path, "evil<host>") == 403
    await until_feeds_open(server.base, 0)


async def signed_in(base: str, username: str, password: str) -> dict[str, str]:
    """Headers carrying a fresh session (cookie and CSRF token)."""
    async with httpx.AsyncClient(base_url=base) as http:
        answer = await http.post("/api/auth/login",
                                 json={"username": username, "password": password})  # fmt: skip
    assert answer.status_code == 200, answer.text
    cookie = "; ".join(f"{k}={v}" for k, v in answer.cookies.items())
    return {"Cookie": cookie, "X-CSRF-Token": answer.json()["csrf_token"]}


@contextlib.asynccontextmanager
async def served_here(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[str, Litestar]]:
    """The app configured by ``env``, served by uvicorn in this process (as ``onedoor
    serve`` serves it): its address, and the app."""
    import os

    for name in os.environ:
        if name.startswith("ONEDOOR_") and name not in env:
            monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("ONEDOOR_"):
            monkeypatch.setenv(name, value)
    app = create_app(load_settings())
    async with served_in_process(app) as server:
        yield f"127.0.0.1:{port_of(server)}", app


@pytest.mark.postgres
async def test_without_news_of_changes_a_busy_board_still_checks_its_access(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Processes sharing PostgreSQL without Redis hear of no change: every open board checks
    its access again on its own, every ``RECHECK_SECONDS`` (shortened here) — also while
    events keep coming, so that it never falls quiet long enough to ping."""
    env = server_env(tmp_path / "var", pg_url)
    env.pop("ONEDOOR_REDIS_URL", None)
    creds = load_demo_without_printer(env)
    monkeypatch.setattr(boards, "RECHECK_SECONDS", 0.5)
    async with served_here(env, monkeypatch) as (address, _):
        base, ws = f"http://{address}", f"ws://{address}"
        # (The server runs in this event loop: every client here is asynchronous.)
        manager = await signed_in(base, "manager", creds["manager"])
        watching = await signed_in(base, "manager", creds["manager"])
        url = f"{ws}/ws/halls/1/board"
        async with (
            websockets.connect(f"{url}?token={creds['board']}", proxy=None) as screen,
            websockets.connect(url, proxy=None, additional_headers=cookie_only(watching)) as desk,
        ):
            await next_message(screen, "snapshot")
            await next_message(desk, "snapshot")

            async def keep_issuing() -> None:
                while True:
                    await issue(base, creds["kiosk"])
                    await asyncio.sleep(0.1)

            busy = asyncio.create_task(keep_issuing())
            try:
                await next_message(screen, "event")  # the hall is busy
                async with httpx.AsyncClient(base_url=base, headers=manager) as http:
                    devices = (await http.get("/api/halls/1/devices")).json()
                    board_id = next(d["id"] for d in devices if d["kind"] == "board")
                    revoked = await http.delete(f"/api/halls/1/devices/{board_id}")
                    assert revoked.status_code == 200, revoked.text
                    assert await closed_with(screen) == 4401
                    # The watching manager's session ends: signed out everywhere.
                    ended = await http.post("/api/auth/logout-everywhere")
                    assert ended.status_code in (200, 204), ended.text
                    assert await closed_with(desk) == 4401
            finally:
                busy.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await busy


async def test_a_screen_is_served_beside_the_stack_and_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What keeps a board socket small: a screen's socket never enters Litestar's router
    and middleware (a manager's, with a cookie, does). However each ends — closed, cut off,
    its access ended — the process lets go of everything it held for it."""
    env = server_env(tmp_path / "var", f"sqlite+aiosqlite:///{tmp_path / 'hall.sqlite3'}")
    creds = load_demo_without_printer(env)
    beside: list[int] = []  # the halls of the sockets served beside the stack
    serve = boards.serve_board

    async def watched(connection: Any, receive: Any, send: Any, hub: Any, since: Any) -> None:
        beside.append(hub.hall_id)
        await serve(connection, receive, send, hub, since)

    # The route calls the loop by its own name (feeds.serve_board): only sockets met
    # beside the stack come through this one.
    monkeypatch.setattr(boards, "serve_board", watched)
    async with served_here(env, monkeypatch) as (address, app):
        base, ws = f"http://{address}", f"ws://{address}"
        manager = await signed_in(base, "manager", creds["manager"])
        url = f"{ws}/ws/halls/1/board"
        header = {"Authorization": f"Bearer {creds['board']}"}
        closing = await websockets.connect(f"{url}?token={creds['board']}", proxy=None)
        cut = await websockets.connect(url, proxy=None, additional_headers=header)
        desk = await websockets.connect(url, proxy=None, additional_headers=cookie_only(manager))
        for socket in (closing, cut, desk):
            await next_message(socket, "snapshot")
        assert beside == [1, 1]  # both screens beside the stack; the desk through the route
        assert await feeds_open(base) == 3
        assert len(app.state.access_watch) == 3 and len(app.state.hubs) == 1

        await closing.close()
        cut.transport.abort()  # gone without a word, as a screen losing power
        async with httpx.AsyncClient(base_url=base, headers=manager) as http:
            ended = await http.post("/api/auth/logout-everywhere")
            assert ended.status_code == 200, ended.text
        assert await closed_with(desk) == 4401
        await until_feeds_open(base, 0)
        assert len(app.state.access_watch) == 0
        assert len(app.state.hubs) == 0
