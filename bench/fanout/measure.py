"""One configuration: from a fresh database to stopped servers, with everything measured
on the way (the result the report is made of)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import os
import tempfile
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx

from .. import procs
from ..server import ServerError, create_admin
from .boards import BoardPlan, Boards, BoardsReport, Finish, Opened
from .calls import Calls, make_calls
from .halls import Hall, build_halls, hall_seqs
from .options import BenchError, Config, CpuPlan, Sizes
from .servers import (
    DATABASE_DSN,
    ServerProcess,
    recreate_database,
    rss_kib,
    server_env,
    start_server,
)

IDLE_SETTLE_S = 3.0
"""Pause between the last board opening and the "idle" memory reading."""


@dataclass(frozen=True)
class CalledEvent:
    """A TicketCalled event as the database logged it."""

    ticket_id: int
    at: float
    """The event's ``at``: the server's clock at the change, inside the transaction."""
    published: float
    """``published_at``: when a relay claimed the committed row to publish it (NaN if never)."""


async def called_events() -> dict[tuple[int, int], CalledEvent]:
    """Every TicketCalled event of the run by (hall id, seq), from ``hall_events``."""
    connection = await asyncpg.connect(DATABASE_DSN, timeout=5)
    try:
        rows = await connection.fetch(
            "SELECT hall_id, seq, payload, published_at FROM hall_events "
            "WHERE name = 'TicketCalled'"
        )
    finally:
        await connection.close()
    events = {}
    for row in rows:
        payload = json.loads(row["payload"])
        published = row["published_at"]
        events[(row["hall_id"], row["seq"])] = CalledEvent(
            int(payload["ticket_id"]),
            datetime.fromisoformat(payload["at"]).timestamp(),
            published.timestamp() if published is not None else math.nan,
        )
    return events


machine_busy_seconds = procs.machine_busy_seconds


@dataclass
class Cpu:
    """CPU seconds used during the call phase, by whom."""

    server: float = 0.0
    boards: float = 0.0
    caller: float = 0.0
    machine: float = 0.0
    """Every CPU of the machine: the above plus PostgreSQL, Redis and anything else."""


@dataclass
class Result:
    """Everything measured for one configuration (or why it could not run)."""

    config: Config
    sizes: Sizes
    error: str | None = None
    skipped: str | None = None
    """Why an optional configuration did not run (not a failure)."""
    connected: int = 0
    connect_failed: int = 0
    connect_samples: list[str] = field(default_factory=list)
    connect_retries: int = 0
    connect_seconds: float = 0.0
    loadgen: str = ""
    calls: Calls = field(default_factory=Calls)
    cpu: Cpu = field(default_factory=Cpu)
    boards: BoardsReport | None = None
    at_ms: list[float] = field(default_factory=list)
    """Per (board, call): when the board showed it minus the event's ``at`` (the table's)."""
    answer_ms: list[float] = field(default_factory=list)
    """The same minus the time the call-next answer reached the caller."""
    fanout_ms: list[float] = field(default_factory=list)
    """The same minus the event's ``published_at``: publish, hub and websocket send."""
    relay_ms: list[float] = field(default_factory=list)
    """Per call: ``published_at`` minus ``at`` (commit, relay wake-up and claim)."""
    by_snapshot: int = 0
    board_messages: int = 0
    """Events of the call phase times the boards of their hall: messages the server fanned out."""
    rss_before_kib: int = 0
    rss_idle_kib: int = 0
    rss_after_calls_kib: int = 0
    servers: list[str] = field(default_factory=list)
    log_notes: list[str] = field(default_factory=list)

    def kib_per_connection(self, rss: int) -> float:
        return (rss - self.rss_before_kib) / self.connected if self.connected else math.nan

    @property
    def failures(self) -> list[str]:
        """Why this configuration fails the run (empty when it passes)."""
        if self.skipped is not None:
            return []
        if self.error is not None:
            return [f"could not run: {self.error.strip().splitlines()[-1]}"]
        found = []
        if self.connect_failed:
            found.append(f"{self.connect_failed} websockets failed to connect")
        if self.calls.server_errors:
            found.append(f"{self.calls.server_errors} 5xx answers")
        if self.calls.failed - self.calls.server_errors:
            found.append(f"{self.calls.failed - self.calls.server_errors} other failed requests")
        if self.boards is None:
            found.append("no report from the boards")
        else:
            if self.boards.lost:
                found.append(f"{self.boards.lost} events lost")
            if self.boards.dropped:
                found.append(f"{self.boards.dropped} websockets dropped")
        return found

    def add_latencies(self, events: dict[tuple[int, int], CalledEvent]) -> None:
        """Join the boards' deliveries with the logged events and the caller's answers."""
        assert self.boards is not None
        self.relay_ms = [(e.published - e.at) * 1000 for e in events.values()]
        for hall_id, seq, received, snapshot in self.boards.deliveries:
            event = events[(hall_id, seq)]
            self.by_snapshot += snapshot
            self.at_ms.append((received - event.at) * 1000)
            self.fanout_ms.append((received - event.published) * 1000)
            answered = self.calls.returned.get((hall_id, event.ticket_id))
            if answered is not None:
                self.answer_ms.append((received - answered) * 1000)


def board_plan(
    servers: list[ServerProcess], halls: list[Hall], per_hall: int, concurrency: int
) -> BoardPlan:
    """Every hall's boards, split evenly over the servers (board i of a hall → server i % n)."""
    boards = [
        (hall.hall_id, servers[i % len(servers)].board_url(hall.hall_id, hall.board_token))
        for i in range(per_hall)
        for hall in halls
    ]
    return BoardPlan(boards, concurrency)


async def measure(
    result: Result, servers: list[ServerProcess], boards: Boards, sizes: Sizes
) -> None:
    """Set up the halls, open the boards, make the calls, and fill in ``result``."""
    base_url = servers[0].base_url
    print(f"  setting up {sizes.halls} halls ...", flush=True)
    halls = await build_halls(base_url, sizes.halls)
    server_pids = [pid for server in servers for pid in server.pids()]
    try:
        await asyncio.sleep(1.0)
        result.rss_before_kib = rss_kib(server_pids)
        plan = board_plan(servers, halls, sizes.boards_per_hall, sizes.connect_concurrency)
        print(f"  opening {len(plan.boards)} boards ...", flush=True)
        opened: Opened = await boards.ask(plan)
        result.connected, result.connect_failed = opened.connected, opened.failed
        result.connect_samples, result.connect_retries = opened.failure_samples, opened.retries
        result.connect_seconds = opened.seconds
        result.loadgen = (
            f"boards process pid {opened.pid} on {procs.format_cpus(set(opened.cpus))}, "
            f"caller pid {os.getpid()} on {procs.format_cpus(os.sched_getaffinity(0))}"
        )
        await asyncio.sleep(IDLE_SETTLE_S)
        result.rss_idle_kib = rss_kib(server_pids)
        print(f"  {sizes.calls} calls at {sizes.calls_per_s:g}/s ...", flush=True)

        def cpu_now() -> Cpu:
            return Cpu(
                procs.cpu_seconds(server_pids),
                procs.cpu_seconds([opened.pid]),
                procs.cpu_seconds([os.getpid()]),
                machine_busy_seconds(),
            )

        start_seqs = await hall_seqs(base_url, halls)
        before = cpu_now()
        result.calls = await make_calls(base_url, halls, sizes)
        after = cpu_now()
        result.cpu = Cpu(
            after.server - before.server,
            after.boards - before.boards,
            after.caller - before.caller,
            after.machine - before.machine,
        )
        result.rss_after_calls_kib = rss_kib(server_pids)
        final_seqs = await hall_seqs(base_url, halls)
        result.board_messages = sum(
            (final_seqs[h] - start_seqs[h]) * sizes.boards_per_hall for h in final_seqs
        )
        events = await called_events()
        called: dict[int, list[int]] = {}
        for hall_id, seq in sorted(events):
            called.setdefault(hall_id, []).append(seq)
        result.boards = await boards.ask(Finish(final_seqs, called, sizes.drain_timeout_s))
    finally:
        await asyncio.gather(*(hall.clerk.aclose() for hall in halls))
    result.add_latencies(events)


def run_config(config: Config, sizes: Sizes, cpus: CpuPlan, log_dir: Path) -> Result:
    """One configuration from a fresh database to stopped servers, whatever happens."""
    result = Result(config, sizes)
    if config.needs and importlib.util.find_spec(config.needs) is None:
        result.skipped = f"skipped: {config.needs} is not installed here"
        return result
    servers: list[ServerProcess] = []
    boards: Boards | None = None
    with tempfile.TemporaryDirectory(prefix="onedoor-fanout-") as var_dir:
        try:
            boards = Boards(cpus.loadgen)  # spawns while the database is prepared
            recreate_database()
            env = server_env(config, Path(var_dir))
            create_admin(env)
            for index in range(config.processes):
                log_path = log_dir / f"fanout-{config.name}-{index}.server.log"
                servers.append(start_server(config, env, log_path, cpus.server))
            asyncio.run(measure(result, servers, boards, sizes))
        except (BenchError, ServerError, OSError, httpx.HTTPError, asyncpg.PostgresError) as exc:
            result.error = str(exc) or repr(exc)
        except Exception:
            result.error = traceback.format_exc()
        finally:
            if boards is not None:
                boards.stop()
            for server in servers:
                pids = ", ".join(map(str, server.pids()))
                status = server.stop()
                result.servers.append(f"port {server.port} (pids {pids}): {status}")
                text = server.log_text()
                if "Traceback" in text:
                    result.log_notes.append(
                        f"WARNING: {server.log_path} has {text.count('Traceback')} tracebacks"
                    )
    return result
