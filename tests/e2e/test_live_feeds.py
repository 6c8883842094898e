"""Live feeds against real server processes, with the ``websockets`` client, no mocks."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import websockets
from websockets.exceptions import InvalidStatus

from tests.servers import (
    ONEDOOR,
    PrivateRedis,
    Server,
    load_demo_without_printer,
    onedoor,
    server_env,
)
from tests.support import ALL_DAY

pytestmark = pytest.mark.slow


class Feed:
    """A websocket feed client that keeps every message it gets."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []

    async def next(self, timeout: float = 5.0, skip_pings: bool = True) -> dict[str, Any]:
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            self.messages.append(message)
            if not (skip_pings and message["type"] == "ping"):
                return message

    async def until(self, check: Any, timeout: float = 5.0) -> dict[str, Any]:
        """The first message for which ``check(message)`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            message = await self.next(max(0.05, deadline - time.monotonic()))
            if check(message):
                return message


async def feed(url: str) -> Feed:
    return Feed(await websockets.connect(url, proxy=None, open_timeout=5))


class Clerk:
    def __init__(self, base: str, password: str, username: str = "clerk") -> None:
        self.http = httpx.AsyncClient(base_url=base, timeout=10)
        self.username, self.password = username, password

    async def __aenter__(self) -> Clerk:
        answer = await self.http.post(
            "/api/auth/login", json={"username": self.username, "password": self.password}
        )
        assert answer.status_code == 200, answer.text
        self.http.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def do(self, counter: int, action: str, **body: Any) -> dict[str, Any]:
        answer = await self.http.post(f"/api/counters/{counter}/{action}", json=body or None)
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]


async def issue(base: str, kiosk: str, service_id: int = 1) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base) as http:
        answer = await http.post(
            "/api/halls/1/tickets",
            json={"service_id": service_id},
            headers={"Authorization": f"Bearer {kiosk}"},
        )
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def snapshot(base: str, board: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base) as http:
        answer = await http.get(
            "/api/halls/1/snapshot", headers={"Authorization": f"Bearer {board}"}
        )
    return answer.json()  # type: ignore[no-any-return]


def waiting_counts(board: dict[str, Any]) -> dict[str, int]:
    return {m["prefix"]: m["waiting"] for m in board["matters"]}


@pytest.fixture
def sqlite_hall(tmp_path: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    """The demo hall on SQLite, served by one process."""
    env = server_env(tmp_path / "var", f"sqlite+aiosqlite:///{tmp_path / 'hall.sqlite3'}")
    creds = load_demo_without_printer(env)
    server = Server(env).start()
    yield server, creds
    output = server.stop()
    assert "Traceback" not in output, output


def board_url(server: Server, creds: dict[str, str], since: int | None = None) -> str:
    extra = f"&since={since}" if since is not None else ""
    return f"{server.ws}/ws/halls/1/board?token={creds['board']}{extra}"


async def test_snapshot_then_every_event_in_order(
    sqlite_hall: tuple[Server, dict[str, str]],
) -> None:
    server, creds = sqlite_hall
    board = await feed(board_url(server, creds))
    first = await board.next()
    assert (first["type"], first["seq"]) == ("snapshot", 0)
    assert first["board"]["name_zh"] == "示范政务服务中心"
    assert waiting_counts(first["board"])["A"] == 0

    for _ in range(3):
        await issue(server.base, creds["kiosk"])
    async with Clerk(server.base, creds["clerk"]) as clerk:
        await clerk.do(1, "open")
        await clerk.do(1, "call-next")
        await clerk.do(1, "start")
        await clerk.do(1, "finish", outcome="done")
    names = []
    for expected_seq in range(1, 8):
        message = await board.next()
        assert (message["type"], message["seq"]) == ("event", expected_seq)
        names.append(message["event"]["name"])
    assert names == [
        "TicketIssued", "TicketIssued", "TicketIssued", "CounterOpened", "TicketCalled",
        "ServiceStarted", "ServiceFinished",
    ]  # fmt: skip
    last = board.messages[-1]["board"]
    assert waiting_counts(last)["A"] == 2
    assert last["recent_calls"][0] == {
        **last["recent_calls"][0],
        "number": "A001",
        "counter_number": 1,
    }
    call = next(m for m in board.messages if m.get("event", {}).get("name") == "TicketCalled")
    assert call["board"]["announcements"][-1]["text_zh"] == "请 A001 号到 1 号窗口办理"
    assert call["board"]["announcements"][-1]["text_en"] == "Number A 0 0 1, please go to counter 1"
    await board.ws.close()


async def test_resume_after_a_drop_or_get_a_snapshot(
    sqlite_hall: tuple[Server, dict[str, str]],
) -> None:
    server, creds = sqlite_hall
    keeper = await feed(board_url(server, creds))  # keeps the hub (and its replay) alive
    await keeper.next()
    await issue(server.base, creds["kiosk"])
    await keeper.until(lambda m: m["seq"] == 1)
    await issue(server.base, creds["kiosk"])
    await issue(server.base, creds["kiosk"])
    await keeper.until(lambda m: m["seq"] == 3)

    resumed = await feed(board_url(server, creds, since=1))
    got = [await resumed.next(), await resumed.next()]
    assert [(m["type"], m["seq"]) for m in got] == [("event", 2), ("event", 3)]

    unknown = await feed(board_url(server, creds, since=999))
    fresh = await unknown.next()
    assert (fresh["type"], fresh["seq"]) == ("snapshot", 3)
    assert waiting_counts(fresh["board"])["A"] == 3
    for client in (keeper, resumed, unknown):
        await client.ws.close()


async def test_ticket_and_counter_feeds(sqlite_hall: tuple[Server, dict[str, str]]) -> None:
    server, creds = sqlite_hall
    first = await issue(server.base, creds["kiosk"])
    second = await issue(server.base, creds["kiosk"])
    follower = await feed(f"{server.ws}/ws/tickets/{second['follow_token']}")
    start = await follower.next()
    assert (start["type"], start["ticket"]["number"], start["ticket"]["people_ahead"]) == (
        "snapshot", "A002", 1,
    )  # fmt: skip
    async with Clerk(server.base, creds["clerk"]) as clerk:
        await clerk.do(1, "open")
        # A browser sends its session cookie; this client sends it by hand.
        cookie = "; ".join(f"{k}={v}" for k, v in clerk.http.cookies.items())
        console = Feed(
            await websockets.connect(
                f"{server.ws}/ws/counters/1", proxy=None, additional_headers={"Cookie": cookie}
            )
        )
        opened = await console.next()
        assert opened["type"] == "snapshot"
        assert [w["number"] for w in opened["waiting"]] == ["A001", "A002"]
        await clerk.do(1, "call-next")
        update = await console.until(lambda m: m["type"] == "update" and m["counter"]["current"])
        assert update["counter"]["current"]["number"] == first["number"]
        assert [w["number"] for w in update["waiting"]] == ["A002"]
        moved = await follower.until(lambda m: m["ticket"]["people_ahead"] == 0)
        assert moved["type"] == "update"
        await clerk.do(1, "no-show")
        await clerk.do(1, "call-next")
        turn = await follower.until(lambda m: m["ticket"]["state"] == "called")
        assert turn["ticket"]["counter_number"] == 1
        await console.ws.close()
    await follower.ws.close()


async def follower_updates(base: str) -> dict[str, float]:
    """The server's count of follow-feed messages by what was read for them."""
    async with httpx.AsyncClient(base_url=base) as http:
        text = (await http.get("/metrics")).text
    found = re.findall(r'^onedoor_follower_updates_total\{read="(\w+)"\} (\S+)$', text, re.M)
    return {read: float(value) for read, value in found}


async def test_followers_are_told_the_queue_moving_without_reading_their_tickets(
    sqlite_hall: tuple[Server, dict[str, str]],
) -> None:
    """While a visitor's own ticket does not change, the queue moving is told from the
    hall's shared projection (one floor read per hall state for every follower), not by
    reading each follower's ticket again: the server's metrics count the reads."""
    server, creds = sqlite_hall
    unfollowed = [await issue(server.base, creds["kiosk"]) for _ in range(2)]
    followed = [await issue(server.base, creds["kiosk"]) for _ in range(6)]
    followers = [await feed(f"{server.ws}/ws/tickets/{t['follow_token']}") for t in followed]
    for ahead, follower in enumerate(followers, start=2):
        start = await follower.next()
        assert (start["type"], start["ticket"]["people_ahead"]) == ("snapshot", ahead)
    before = await follower_updates(server.base)
    async with Clerk(server.base, creds["clerk"]) as clerk:
        await clerk.do(1, "open")
        for moved, ticket in enumerate(unfollowed, start=1):
            called = await clerk.do(1, "call-next")
            assert called["ticket"]["number"] == ticket["number"]
            for ahead, follower in enumerate(followers, start=2):
                told = await follower.until(
                    lambda m, want=ahead - moved: m["ticket"]["people_ahead"] == want
                )
                assert told["type"] == "update" and told["ticket"]["state"] == "waiting"
                assert told["ticket"]["estimate_minutes"] is not None
            await clerk.do(1, "no-show")
        after = await follower_updates(server.base)
        # Told from the projection, not by reading each ticket: had every follower read its
        # ticket on every move, that would be at least two reads each. (A hub that started
        # afresh meanwhile — its relay late by a second on a loaded machine — has every
        # follower read once: allowed.)
        reads = after.get("ticket", 0) - before.get("ticket", 0)
        assert reads <= len(followers), (before, after)
        assert after["projection"] - before.get("projection", 0) >= len(followers)
        # What the last message told each follower is what reading their ticket tells.
        async with httpx.AsyncClient(base_url=server.base) as http:
            for ticket, follower in zip(followed, followers, strict=True):
                told = follower.messages[-1]["ticket"]
                read = (await http.get(f"/api/follow/{ticket['follow_token']}")).json()
                keys = ("number", "state", "people_ahead", "estimate_basis")
                assert {k: told[k] for k in keys} == {k: read[k] for k in keys}
        # The visitor whose own ticket is called is told from their ticket, read again.
        await clerk.do(1, "call-next")
        turn = await followers[0].until(lambda m: m["ticket"]["state"] == "called")
        assert turn["ticket"]["counter_number"] == 1
        assert (await follower_updates(server.base))["ticket"] > after.get("ticket", 0)
    for follower in followers:
        await follower.ws.close()


async def test_feeds_refuse_strangers_and_unknown_tickets(
    sqlite_hall: tuple[Server, dict[str, str]],
) -> None:
    server, _ = sqlite_hall
    for url in (f"{server.ws}/ws/halls/1/board", f"{server.ws}/ws/halls/1/board?token=forged",
                f"{server.ws}/ws/counters/1"):  # fmt: skip
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            await websockets.connect(url, proxy=None)
        assert refused.value.response.status_code == 403
    gone = await websockets.connect(f"{server.ws}/ws/tickets/no-such-token", proxy=None)
    with pytest.raises(websockets.exceptions.ConnectionClosed):
        await gone.recv()
    assert gone.close_code == 4404


async def refused(url: str) -> int:
    """The status with which the server refused the handshake (it gives no body)."""
    with pytest.raises(InvalidStatus) as refusal:
        await websockets.connect(url, proxy=None)
    return int(refusal.value.response.status_code)


async def test_the_kiosk_feed_admits_only_a_kiosk_of_its_hall(
    sqlite_hall: tuple[Server, dict[str, str]],
) -> None:
    server, creds = sqlite_hall
    made = onedoor(["create-admin", "--username", "chief", "--password", "chief-password-1"],
                   server.env)  # fmt: skip
    assert made.returncode == 0, made.stderr
    async with httpx.AsyncClient(base_url=server.base) as http:
        login = await http.post(
            "/api/auth/login", json={"username": "chief", "password": "chief-password-1"}
        )
        assert login.status_code == 200, login.text
        http.headers["X-CSRF-Token"] = login.json()["csrf_token"]
        other = await http.post(
            "/api/halls",
            json={"name_zh": "别的大厅", "name_en": "Other hall", "opening_hours": ALL_DAY},
        )
        assert other.status_code == 201, other.text
        other_id = other.json()["id"]
        tokens = {}
        for hall_id, kind in ((other_id, "kiosk"), (1, "printer")):
            made_device = await http.post(
                f"/api/halls/{hall_id}/devices", json={"kind": kind, "name": f"{kind} {hall_id}"}
            )
            assert made_device.status_code == 201, made_device.text
            tokens[hall_id, kind] = made_device.json()["token"]

    # Another hall's kiosk, a board, a printer, nobody, a forged token: all refused.
    url = f"{server.ws}/ws/halls/1/kiosk"
    for token in (tokens[other_id, "kiosk"], creds["board"], tokens[1, "printer"], "forged"):
        assert await refused(f"{url}?token={token}") == 403, token
    assert await refused(url) == 403

    # Each kiosk follows its own hall: a snapshot of its (here: no) printers and jobs.
    for hall_id, token in ((1, creds["kiosk"]), (other_id, tokens[other_id, "kiosk"])):
        kiosk = await feed(f"{server.ws}/ws/halls/{hall_id}/kiosk?token={token}")
        first = await kiosk.next()
        assert first == {**first, "type": "snapshot", "printers": [], "jobs": []}, first
        await kiosk.ws.close()


def raw_ws_that_never_reads(port: int, path: str) -> socket.socket:
    """A websocket handshake over a plain socket that then never reads a byte."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
         f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    )  # fmt: skip
    assert b"101" in sock.recv(4096).split(b"\r\n", 1)[0]
    return sock


async def test_a_board_that_never_reads_does_not_delay_the_others(
    sqlite_hall: tuple[Server, dict[str, str]],
) -> None:
    server, creds = sqlite_hall
    stuck = [raw_ws_that_never_reads(server.port, f"/ws/halls/1/board?token={creds['board']}")
             for _ in range(3)]  # fmt: skip
    healthy = await feed(board_url(server, creds))
    await healthy.next()
    delays = []
    async with httpx.AsyncClient(base_url=server.base) as http:
        for _ in range(150):  # ~2 KB a message: far more than the stuck sockets buffer
            sent = time.monotonic()
            answer = await http.post("/api/halls/1/tickets", json={"service_id": 1},
                                     headers={"Authorization": f"Bearer {creds['kiosk']}"})  # fmt: skip
            assert answer.status_code == 201
            message = await healthy.next(timeout=5)
            delays.append(time.monotonic() - sent)
            assert message["type"] == "event"
    assert [m["seq"] for m in healthy.messages if m["type"] == "event"] == list(range(1, 151))
    delays.sort()
    assert delays[int(len(delays) * 0.99) - 1] < 1.0, f"p99 {delays[-2]:.3f} s"
    for sock in stuck:
        sock.close()
    await healthy.ws.close()


@pytest.fixture
def two_processes(
    tmp_path: Path, pg_url: str, redis_url: str
) -> Iterator[tuple[Server, Server, dict[str, str]]]:
    """The demo hall on PostgreSQL, served by two processes that fan out through Redis."""
    env = server_env(tmp_path / "var", pg_url, redis_url)
    creds = load_demo_without_printer(env)
    a, b = Server(env).start(), Server(env).start()
    yield a, b, creds
    for server in (a, b):
        output = server.stop()
        assert "Traceback" not in output, output


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_call_through_one_process_reaches_a_board_on_the_other(
    two_processes: tuple[Server, Server, dict[str, str]],
) -> None:
    a, b, creds = two_processes
    board = await feed(board_url(b, creds))
    await board.next()
    await issue(a.base, creds["kiosk"])
    async with Clerk(a.base, creds["clerk"]) as clerk:
        await clerk.do(1, "open")
        clicked = time.monotonic()
        await clerk.do(1, "call-next")
    called = await board.until(
        lambda m: m.get("event", {}).get("name") == "TicketCalled", timeout=3
    )
    assert time.monotonic() - clicked < 1.0
    assert called["board"]["recent_calls"][0]["number"] == "A001"
    await board.ws.close()


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_gap_in_the_sequence_brings_a_snapshot(
    two_processes: tuple[Server, Server, dict[str, str]], redis_url: str
) -> None:
    a, b, creds = two_processes
    board = await feed(board_url(b, creds))
    await board.next()
    await issue(a.base, creds["kiosk"])
    await board.until(lambda m: m["seq"] == 1)
    # An event from the future: seq 2..4 went missing on the way.
    broker = aioredis.Redis.from_url(redis_url)
    bogus = {"hall_id": 1, "seq": 5, "name": "TicketIssued", "data": {"service_id": 1}}
    await broker.publish("onedoor:hall:1", json.dumps(bogus))
    await broker.aclose()
    fresh = await board.until(lambda m: m["type"] == "snapshot")
    assert fresh["seq"] == 1, "the snapshot is the database's truth, not the bogus event"
    assert waiting_counts(fresh["board"])["A"] == 1
    await board.ws.close()


@pytest.mark.postgres
@pytest.mark.redis
async def test_boards_are_consistent_again_within_5_s_after_redis_restarts(
    tmp_path: Path, pg_url: str
) -> None:
    broker = PrivateRedis().start()
    env = server_env(tmp_path / "var", pg_url, broker.url)
    creds = load_demo_without_printer(env)
    a, b = Server(env).start(), Server(env).start()
    try:
        board = await feed(board_url(b, creds))
        await board.next()
        await issue(a.base, creds["kiosk"])
        await board.until(lambda m: m["seq"] == 1)

        broker.stop()
        await issue(a.base, creds["kiosk"])  # committed while the broker is down
        await issue(a.base, creds["kiosk"])
        await asyncio.sleep(1.0)
        broker.start()
        restarted = time.monotonic()
        truth = await snapshot(a.base, creds["board"])
        assert truth["seq"] == 3
        caught_up = await board.until(lambda m: m["seq"] >= 3, timeout=5)
        assert time.monotonic() - restarted < 5
        assert waiting_counts(caught_up["board"])["A"] == 3
        await issue(a.base, creds["kiosk"])  # and live again afterwards
        after = await board.until(lambda m: m["seq"] == 4, timeout=5)
        assert waiting_counts(after["board"])["A"] == 4
        await board.ws.close()
        # The listener and the relay retry at growing intervals (up to 2 and 5 s): wait for
        # each to have told the outage's end before stopping the servers.
        await until_logged(a, "redis pub/sub: working again after", "relay: working again after")
        await until_logged(b, "redis pub/sub: working again after")
        logs = [server.stop() for server in (a, b)]
    finally:
        for server in (a, b):
            server.stop()
        broker.stop()
    # Each loop that retried while Redis was away told its outage once, with its end, not
    # once a retry (the pub/sub listener retries within 2 s, the relay within 5 s).
    for log in logs:
        assert log.count("redis pub/sub: connection lost") == 1, log
        assert log.count("redis pub/sub: working again after") == 1, log
        assert "redis still unreachable" not in log
    assert logs[0].count("relay: could not publish") == 1, logs[0]
    assert logs[0].count("relay: working again after") == 1, logs[0]


async def until_logged(server: Server, *texts: str, timeout: float = 10.0) -> None:
    """Wait until ``server``'s log holds each of ``texts``."""
    assert server.log is not None
    deadline = time.monotonic() + timeout
    while not all(text in (log := server.log.read_text()) for text in texts):
        if time.monotonic() > deadline:
            raise AssertionError(f"{texts} not all logged in {timeout} s; the log:\n{log}")
        await asyncio.sleep(0.1)


async def printed(client: asyncio.subprocess.Process, text: str, timeout: float = 10.0) -> None:
    """Read ``client``'s output up to the first line that contains ``text``."""
    assert client.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(timeout):
            while text not in (line := (await client.stdout.readline()).decode()):
                if not line:
                    raise AssertionError(f"the client ended; it printed {seen}")
                seen.append(line)
    except TimeoutError:
        raise AssertionError(f"{text!r} not printed in {timeout} s; it printed {seen}") from None


async def test_terminal_board_client_prints_calls(
    sqlite_hall: tuple[Server, dict[str, str]],
) -> None:
    server, creds = sqlite_hall
    client = await asyncio.create_subprocess_exec(
        *ONEDOOR, "board-client", server.base, "--hall", "1", f"--token={creds['board']}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**server.env, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        # Calls made before it follows the hall would never be printed: wait until it does.
        await printed(client, "示范政务服务中心 / Demo Service Centre: following", timeout=30)
        await issue(server.base, creds["kiosk"])
        async with Clerk(server.base, creds["clerk"]) as clerk:
            await clerk.do(1, "open")
            await clerk.do(1, "call-next")
            await clerk.do(1, "recall")
        await printed(client, "A001 → counter 1  请 A001 号到 1 号窗口办理")
        await printed(client, "A001 → counter 1 (again)")
    finally:
        client.terminate()
        await client.wait()
