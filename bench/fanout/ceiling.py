"""The sockets' ceiling: what an idle websocket costs the ASGI server and the websocket
library alone, for the boards' KiB per connection to stand beside.

A bare ASGI app — no Litestar, no OneDoor, no tasks of its own — served by uvicorn with the
options ``onedoor serve`` gives it (``serving.uvicorn_options``: its lean subclass of
uvicorn's websockets-sansio protocol, no compression), pinned like the boards' server, and
again with uvicorn's own websockets-sansio protocol (``STOCK``). Each socket is accepted,
sent one small message (as a board gets its snapshot), then only read until it closes: uvicorn's
connection task and protocol objects and the library's parser are all it holds. The same
number of sockets as the boards are opened with the same client library, and the server's
RSS growth per socket is reported beside OneDoor's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import httpx
import websockets

from ..server import free_port
from .options import ROOT, BenchError, CpuPlan
from .servers import START_TIMEOUT_S, rss_kib

SNAPSHOT = '{"type":"snapshot","seq":0,"board":{}}'
STOCK = "websockets-sansio"
"""uvicorn's own protocol, which ``onedoor serve``'s (queue_server/lean_websocket.py) trims."""
OPEN_AT_ONCE = 200
SETTLE_S = 1.0


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The bare ASGI app: ``GET`` answers ok; a websocket is accepted, sent one message and
    read until it closes."""
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
    elif scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
    elif scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": SNAPSHOT})
        while (message := await receive())["type"] != "websocket.disconnect":
            del message


def serve(port: int, ws: str | None = None) -> None:
    """Serve ``app`` as ``onedoor serve`` serves OneDoor's (one process); with ``ws``,
    with that uvicorn websocket implementation instead of ``onedoor serve``'s."""
    import uvicorn

    from queue_server.serving import uvicorn_options

    options = uvicorn_options("warning")
    if ws is not None:
        options["ws"] = ws
    uvicorn.run("bench.fanout.ceiling:app", host="127.0.0.1", port=port, **options)


@dataclass(frozen=True)
class Ceiling:
    connected: int
    kib_per_connection: float
    rss_before_kib: int
    rss_idle_kib: int


def _raise_open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _open(url: str, count: int) -> list[Any]:
    gate = asyncio.Semaphore(OPEN_AT_ONCE)
    sockets: list[Any] = []

    async def one() -> None:
        async with gate:
            socket = await websockets.connect(url, open_timeout=30, max_queue=4)
            await socket.recv()  # the accept and its one message: the server is done
            sockets.append(socket)

    await asyncio.gather(*(one() for _ in range(count)))
    return sockets


async def _hold(url: str, count: int, pids: list[int]) -> Ceiling:
    before = rss_kib(pids)
    sockets = await _open(url, count)
    try:
        await asyncio.sleep(SETTLE_S)
        idle = rss_kib(pids)
    finally:
        await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    return Ceiling(len(sockets), (idle - before) / max(len(sockets), 1), before, idle)


def measure(count: int, cpus: CpuPlan, ws: str | None = None) -> Ceiling:
    """Serve the bare app pinned to the server's CPUs (with ``onedoor serve``'s websocket
    protocol, or uvicorn's ``ws``), open ``count`` idle sockets from this process, and
    return the server's RSS growth per socket."""
    _raise_open_files()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", f"from bench.fanout.ceiling import serve; serve({port}, {ws!r})"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, cwd=ROOT,
    )  # fmt: skip
    try:
        os.sched_setaffinity(process.pid, cpus.server)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                err = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise BenchError(f"the ceiling server exited with {process.returncode}: {err}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise BenchError(f"the ceiling server did not answer in {START_TIMEOUT_S:.0f} s")
            time.sleep(0.1)
        return asyncio.run(_hold(f"ws://127.0.0.1:{port}/ws", count, [process.pid]))
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
