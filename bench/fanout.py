"""Websocket fan-out benchmark: ``python -m bench.fanout`` (full, a few minutes) or ``--smoke``.

What it measures, per server configuration (each on a fresh PostgreSQL database
``onedoor_fanout``, the server processes pinned to CPU 0):

1. Setup over the API as an admin: N halls, each with one matter, one counter, a kiosk, a
   board device and a clerk who signs in and opens the counter.
2. A load-generator process pinned to CPU 1 opens B board websockets per hall
   (``/ws/halls/{id}/board?token=…`` with the ``websockets`` client, which offers
   permessage-deflate as browsers and ``onedoor board-client`` do), a bounded number of
   handshakes at a time, with retries. Every board reads every message and keeps a compact
   timeline: the seq, kind (snapshot or event) and receive time (``time.time()``) of each.
3. The parent process (also on CPU 1) makes calls at a steady total rate, round robin over the
   halls: the kiosk issues a ticket, the clerk calls next (when the HTTP answer arrives is
   recorded) and marks a no-show. Three events per call fan out to the hall's boards.
4. Per configuration:

   - latency per (board, TicketCalled event): when the board first showed the call, i.e. the
     receive time of its first message (event, or snapshot after a resync) with a seq at least
     the call's, minus the event's ``at`` (the server's clock at the change, inside the
     transaction, so this includes the commit and slightly *over*-states commit→delivery);
     p50/p99/max. The notes also give it minus the time the call-next answer arrived (which
     *under*-states it: the answer leaves after the commit and a second read, and is often
     later than the board) and minus the event's ``published_at`` (when the outbox relay
     claimed it: the fan-out part alone), both read from ``hall_events`` after the calls.
   - events lost: per board, every seq of its hall after its first snapshot must have arrived
     as an event or be covered by a later snapshot (seq ≤ the snapshot's); 0 is required.
   - resyncs: snapshots a board received after its first message (hub resync or overflow).
   - server memory per connection: the summed VmRSS of the server processes (and any
     children) after setup, before any board, versus with every board open and idle, divided
     by the boards; the next column is the same after the calls (buffers and compression
     windows touched by traffic).
   - CPU used during the calls by the server, the boards process, the caller and everything
     else on the machine (PostgreSQL, Redis and any other process), from /proc.

Configurations (the default runs the first two; ``--configs all`` runs every one):
``pg-1p`` is ``onedoor serve`` as it is; ``pg-redis-2p`` is two ``onedoor serve`` processes
sharing PostgreSQL and Redis, each hall's boards split over both and every call made through
the first, so half of every hall's boards get its events through Redis. The ``uvicorn-*``
configurations run ``uvicorn --factory queue_server.asgi:create_from_env`` with a given
``--ws`` implementation, with or without permessage-deflate, to compare the memory and CPU
per connection (``uvicorn-wsproto-nodeflate`` is skipped where ``wsproto`` is not importable);
``uvicorn-sansio-deflate-nct`` is a prototype (``serve_no_context_takeover``) that keeps
permessage-deflate but without context takeover, so idle connections hold no zlib state.

Targets (from the issue): p99 ≤ 100 ms and ≤ 20 KiB per connection; the output says whether
each was met. The report goes to stdout and bench/results/fanout.txt (server logs beside it).
Exit status 1 if a board lost an event, a websocket failed to connect (after retries) or was
dropped, a call got a non-2xx answer (5xx or other), or a configuration could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import importlib.util
import itertools
import json
import math
import multiprocessing
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from array import array
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import datetime
from importlib.metadata import version
from multiprocessing.connection import Connection
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg
import httpx
import msgspec
import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from . import procs
from .server import ADMIN_PASSWORD, ADMIN_USERNAME, ServerError, create_admin, free_port
from .stats import percentile

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DATABASE = "onedoor_fanout"
POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE_URL = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{DATABASE}"
DATABASE_DSN = f"postgresql://postgres@127.0.0.1:5432/{DATABASE}"
REDIS_URL = "redis://127.0.0.1:6379/0"
ONEDOOR = [sys.executable, "-m", "queue_server.cli"]
UVICORN = [sys.executable, "-m", "uvicorn", "--factory", "queue_server.asgi:create_from_env"]
CLERK_PASSWORD = "fanout-clerk-password"
ALL_DAY = {day: [["00:00", "24:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
HTTP_TIMEOUT = httpx.Timeout(30.0)
HTTP_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=64, keepalive_expiry=2.0)
"""Pooled connections are dropped after 2 s idle: uvicorn closes them after 5 s, and a request
sent on one just as it closes fails with "Server disconnected without sending a response"."""
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
SETUP_CONCURRENCY = 8
IDLE_SETTLE_S = 3.0
"""Pause between the last board opening and the "idle" memory reading."""
CONNECT_ATTEMPTS = 3
OPEN_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 2.0
REPLY_TIMEOUT_S = 600.0
"""How long the parent waits for the boards process to finish a step before giving up."""
MAX_SAMPLES = 5
TARGET_P99_MS = 100.0
TARGET_KIB_PER_CONNECTION = 20.0
BUSY_MACHINE_SHARE = 0.5
"""Above this share of one CPU used by other work during the calls, the report warns."""


# ---------------------------------------------------------------------------------------
# Sizes and configurations


@dataclass(frozen=True)
class Sizes:
    """How big one configuration's run is."""

    halls: int
    boards_per_hall: int
    calls_per_s: float
    call_seconds: float
    connect_concurrency: int
    drain_timeout_s: float

    @property
    def boards(self) -> int:
        return self.halls * self.boards_per_hall

    @property
    def calls(self) -> int:
        return round(self.calls_per_s * self.call_seconds)


SMOKE = Sizes(
    halls=6,
    boards_per_hall=50,
    calls_per_s=6,
    call_seconds=8,
    connect_concurrency=50,
    drain_timeout_s=10,
)
FULL = Sizes(
    halls=50,
    boards_per_hall=100,
    calls_per_s=20,
    call_seconds=30,
    connect_concurrency=100,
    drain_timeout_s=20,
)


NO_CONTEXT_TAKEOVER = "deflate-no-context-takeover"
"""The ``ws`` of the prototype served by ``serve_no_context_takeover`` (see there)."""


@dataclass(frozen=True)
class Config:
    """A way of serving the feeds: how many processes, and which uvicorn websocket layer."""

    name: str
    processes: int
    """Server processes; with two, they share PostgreSQL and fan out through Redis."""
    ws: str | None = None
    """None: ``onedoor serve`` (uvicorn's ``--ws auto``); NO_CONTEXT_TAKEOVER: the prototype;
    else ``uvicorn --ws <ws>``."""
    deflate: bool = True
    """permessage-deflate offered by the server (uvicorn's ``--ws-per-message-deflate``)."""
    needs: str | None = None
    """A module the server must be able to import for this configuration to run."""

    def describe(self) -> str:
        if self.ws is None:
            serve = "onedoor serve"
        elif self.ws == NO_CONTEXT_TAKEOVER:
            serve = "uvicorn websockets-sansio, deflate without context takeover (prototype)"
        else:
            serve = f"uvicorn --ws {self.ws}"
        deflate = "" if self.deflate else " --ws-per-message-deflate false"
        redis = " + Redis" if self.processes > 1 else ""
        return f"{self.processes} x {serve}{deflate} (PostgreSQL{redis})"


CONFIGS = {
    config.name: config
    for config in (
        Config("pg-1p", 1),
        Config("pg-redis-2p", 2),
        Config("uvicorn-sansio-nodeflate", 1, ws="websockets-sansio", deflate=False),
        Config("uvicorn-sansio-deflate", 1, ws="websockets-sansio"),
        Config("uvicorn-sansio-deflate-nct", 1, ws=NO_CONTEXT_TAKEOVER),
        Config("uvicorn-websockets-nodeflate", 1, ws="websockets", deflate=False),
        Config("uvicorn-wsproto-nodeflate", 1, ws="wsproto", deflate=False, needs="wsproto"),
    )
}
DEFAULT_FULL = ("pg-1p", "pg-redis-2p")
DEFAULT_SMOKE = ("pg-1p", "pg-redis-2p")


@dataclass(frozen=True)
class CpuPlan:
    """Server processes on one CPU, the load generator (all of this program) on another."""

    server: frozenset[int]
    loadgen: frozenset[int]

    @classmethod
    def choose(cls) -> CpuPlan:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return cls(frozenset(cpus), frozenset(cpus))
        return cls(frozenset(cpus[:1]), frozenset(cpus[1:2]))

    def describe(self) -> str:
        shared = " (shared: fewer than 2 CPUs)" if self.server == self.loadgen else ""
        return (
            f"server process(es) pinned to {procs.format_cpus(self.server)}; load generator "
            f"pinned to {procs.format_cpus(self.loadgen)}{shared}; PostgreSQL and Redis unpinned"
        )


# ---------------------------------------------------------------------------------------
# The database and the server processes


class BenchError(RuntimeError):
    """A configuration could not be prepared or run; the message says what happened."""


def recreate_database() -> None:
    """Drop ``onedoor_fanout`` (disconnecting leftover sessions) and create it empty."""

    async def recreate() -> None:
        connection = await asyncpg.connect(POSTGRES_DSN, timeout=5)
        try:
            await connection.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
            await connection.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            await connection.close()

    try:
        asyncio.run(recreate())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise BenchError(f"could not recreate database {DATABASE}: {exc}") from exc


def server_env(config: Config, var_dir: Path) -> dict[str, str]:
    """This environment without ONEDOOR_* settings, plus the configuration's own (one secret
    key for all processes, so a session cookie works on any of them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEDOOR_")}
    env.update(
        ONEDOOR_VAR_DIR=str(var_dir),
        ONEDOOR_DATABASE_URL=DATABASE_URL,
        ONEDOOR_SECRET_KEY=secrets.token_hex(32),
        ONEDOOR_HOST="127.0.0.1",
    )
    if config.processes > 1:
        env["ONEDOOR_REDIS_URL"] = REDIS_URL
    return env


@dataclass
class ServerProcess:
    """One server in its own process group (uvicorn workers, if any, are in it too)."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    exit_status: str = "running"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def board_url(self, hall_id: int, token: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/halls/{hall_id}/board?token={token}"

    def pids(self) -> list[int]:
        return procs.group_pids(self.process.pid)

    def rss_kib(self) -> int:
        return rss_kib(self.pids())

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> str:
        """SIGTERM the process group, SIGKILL what is left after STOP_TIMEOUT_S."""
        if self.exit_status != "running":
            return self.exit_status
        pgid = self.process.pid
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            self.exit_status = f"had exited by itself ({self.process.wait()})"
            return self.exit_status
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(STOP_TIMEOUT_S)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while procs.group_pids(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if procs.group_pids(pgid):
            with suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            self.exit_status = f"NOT stopped by SIGTERM in {STOP_TIMEOUT_S:.0f} s; killed"
        else:
            self.exit_status = "stopped on SIGTERM"
        self.process.wait()
        return self.exit_status


def rss_kib(pids: list[int]) -> int:
    """The summed VmRSS of ``pids`` (exited ones count 0), in KiB."""
    total = 0
    for pid in pids:
        with suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
    return total


def server_command(config: Config, port: int) -> list[str]:
    if config.ws is None:
        return [*ONEDOOR, "serve", "--no-migrate", "--port", str(port), "--log-level", "warning"]
    if config.ws == NO_CONTEXT_TAKEOVER:
        code = "from bench.fanout import serve_no_context_takeover; serve_no_context_takeover()"
        return [sys.executable, "-c", code]
    deflate = "true" if config.deflate else "false"
    return [*UVICORN, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
            "--ws", config.ws, "--ws-per-message-deflate", deflate]  # fmt: skip


def serve_no_context_takeover() -> None:
    """Serve the app on ONEDOOR_PORT with uvicorn's websockets-sansio layer, changed to
    negotiate permessage-deflate *without context takeover* in both directions.

    A prototype for the ``uvicorn-sansio-deflate-nct`` configuration, not part of OneDoor:
    uvicorn's layer keeps a zlib compressor and decompressor per connection for its whole
    life (about 45 KiB); without context takeover websockets makes one per message and
    frees it, so idle boards cost no zlib memory while messages are still compressed.
    """
    import logging

    import uvicorn
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
    from websockets.server import ServerProtocol

    class NoContextTakeover(WebSocketsSansIOProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            deflate = ServerPerMessageDeflateFactory(
                server_no_context_takeover=True,
                client_no_context_takeover=True,
                server_max_window_bits=12,
                client_max_window_bits=12,
                compress_settings={"memLevel": 5},
            )
            self.conn = ServerProtocol(
                extensions=[deflate],
                max_size=self.config.ws_max_size,
                logger=logging.getLogger("uvicorn.error"),
            )

    uvicorn.run(
        "queue_server.asgi:create_from_env",
        factory=True,
        host="127.0.0.1",
        port=int(os.environ["ONEDOOR_PORT"]),
        ws=NoContextTakeover,
        log_level="warning",
    )


def start_server(
    config: Config, env: dict[str, str], log_path: Path, cpus: frozenset[int]
) -> ServerProcess:
    """Start one server pinned to ``cpus`` and return it once GET /healthz answers 200."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            server_command(config, port),
            env={**env, "ONEDOOR_PORT": str(port)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )
    server = ServerProcess(process, port, log_path)
    try:
        os.sched_setaffinity(process.pid, cpus)  # before uvicorn starts; children inherit it
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                tail = "\n".join(server.log_text().splitlines()[-10:])
                raise BenchError(f"server exited with {process.returncode}:\n{tail}")
            with suppress(httpx.HTTPError):
                if httpx.get(f"{server.base_url}/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise BenchError(f"server not healthy in {START_TIMEOUT_S:.0f} s ({log_path})")
            time.sleep(0.1)
        for pid in server.pids():  # anything that escaped the pinning
            with suppress(ProcessLookupError):
                if os.sched_getaffinity(pid) != cpus:
                    os.sched_setaffinity(pid, cpus)
    except BaseException:
        server.stop()
        raise
    return server


# ---------------------------------------------------------------------------------------
# Halls, set up over the API


@dataclass
class Hall:
    """A hall ready for the benchmark: its devices' tokens and its clerk's open counter."""

    hall_id: int
    service_id: int
    counter_id: int
    kiosk_token: str
    board_token: str
    clerk: httpx.AsyncClient
    csrf: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


async def post(client: httpx.AsyncClient, path: str, body: Any = None, csrf: str = "") -> Any:
    """POST JSON and return the answer's JSON; BenchError unless 2xx (setup only)."""
    response = await client.post(path, json=body, headers={"X-CSRF-Token": csrf} if csrf else {})
    if not response.is_success:
        raise BenchError(f"POST {path} answered {response.status_code}: {response.text[:300]}")
    return response.json()


async def login(client: httpx.AsyncClient, username: str, password: str) -> str:
    """Sign ``client`` in (its cookie jar keeps the session); return the CSRF token."""
    answer = await post(client, "/api/auth/login", {"username": username, "password": password})
    return str(answer["csrf_token"])


async def build_hall(base_url: str, admin: httpx.AsyncClient, csrf: str, index: int) -> Hall:
    """One hall open around the clock: matter A, counter 1 opened by its clerk, two devices."""
    hall = await post(
        admin,
        "/api/halls",
        {
            "name_zh": f"扇出大厅{index}",
            "name_en": f"Fan-out hall {index}",
            "opening_hours": ALL_DAY,
        },
        csrf,
    )
    hall_id = int(hall["id"])
    service = await post(
        admin,
        f"/api/halls/{hall_id}/services",
        {"name_zh": "社会保险", "name_en": "Social insurance", "prefix": "A", "typical_minutes": 5},
        csrf,
    )
    profile = [{"service_id": service["id"], "level": "primary"}]
    counter = await post(
        admin,
        f"/api/halls/{hall_id}/counters",
        {"number": 1, "name": "c1", "profile": profile},
        csrf,
    )
    devices = f"/api/halls/{hall_id}/devices"
    kiosk = await post(admin, devices, {"kind": "kiosk", "name": "kiosk"}, csrf)
    board = await post(admin, devices, {"kind": "board", "name": "board"}, csrf)
    username = f"clerk{index:03d}"
    staff = {"username": username, "password": CLERK_PASSWORD, "role": "clerk"}
    await post(admin, f"/api/halls/{hall_id}/staff", staff, csrf)
    clerk = httpx.AsyncClient(base_url=base_url, timeout=HTTP_TIMEOUT, limits=HTTP_LIMITS)
    try:
        clerk_csrf = await login(clerk, username, CLERK_PASSWORD)
        await post(clerk, f"/api/counters/{counter['id']}/open", None, clerk_csrf)
    except BaseException:
        await clerk.aclose()
        raise
    return Hall(
        hall_id,
        int(service["id"]),
        int(counter["id"]),
        str(kiosk["token"]),
        str(board["token"]),
        clerk,
        clerk_csrf,
    )


async def build_halls(base_url: str, count: int) -> list[Hall]:
    """``count`` halls, built a few at a time; the clerks' clients stay open for the calls."""
    limit = asyncio.Semaphore(SETUP_CONCURRENCY)
    async with httpx.AsyncClient(
        base_url=base_url, timeout=HTTP_TIMEOUT, limits=HTTP_LIMITS
    ) as admin:
        csrf = await login(admin, ADMIN_USERNAME, ADMIN_PASSWORD)

        async def one(index: int) -> Hall:
            async with limit:
                return await build_hall(base_url, admin, csrf, index)

        results = await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)
    halls = [r for r in results if isinstance(r, Hall)]
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        await asyncio.gather(*(h.clerk.aclose() for h in halls))
        raise failures[0]
    return halls


async def hall_seqs(base_url: str, halls: list[Hall]) -> dict[int, int]:
    """Each hall's current sequence number, from its snapshot (the database's truth)."""
    async with httpx.AsyncClient(
        base_url=base_url, timeout=HTTP_TIMEOUT, limits=HTTP_LIMITS
    ) as client:

        async def seq(hall: Hall) -> tuple[int, int]:
            answer = await client.get(
                f"/api/halls/{hall.hall_id}/snapshot",
                headers={"Authorization": f"Bearer {hall.board_token}"},
            )
            answer.raise_for_status()
            return hall.hall_id, int(answer.json()["seq"])

        return dict(await asyncio.gather(*(seq(h) for h in halls)))


# ---------------------------------------------------------------------------------------
# The boards: a process of their own, driven over a pipe


@dataclass(frozen=True)
class BoardPlan:
    boards: list[tuple[int, str]]
    """(hall id, websocket URL) of every board to open."""
    concurrency: int


@dataclass(frozen=True)
class Opened:
    pid: int
    cpus: list[int]
    connected: int
    failed: int
    failure_samples: list[str]
    retries: int
    seconds: float


@dataclass(frozen=True)
class Finish:
    final_seqs: dict[int, int]
    """Each hall's seq once the calls were over: what every board must reach."""
    called: dict[int, list[int]]
    """The seqs of each hall's TicketCalled events."""
    drain_timeout_s: float


@dataclass(frozen=True)
class BoardsReport:
    """What the boards saw, summed over boards, plus when each board showed each call."""

    lost: int
    boards_with_loss: int
    loss_samples: list[str]
    resyncs: int
    dropped: int
    drop_samples: list[str]
    undrained: int
    drain_seconds: float
    deliveries: list[tuple[int, int, float, bool]]
    """(hall id, TicketCalled seq, receive time, came in a snapshot) per board and call."""


class FeedMessage(msgspec.Struct):
    """The fields of a board message the benchmark reads; the board itself is skipped."""

    type: str
    seq: int = 0


DECODER = msgspec.json.Decoder(FeedMessage)


class BoardClient:
    """One board websocket and its timeline: the seq and receive time of every snapshot
    and event (pings are skipped), in compact arrays."""

    __slots__ = ("closing", "dropped", "hall_id", "seqs", "snapshots", "task", "times", "url",
                 "ws")  # fmt: skip

    def __init__(self, hall_id: int, url: str) -> None:
        self.hall_id = hall_id
        self.url = url
        self.ws: Any = None
        self.task: asyncio.Task[None] | None = None
        self.seqs = array("q")
        self.times = array("d")
        self.snapshots = bytearray()
        """1 where the message at that index was a snapshot, 0 for an event."""
        self.closing = False
        self.dropped: str | None = None

    def record(self, raw: bytes, received: float) -> None:
        message = DECODER.decode(raw)
        if message.type in ("snapshot", "event"):
            self.seqs.append(message.seq)
            self.times.append(received)
            self.snapshots.append(message.type == "snapshot")

    @property
    def high(self) -> int:
        """The highest seq this board has seen (-1 before its first message)."""
        return max(self.seqs, default=-1)

    @property
    def resyncs(self) -> int:
        """Snapshots after the first message."""
        return sum(self.snapshots[1:])

    async def connect(self) -> None:
        """Open the websocket and wait for the first snapshot; raise if either fails."""
        self.ws = await websockets.connect(
            self.url,
            proxy=None,
            open_timeout=OPEN_TIMEOUT_S,
            close_timeout=CLOSE_TIMEOUT_S,
            ping_interval=None,  # the server pings; 5,000 client pings would only add noise
        )
        try:
            first = await asyncio.wait_for(self.ws.recv(decode=False), OPEN_TIMEOUT_S)
            self.record(first, time.time())
            if not self.snapshots or not self.snapshots[0]:
                raise BenchError(f"the first message was not a snapshot: {first[:80]!r}")
        except BaseException:
            await self.ws.close()
            raise
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                raw = await self.ws.recv(decode=False)
                self.record(raw, time.time())
        except ConnectionClosed as exc:
            if not self.closing:
                self.dropped = f"hall {self.hall_id}: closed by the server ({exc})"
        except Exception as exc:
            self.dropped = f"hall {self.hall_id}: {exc!r}"

    def missing(self, final_seq: int) -> list[int]:
        """The hall's seqs after the first snapshot that neither arrived as an event nor
        are covered by a later snapshot (seq ≤ the snapshot's)."""
        covered = max((s for s, snap in zip(self.seqs, self.snapshots, strict=True) if snap))
        events = {s for s, snap in zip(self.seqs, self.snapshots, strict=True) if not snap}
        return [s for s in range(covered + 1, final_seq + 1) if s not in events]

    def deliveries(self, called: list[int]) -> Iterator[tuple[int, float, bool]]:
        """For each called seq after the first snapshot: when the board first showed it
        (the first message with a seq at least as high) and whether that was a snapshot."""
        reached = list(itertools.accumulate(self.seqs, max))
        for seq in called:
            if seq <= self.seqs[0]:
                continue
            index = bisect.bisect_left(reached, seq)
            if index < len(reached):
                yield seq, self.times[index], bool(self.snapshots[index])

    async def close(self) -> None:
        self.closing = True
        if self.ws is not None:
            with suppress(Exception):
                await self.ws.close()
        if self.task is not None:
            self.task.cancel()
            with suppress(asyncio.CancelledError):
                await self.task


async def open_boards(
    boards: list[BoardClient], concurrency: int
) -> tuple[int, list[str], int, float]:
    """Open every board, ``concurrency`` handshakes at a time, each tried CONNECT_ATTEMPTS
    times; return (failed, failure samples, retries, seconds)."""
    limit = asyncio.Semaphore(concurrency)
    failures: list[str] = []
    retries = 0

    async def one(board: BoardClient) -> None:
        nonlocal retries
        for attempt in range(CONNECT_ATTEMPTS):
            async with limit:
                try:
                    await board.connect()
                    return
                except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError,
                        BenchError) as exc:  # fmt: skip
                    error = f"hall {board.hall_id}: {exc!r}"
            if attempt + 1 < CONNECT_ATTEMPTS:
                retries += 1
                await asyncio.sleep(0.5 * 2**attempt)
        failures.append(error)

    started = time.monotonic()
    await asyncio.gather(*(one(b) for b in boards))
    return len(failures), failures[:MAX_SAMPLES], retries, time.monotonic() - started


async def drain(boards: list[BoardClient], final_seqs: dict[int, int], limit_s: float) -> int:
    """Wait until every open board has reached its hall's final seq; return how many have
    not after ``limit_s`` seconds."""
    deadline = time.monotonic() + limit_s
    while True:
        behind = sum(
            1 for b in boards if b.dropped is None and b.high < final_seqs.get(b.hall_id, 0)
        )
        if behind == 0 or time.monotonic() > deadline:
            return behind
        await asyncio.sleep(0.05)


def summarise(
    boards: list[BoardClient], finish: Finish, undrained: int, drain_s: float
) -> BoardsReport:
    lost = boards_with_loss = resyncs = dropped = 0
    loss_samples: list[str] = []
    drop_samples: list[str] = []
    deliveries: list[tuple[int, int, float, bool]] = []
    for board in boards:
        missing = board.missing(finish.final_seqs.get(board.hall_id, 0))
        if missing:
            lost += len(missing)
            boards_with_loss += 1
            if len(loss_samples) < MAX_SAMPLES:
                loss_samples.append(f"hall {board.hall_id}: seqs {missing[:10]}")
        resyncs += board.resyncs
        if board.dropped is not None:
            dropped += 1
            if len(drop_samples) < MAX_SAMPLES:
                drop_samples.append(board.dropped)
        called = finish.called.get(board.hall_id, [])
        deliveries += [(board.hall_id, *d) for d in board.deliveries(called)]
    return BoardsReport(
        lost, boards_with_loss, loss_samples, resyncs, dropped, drop_samples, undrained,
        drain_s, deliveries,
    )  # fmt: skip


async def boards_main(conn: Connection) -> None:
    """The boards process: open the boards, then on ``Finish`` drain, report and close."""
    loop = asyncio.get_running_loop()
    plan: BoardPlan = await loop.run_in_executor(None, conn.recv)
    boards = [BoardClient(hall_id, url) for hall_id, url in plan.boards]
    try:
        failed, samples, retries, seconds = await open_boards(boards, plan.concurrency)
        boards = [b for b in boards if b.task is not None]
        cpus = sorted(os.sched_getaffinity(0))
        conn.send(Opened(os.getpid(), cpus, len(boards), failed, samples, retries, seconds))
        finish: Finish = await loop.run_in_executor(None, conn.recv)
        started = time.monotonic()
        undrained = await drain(boards, finish.final_seqs, finish.drain_timeout_s)
        conn.send(summarise(boards, finish, undrained, time.monotonic() - started))
    finally:
        limit = asyncio.Semaphore(500)

        async def close(board: BoardClient) -> None:
            async with limit:
                await board.close()

        await asyncio.gather(*(close(b) for b in boards))


def boards_process(conn: Connection, cpus: list[int]) -> None:
    """Entry point of the boards process (multiprocessing, spawned)."""
    os.sched_setaffinity(0, cpus)
    try:
        asyncio.run(boards_main(conn))
    except (EOFError, KeyboardInterrupt):
        pass  # the parent went away or stopped us
    except BaseException:
        with suppress(OSError):
            conn.send(BenchError(traceback.format_exc()))
        raise


class Boards:
    """The parent's handle on the boards process."""

    def __init__(self, cpus: frozenset[int]) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(
            target=boards_process, args=(child, sorted(cpus)), name="fanout-boards", daemon=True
        )
        self.process.start()
        child.close()

    async def ask(self, message: object, wait_s: float = REPLY_TIMEOUT_S) -> Any:
        """Send ``message`` and wait for the answer without blocking the event loop."""
        self._conn.send(message)
        loop = asyncio.get_running_loop()
        ready = await loop.run_in_executor(None, self._conn.poll, wait_s)
        if not ready:
            raise BenchError(f"the boards process did not answer in {wait_s:.0f} s")
        answer = self._conn.recv()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def stop(self) -> None:
        """End the boards process (ours): it closes its websockets itself if it still can."""
        with suppress(OSError):
            self._conn.close()
        self.process.join(20)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


# ---------------------------------------------------------------------------------------
# The calls


@dataclass
class Calls:
    """What the caller saw: when each call-next answered, and every failed request."""

    returned: dict[tuple[int, int], float] = field(default_factory=dict)
    """(hall id, ticket id) → wall-clock time the call-next answer arrived."""
    statuses: Counter[str] = field(default_factory=Counter)
    """Failed requests by status ("5xx" included) or exception name."""
    samples: list[str] = field(default_factory=list)
    late_ms: list[float] = field(default_factory=list)
    """How long after its scheduled time each call started (issuing its ticket)."""
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status.startswith("5"))


async def request(
    calls: Calls, client: httpx.AsyncClient, path: str, headers: dict[str, str], body: Any = None
) -> Any | None:
    """POST during the call phase; a failure is counted, not raised; None then."""
    try:
        response = await client.post(path, json=body, headers=headers)
    except httpx.HTTPError as exc:
        calls.statuses[type(exc).__name__] += 1
        if len(calls.samples) < MAX_SAMPLES:
            calls.samples.append(f"POST {path}: {exc!r}")
        return None
    if not response.is_success:
        calls.statuses[str(response.status_code)] += 1
        if len(calls.samples) < MAX_SAMPLES:
            calls.samples.append(f"POST {path}: {response.status_code} {response.text[:200]}")
        return None
    return response.json()


async def call_once(calls: Calls, kiosk: httpx.AsyncClient, hall: Hall, due: float) -> None:
    """Issue a ticket, call next (recording when the answer arrived), mark a no-show."""
    async with hall.lock:
        calls.late_ms.append((time.monotonic() - due) * 1000)
        bearer = {"Authorization": f"Bearer {hall.kiosk_token}"}
        issued = await request(
            calls,
            kiosk,
            f"/api/halls/{hall.hall_id}/tickets",
            bearer,
            {"service_id": hall.service_id},
        )
        if issued is None:
            return
        csrf = {"X-CSRF-Token": hall.csrf}
        answer = await request(
            calls, hall.clerk, f"/api/counters/{hall.counter_id}/call-next", csrf
        )
        returned = time.time()
        if answer is None:
            return
        if answer.get("ticket") is None:
            calls.statuses["nobody to call"] += 1
            return
        calls.returned[(hall.hall_id, int(answer["ticket"]["id"]))] = returned
        await request(calls, hall.clerk, f"/api/counters/{hall.counter_id}/no-show", csrf)


async def make_calls(base_url: str, halls: list[Hall], sizes: Sizes) -> Calls:
    """``sizes.calls`` calls at a steady total rate, round robin over the halls (a hall's
    calls never overlap: its clerk has one counter)."""
    calls = Calls()
    async with httpx.AsyncClient(
        base_url=base_url, timeout=HTTP_TIMEOUT, limits=HTTP_LIMITS
    ) as kiosk:
        started = time.monotonic()
        tasks = []
        for index in range(sizes.calls):
            due = started + index / sizes.calls_per_s
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            hall = halls[index % len(halls)]
            tasks.append(asyncio.create_task(call_once(calls, kiosk, hall, due)))
        await asyncio.gather(*tasks)
        calls.seconds = time.monotonic() - started
    return calls


# ---------------------------------------------------------------------------------------
# One configuration


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


# ---------------------------------------------------------------------------------------
# The report

HEADERS = ("config", "boards", "halls", "calls", "p50 ms", "p99 ms", "max ms", "events lost",
           "resyncs", "KiB/conn", "KiB/conn after calls", "server RSS MiB")  # fmt: skip


def _num(value: float, digits: int = 1) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _spread(values: list[float]) -> str:
    """``p50 X, p99 Y, max Z ms`` of ``values``."""
    worst = max(values) if values else math.nan
    return (
        f"p50 {_num(percentile(values, 0.5))}, p99 {_num(percentile(values, 0.99))}, "
        f"max {_num(worst)} ms"
    )


def row(result: Result) -> tuple[str, ...]:
    if result.error is not None or result.skipped is not None:
        return (result.config.name, *["-"] * (len(HEADERS) - 1))
    latencies = result.at_ms
    report = result.boards
    return (
        result.config.name,
        str(result.connected),
        str(result.sizes.halls),
        str(len(result.calls.returned)),
        _num(percentile(latencies, 0.50)),
        _num(percentile(latencies, 0.99)),
        _num(max(latencies) if latencies else math.nan),
        str(report.lost) if report else "-",
        str(report.resyncs) if report else "-",
        _num(result.kib_per_connection(result.rss_idle_kib)),
        _num(result.kib_per_connection(result.rss_after_calls_kib)),
        _num(result.rss_idle_kib / 1024, 0),
    )


def format_table(results: list[Result]) -> str:
    table = [HEADERS, *(row(r) for r in results)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(HEADERS), "  ".join("-" * w for w in widths), *map(line, table[1:])])


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def cpu_notes(result: Result) -> list[str]:
    """Who used the CPUs during the call phase, as a share of one CPU each, and a warning
    when work outside the benchmark's own processes may have slowed it down."""
    seconds = result.calls.seconds
    cpu = result.cpu

    def share(used: float) -> str:
        return f"{100 * used / seconds:.0f}%"

    rest = cpu.machine - cpu.server - cpu.boards - cpu.caller
    lines = [
        f"  CPU during the calls (share of one CPU): server {share(cpu.server)}, boards "
        f"process {share(cpu.boards)}, caller {share(cpu.caller)}, everything else "
        f"(PostgreSQL, Redis, other processes) {share(rest)}"
    ]
    if rest / seconds > BUSY_MACHINE_SHARE:
        lines.append(
            f"  WARNING: work outside the server and the load generator used {share(rest)} of "
            "a CPU during the calls (more than PostgreSQL and Redis need here): other "
            "processes were busy and the latencies above may be inflated"
        )
    return lines


def notes(result: Result) -> list[str]:
    """What a reader needs beside the row: targets, the load generator, errors, CPU use."""
    lines = [f"{result.config.name}: {result.config.describe()}"]
    if result.skipped is not None:
        return [*lines, f"  {result.skipped}"]
    if result.error is not None:
        return [*lines, f"  could not run: {result.error}", *result.servers, *result.log_notes]
    p99 = percentile(result.at_ms, 0.99)
    kib = result.kib_per_connection(result.rss_idle_kib)
    calls = result.calls
    lines += [
        f"  targets: p99 ≤ {TARGET_P99_MS:.0f} ms {verdict(p99 <= TARGET_P99_MS)} "
        f"({_num(p99)} ms); ≤ {TARGET_KIB_PER_CONNECTION:.0f} KiB/connection "
        f"{verdict(kib <= TARGET_KIB_PER_CONNECTION)} ({_num(kib)} KiB idle)",
        f"  load generator: {result.loadgen}",
        f"  opened {result.connected} boards in {result.connect_seconds:.1f} s "
        f"({result.connect_retries} retries, {result.connect_failed} failed)",
        f"  server RSS: {result.rss_before_kib / 1024:.0f} MiB before the boards, "
        f"{result.rss_idle_kib / 1024:.0f} MiB with them idle, "
        f"{result.rss_after_calls_kib / 1024:.0f} MiB after the calls",
    ]
    if calls.seconds:
        lines += [
            f"  calls: {len(calls.returned)} in {calls.seconds:.1f} s "
            f"({len(calls.returned) / calls.seconds:.1f}/s of {result.sizes.calls_per_s:g}/s "
            f"offered), start delay {_spread(calls.late_ms)}",
            f"  board messages fanned out during the calls: {result.board_messages} "
            f"({result.board_messages / calls.seconds:.0f}/s; server CPU "
            f"{1e6 * result.cpu.server / max(result.board_messages, 1):.0f} µs per message, "
            "API requests included)",
            *cpu_notes(result),
        ]
    if result.boards is not None:
        report = result.boards
        lines += [
            f"  deliveries: {len(result.at_ms)} (board, call) pairs, {result.by_snapshot} of "
            f"them by a snapshot; drain {report.drain_seconds:.1f} s"
            + (f", {report.undrained} boards never caught up" if report.undrained else ""),
            f"    board shows call - event 'at' (table):        {_spread(result.at_ms)}",
            f"    board shows call - call-next answer arrived:  {_spread(result.answer_ms)}",
            f"    board shows call - relay claimed the event:   {_spread(result.fanout_ms)}",
            f"    relay claimed the event - event 'at' (/call): {_spread(result.relay_ms)}",
        ]
        lines += [f"  lost: {s}" for s in report.loss_samples]
        lines += [f"  dropped: {s}" for s in report.drop_samples]
    if calls.failed:
        lines.append(f"  failed requests: {dict(calls.statuses)}")
        lines += [f"    {s}" for s in calls.samples]
    lines += [f"  connect failure: {s}" for s in result.connect_samples]
    lines += [f"  server {s}" for s in result.servers]
    lines += [f"  {s}" for s in result.log_notes]
    return lines


def report(results: list[Result], cpus: CpuPlan, smoke: bool) -> str:
    sizes = results[0].sizes
    head = [
        f"OneDoor websocket fan-out ({'smoke' if smoke else 'full'} run, "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')})",
        f"load generator: websockets {version('websockets')} client (asyncio, one process for "
        f"all boards, permessage-deflate offered) + httpx {httpx.__version__} caller",
        f"pinning: {cpus.describe()}",
        f"per configuration: {sizes.halls} halls x {sizes.boards_per_hall} boards; "
        f"{sizes.calls} calls (issue, call-next, no-show) at {sizes.calls_per_s:g}/s",
        "latency: per (board, TicketCalled), the receive time (time.time()) of the board's first "
        "message (event or snapshot) with seq >= the call's, minus the event's 'at' (the "
        "server's clock at the change, before the commit; same machine)",
        "KiB/conn: growth of the server processes' summed VmRSS / boards, with the boards "
        "idle, and after the calls",
        "",
    ]
    body = [format_table(results), ""]
    for result in results:
        body += notes(result)
    failures = [f"{r.config.name}: {f}" for r in results for f in r.failures]
    tail = ["", "FAILED: " + "; ".join(failures) if failures else "OK: no event lost, no errors"]
    return "\n".join(head + body + tail)


# ---------------------------------------------------------------------------------------
# Command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fanout",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--smoke", action="store_true", help="a short run for CI (< 60 s)")
    parser.add_argument(
        "--configs",
        help=f"comma-separated, of {', '.join(CONFIGS)} or 'all' (default: "
        f"{','.join(DEFAULT_FULL)}; smoke: {','.join(DEFAULT_SMOKE)})",
    )
    parser.add_argument("--halls", type=int, help="halls per configuration")
    parser.add_argument("--boards-per-hall", type=int, help="board websockets per hall")
    parser.add_argument("--rate", type=float, help="calls per second, all halls together")
    parser.add_argument("--seconds", type=float, help="length of the call phase")
    return parser.parse_args(argv)


def chosen(args: argparse.Namespace) -> tuple[Sizes, list[Config]]:
    sizes = SMOKE if args.smoke else FULL
    overrides = {
        "halls": args.halls,
        "boards_per_hall": args.boards_per_hall,
        "calls_per_s": args.rate,
        "call_seconds": args.seconds,
    }
    sizes = replace(sizes, **{k: v for k, v in overrides.items() if v})
    names = (
        args.configs.split(",") if args.configs else (DEFAULT_SMOKE if args.smoke else DEFAULT_FULL)
    )
    if list(names) == ["all"]:
        names = list(CONFIGS)
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configuration(s) {unknown}; known: {', '.join(CONFIGS)}")
    return sizes, [CONFIGS[n] for n in names]


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Let SIGTERM unwind like Ctrl-C, so every ``finally`` stops its servers."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes, configs = chosen(args)
    cpus = CpuPlan.choose()
    os.sched_setaffinity(0, cpus.loadgen)  # this process makes the calls
    RESULTS.mkdir(parents=True, exist_ok=True)
    results = []
    started = time.monotonic()
    with sigterm_as_interrupt():
        for config in configs:
            print(f"{config.name}: {config.describe()}", flush=True)
            results.append(run_config(config, sizes, cpus, RESULTS))
    text = report(results, cpus, args.smoke)
    text += f"\n(total {time.monotonic() - started:.0f} s)"
    print("\n" + text)
    (RESULTS / "fanout.txt").write_text(text + "\n")
    return 1 if any(r.failures for r in results) else 0


if __name__ == "__main__":
    # Run main from the module imported under its own name, so the classes that cross the
    # pipe to the boards process pickle as bench.fanout.*, not __main__.*.
    from bench.fanout import main as imported_main

    sys.exit(imported_main())
