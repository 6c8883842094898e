"""The boards: a process of their own, driven over a pipe. Each board is a websocket
client that keeps a compact timeline of what it received; the process reports what they
saw (lost events, resyncs, drops, when each board showed each call)."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import multiprocessing
import os
import time
import traceback
from array import array
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import msgspec
import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from .options import MAX_SAMPLES, BenchError

CONNECT_ATTEMPTS = 3
OPEN_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 2.0
REPLY_TIMEOUT_S = 600.0
"""How long the parent waits for the boards process to finish a step before giving up."""


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
