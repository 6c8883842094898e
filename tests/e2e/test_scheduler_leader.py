"""Two real ``onedoor serve`` processes on one PostgreSQL database: exactly one runs the
scheduled jobs (it holds the advisory lock on a connection of its own and says so in
``scheduler_leader``); when it is killed the other takes over within seconds and runs them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import asyncpg
import httpx
import pytest

from booking.domain.codes import new_code
from queue_server.scheduler import LOCK_KEY
from tests.servers import Server, load_demo_without_printer, server_env

pytestmark = pytest.mark.postgres
T = TypeVar("T")
PHONE = "13800138000"


def local_ports(pid: int) -> set[int]:
    """The local TCP ports of the sockets process ``pid`` has open (read from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


async def lock_holders(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """The sessions holding an advisory lock in this database, with their client port."""
    return await conn.fetch(
        """
        SELECT l.pid, a.client_port, l.classid::text::bigint AS high, l.objid::text::bigint AS low
        FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        """
    )


async def leading_server(conn: asyncpg.Connection, servers: list[Server]) -> Server | None:
    """The server process whose connection holds the scheduler's lock (asserting that one
    session at most holds it, and that it is the scheduler's key)."""
    holders = await lock_holders(conn)
    assert len(holders) <= 1, f"two sessions hold the scheduler lock: {holders}"
    if not holders:
        return None
    [held] = holders
    assert (held["high"] << 32) | held["low"] == LOCK_KEY
    owners = [s for s in servers if s.process and s.process.poll() is None
              and held["client_port"] in local_ports(s.process.pid)]  # fmt: skip
    assert len(owners) <= 1
    # None: the session of a process just killed, which PostgreSQL has not yet ended.
    return owners[0] if owners else None


async def leader_row(conn: asyncpg.Connection) -> str | None:
    return await conn.fetchval("SELECT holder FROM scheduler_leader WHERE name = 'jobs'")


def holder_of(server: Server) -> str:
    assert server.process is not None
    return f"{socket.gethostname()}:{server.process.pid}"


async def within(seconds: float, probe: Callable[[], Awaitable[T | None]]) -> tuple[T, float]:
    """``probe()``'s first truthy answer within ``seconds``, and how long it took."""
    started = time.monotonic()
    while True:
        answer = await probe()
        elapsed = time.monotonic() - started
        if answer:
            return answer, elapsed
        assert elapsed < seconds, f"not so within {seconds} s"
        await asyncio.sleep(0.1)


def make_matter_bookable(base: str, manager_password: str) -> None:
    """The demo's manager opens matter 1 to online booking, as through the manager page."""
    with httpx.Client(base_url=base) as manager:
        login = manager.post(
            "/api/auth/login", json={"username": "manager", "password": manager_password}
        )
        assert login.status_code == 200, login.text
        manager.headers["X-CSRF-Token"] = login.json()["csrf_token"]
        answer = manager.put(
            "/api/halls/1/services/1/booking",
            json={"slot_minutes": 30, "capacity": 2, "walk_in_share": 0},
        )
        assert answer.status_code == 200, answer.text


async def overdue_booking(conn: asyncpg.Connection) -> tuple[str, int]:
    """A booking for this morning's slot an hour ago, which nobody checked in: its code and
    slot id. (The API refuses slots that have begun, so it is written as it stands now.)"""
    now = datetime.now(UTC)
    start = now.replace(minute=0 if now.minute < 30 else 30, second=0, microsecond=0)
    start -= timedelta(hours=1)
    slot_id = await conn.fetchval(
        """
        INSERT INTO slots (hall_id, service_id, starts_at, ends_at, capacity, bookable, booked)
        VALUES (1, 1, $1, $2, 2, 2, 1)
        ON CONFLICT (service_id, starts_at) DO UPDATE SET booked = slots.booked + 1
        RETURNING id
        """,
        start,
        start + timedelta(minutes=30),
    )
    code = new_code(secrets.randbelow)
    await conn.execute(
        """
        INSERT INTO bookings (hall_id, service_id, slot_id, slot_start, code, name, phone,
                              state, channel, made_at)
        VALUES (1, 1, $1, $2, $3, '王小明', $4, 'booked', 'online', $5)
        """,
        slot_id,
        start,
        code,
        PHONE,
        start - timedelta(days=1),
    )
    return code, slot_id


async def test_one_leader_at_a_time_and_a_takeover_that_runs_the_jobs(
    tmp_path: Path, pg_url: str
) -> None:
    env = server_env(tmp_path / "var", pg_url)
    env |= {"ONEDOOR_SCHEDULER": "1", "ONEDOOR_LEADER_POLL_SECONDS": "0.5",
            "ONEDOOR_SWEEP_SECONDS": "1"}  # fmt: skip
    creds = load_demo_without_printer(env)
    servers: list[Server] = []
    conn = await asyncpg.connect(pg_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        servers.append(Server(env).start())
        servers.append(Server(env).start())
        make_matter_bookable(servers[0].base, creds["manager"])

        async def leader_known() -> Server | None:
            leader = await leading_server(conn, servers)
            return leader if leader and await leader_row(conn) == holder_of(leader) else None

        leader, _ = await within(5, leader_known)
        # The other keeps trying every 0.5 s, and keeps failing.
        for _ in range(4):
            await asyncio.sleep(0.5)
            assert await leading_server(conn, servers) is leader
            assert await leader_row(conn) == holder_of(leader)
        [other] = [s for s in servers if s is not leader]

        leader.kill()
        new_leader, took = await within(5, leader_known)
        assert new_leader is other
        assert await leader_row(conn) == holder_of(other)
        assert took < 5

        # The new leader sweeps: the booking nobody came to becomes a no-show, its place free.
        code, slot_id = await overdue_booking(conn)

        async def swept() -> bool:
            state = await conn.fetchval("SELECT state FROM bookings WHERE code = $1", code)
            return state == "no_show"

        await within(5, swept)
        assert await conn.fetchval("SELECT booked FROM slots WHERE id = $1", slot_id) == 0
        seen = httpx.get(f"{other.base}/api/bookings/{code}", params={"phone": PHONE})
        assert seen.status_code == 200, seen.text
        assert seen.json()["state"] == "no_show"
        assert other.log is not None
        assert "Traceback" not in other.log.read_text(), other.log.read_text()
    finally:
        await conn.close()
        for server in servers:
            server.stop()
