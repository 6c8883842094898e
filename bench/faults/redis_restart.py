"""Redis (the fan-out between two server processes) restarts while kiosks issue, clerks
call and boards on both processes follow the hall.

Promised: every board is consistent again within 5 s of Redis coming back, and no event is
lost by sequence — a board sees each event in order, or a fresh snapshot that covers what
it missed, never a silent jump; at the end every board shows what the database holds.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets

from tests.servers import PrivateRedis

from ..checks import Database
from ..hall import build_hall, login, post
from ..server import ADMIN_PASSWORD, ADMIN_USERNAME
from .common import Context, Row, database_of, judge_queue, onedoor, start_load

NAME = "redis-restart"
BOARDS = 6
DOWN_S = 2.0
GOAL_S = 5.0


@dataclass
class Board:
    """One board screen: follows the feed, reconnects with ``since`` as the page does."""

    url: str
    seq: int = -1
    board: dict[str, Any] = field(default_factory=dict)
    snapshots: int = 0
    events: int = 0
    jumps: list[tuple[int, int]] = field(default_factory=list)
    """(last seq, event seq) where an event skipped numbers without a snapshot between."""
    reconnects: int = 0

    async def follow(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            since = f"&since={self.seq}" if self.seq >= 0 else ""
            try:
                async with websockets.connect(self.url + since, proxy=None, open_timeout=10) as ws:
                    while not stop.is_set():
                        try:
                            raw = await asyncio.wait_for(ws.recv(), 0.5)
                        except TimeoutError:
                            continue
                        self.take(json.loads(raw))
            except (OSError, websockets.ConnectionClosed, websockets.InvalidStatus, TimeoutError):
                self.reconnects += 1
                await asyncio.sleep(0.2)

    def take(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "snapshot":
            self.snapshots += 1
            self.seq, self.board = int(message["seq"]), message["board"]
        elif kind == "event":
            seq = int(message["seq"])
            if seq <= self.seq:
                return  # a replay after a reconnect: already applied
            if seq != self.seq + 1:
                self.jumps.append((self.seq, seq))
            self.events += 1
            self.seq, self.board = seq, message["board"]


def truth(db: Database, hall_id: int) -> tuple[int, dict[int, int], dict[int, int | None]]:
    """The hall's last event, waiting per matter and each counter's ticket, read afresh."""
    ((seq,),) = db.rows("SELECT coalesce(max(seq), 0) FROM hall_events WHERE hall_id = $1", hall_id)
    waiting = dict(
        db.rows(
            "SELECT service_id, count(*) FROM tickets WHERE hall_id = $1 AND state = 'waiting' "
            "GROUP BY service_id",
            hall_id,
        )
    )
    counters: dict[int, int | None] = {
        int(c): None for (c,) in db.rows("SELECT id FROM counters WHERE hall_id = $1", hall_id)
    }
    for counter, ticket in db.rows(
        "SELECT counter_id, id FROM tickets WHERE hall_id = $1 AND state IN ('called', 'serving')",
        hall_id,
    ):
        counters[int(counter)] = int(ticket)
    return int(seq), {int(k): int(v) for k, v in waiting.items()}, counters


def shows(board: Board) -> tuple[dict[int, int], dict[int, int | None]]:
    waiting = {int(m["service_id"]): int(m["waiting"]) for m in board.board.get("matters", [])}
    counters = {
        int(c["counter_id"]): (int(c["ticket_id"]) if c.get("ticket_id") else None)
        for c in board.board.get("counters", [])
    }
    return {k: v for k, v in waiting.items() if v}, counters


async def board_token(base_url: str, hall_id: int) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as admin:
        csrf = await login(admin, ADMIN_USERNAME, ADMIN_PASSWORD)
        device = await post(
            admin, f"/api/halls/{hall_id}/devices", {"kind": "board", "name": "b"}, csrf
        )
    return str(device["token"])


async def open_boards(
    base_url: str, hall_id: int
) -> tuple[list[Board], asyncio.Event, list[asyncio.Task[None]]]:
    """``BOARDS`` board screens of the hall following it (until the event is set), spread
    by the kernel over the server's workers."""
    token = await board_token(base_url, hall_id)
    ws_base = base_url.replace("http://", "ws://")
    boards = [Board(f"{ws_base}/ws/halls/{hall_id}/board?token={token}") for _ in range(BOARDS)]
    stop = asyncio.Event()
    return boards, stop, [asyncio.create_task(b.follow(stop)) for b in boards]


async def until(check: Any, within_s: float) -> float | None:
    """Seconds until ``check()`` held, or None if it did not within ``within_s``."""
    start = time.monotonic()
    while not await asyncio.to_thread(check):
        if time.monotonic() - start > within_s:
            return None
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def _run(ctx: Context) -> Row:
    row = Row("Redis restart, boards on two processes", goal_s=GOAL_S)
    url = await ctx.pg.create_database("faults_redis")
    db = database_of(url)
    rounds = 1 if ctx.short else 3
    redis = PrivateRedis().start()
    recoveries: list[float] = []
    try:
        with onedoor(ctx, NAME, url, workers=2, redis_url=redis.url) as server:
            hall = await build_hall(server.base_url, ADMIN_USERNAME, ADMIN_PASSWORD, 4)
            boards, stop_boards, followers = await open_boards(server.base_url, hall.hall_id)
            load = await start_load(server.base_url, hall, kiosks=4, kiosk_pause_s=0.05)
            try:
                await load.answers(100)
                for _ in range(rounds):
                    redis.stop()
                    ctx.say("Redis killed")
                    await load.answers(20)  # the hall goes on without it
                    await asyncio.sleep(DOWN_S)
                    port = redis.port
                    redis = PrivateRedis(port=port).start()
                    up_at = time.monotonic()
                    await load.answers(1)
                    target, _, _ = await asyncio.to_thread(truth, db, hall.hall_id)
                    caught_up = await until(lambda t=target: all(b.seq >= t for b in boards), 30)
                    took = time.monotonic() - up_at if caught_up is not None else float("inf")
                    recoveries.append(took)
                    ctx.say(f"Redis back; every board at seq {target} {took:.2f} s later")
                    await load.answers(100)
            finally:
                tally = await load.finish()

            def consistent() -> bool:
                seq, waiting, counters = truth(db, hall.hall_id)
                return all(b.seq == seq and shows(b) == (waiting, counters) for b in boards)

            settled = await until(consistent, 15)
            stop_boards.set()
            await asyncio.gather(*followers)
    finally:
        redis.stop()
    await asyncio.to_thread(judge_queue, row, db, hall.hall_id, tally)
    row.recovery_s = max(recoveries) if recoveries else None
    jumps = [j for b in boards for j in b.jumps]
    row.lost += len(jumps)
    if jumps:
        row.problems.append(f"boards skipped events without a snapshot: {jumps[:5]}")
    if settled is None:
        seq, waiting, _ = await asyncio.to_thread(truth, db, hall.hall_id)
        row.problems.append(
            f"boards not consistent 15 s after the load: database seq {seq} waiting {waiting}; "
            f"boards at {[b.seq for b in boards]}"
        )
    row.checks.append(
        f"{rounds} restart(s); {BOARDS} boards: {sum(b.events for b in boards)} events in "
        f"order, {sum(b.snapshots for b in boards)} snapshots, "
        f"{sum(b.reconnects for b in boards)} reconnects; at the end each shows the "
        f"database's waiting and counters at its last seq"
    )
    return row


def run(ctx: Context) -> Row:
    return asyncio.run(_run(ctx))
