"""The database and the server processes of one configuration."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from .. import procs
from ..server import free_port
from .options import NO_CONTEXT_TAKEOVER, ROOT, BenchError, Config

DATABASE = "onedoor_fanout"
POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE_URL = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{DATABASE}"
DATABASE_DSN = f"postgresql://postgres@127.0.0.1:5432/{DATABASE}"
REDIS_URL = "redis://127.0.0.1:6379/0"
ONEDOOR = [sys.executable, "-m", "queue_server.cli"]
UVICORN = [sys.executable, "-m", "uvicorn", "--factory", "queue_server.asgi:create_from_env"]

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


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
        code = (
            "from bench.fanout.servers import serve_no_context_takeover; "
            "serve_no_context_takeover()"
        )
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
