"""Real OneDoor server processes (and a private Redis) for the end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from queue_server.serving import uvicorn_options

ONEDOOR = [sys.executable, "-m", "queue_server.cli"]
# How long a server may take to answer /healthz. On a busy two-core machine a start (the
# migration check, then the app) was measured at up to 18 s, and a little over 20 now and
# then: give it room, it answers the moment it is up.
HEALTHY_WITHIN_S = 60
CREDENTIAL = re.compile(r"^\s+(\w+)\s+(?:login|token): (?:\w+ / )?(\S+)$", re.M)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def served_in_process(app: Any, **options: Any) -> AsyncIterator[uvicorn.Server]:
    """``app`` served by uvicorn in this event loop on a free port, with the options
    ``onedoor serve`` gives it (``options`` override them); the server, once it serves."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0,
                            **{**uvicorn_options("warning"), **options})  # fmt: skip
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(20):
            while not server.started:
                assert not serving.done(), "the server stopped while starting"
                await asyncio.sleep(0.02)
        yield server
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 20)


def port_of(server: uvicorn.Server) -> int:
    return int(server.servers[0].sockets[0].getsockname()[1])


def onedoor(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ONEDOOR, *args], env=env, capture_output=True, text=True, timeout=120)


def load_demo(env: dict[str, str]) -> dict[str, str]:
    """Load the demo hall; its credentials by name (manager, clerk, kiosk, board)."""
    done = onedoor(["demo"], env)
    assert done.returncode == 0, done.stderr
    return dict(CREDENTIAL.findall(done.stdout))


def load_demo_without_printer(env: dict[str, str]) -> dict[str, str]:
    creds = load_demo(env)
    remove_printers(env)
    return creds


def remove_printers(env: dict[str, str]) -> None:
    """Take the demo's printer away (for tests about other things than printing)."""
    import sqlalchemy

    url = env["ONEDOOR_DATABASE_URL"]
    if url.startswith("postgresql"):
        import asyncio
        import concurrent.futures

        import asyncpg

        async def drop() -> None:
            conn = await asyncpg.connect(env["ONEDOOR_DATABASE_URL"].replace("+asyncpg", ""))
            await conn.execute("UPDATE devices SET revoked_at = now() WHERE kind = 'printer'")
            await conn.close()

        # Callers may be inside an event loop: run the query on a thread of its own.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, drop()).result()
        return
    engine = sqlalchemy.create_engine(url.replace("+aiosqlite", ""))
    with engine.begin() as conn:
        conn.execute(
            sqlalchemy.text(
                "UPDATE devices SET revoked_at = CURRENT_TIMESTAMP WHERE kind = 'printer'"
            )
        )
    engine.dispose()


def server_env(var_dir: Path, database_url: str, redis_url: str | None = None) -> dict[str, str]:
    # The scheduled jobs stay off unless a test turns them on: a day close or a release
    # firing mid-test (they follow the real clock) would change what the test counts.
    env = {**os.environ, "ONEDOOR_VAR_DIR": str(var_dir), "ONEDOOR_DATABASE_URL": database_url,
           "ONEDOOR_SECRET_KEY": "ab" * 32, "ONEDOOR_SCHEDULER": "0"}  # fmt: skip
    if redis_url:
        env["ONEDOOR_REDIS_URL"] = redis_url
    return env


@dataclass
class Server:
    """``onedoor serve`` in a subprocess on its own port."""

    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None
    log: Path | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> Server:
        self.log = Path(self.env["ONEDOOR_VAR_DIR"]) / f"server-{self.port}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [*ONEDOOR, "serve", "--port", str(self.port), "--log-level", "warning"],
            env=self.env, stdout=self.log.open("w"), stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + HEALTHY_WITHIN_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"server not healthy in {HEALTHY_WITHIN_S} s: {self.log.read_text()}")

    def stop(self) -> str:
        """Stop the server; return what it logged (asserting it logged no traceback)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        output = self.log.read_text() if self.log else ""
        return output

    def kill(self) -> None:
        """Die without a goodbye, as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()


@dataclass
class PrivateRedis:
    """A redis-server of the test's own, so the test may stop and restart it."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        exe = shutil.which("redis-server")
        assert exe, "redis-server is not installed"
        self.process = subprocess.Popen(
            [exe, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("private redis did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    @contextmanager
    def started(self) -> Iterator[PrivateRedis]:
        """Started for the ``with`` block, stopped after it whatever happened."""
        self.start()
        try:
            yield self
        finally:
            self.stop()


@contextmanager
def two_servers_own_redis(
    var_dir: Path, database_url: str
) -> Iterator[tuple[Server, Server, dict[str, str], list[str]]]:
    """The demo hall (no printer) served by two processes with a Redis of their own, so no
    other test's servers hear (or answer) their invalidations. The list holds the servers'
    logs once they have stopped, for the caller to check."""
    broker = PrivateRedis().start()
    env = server_env(var_dir, database_url, broker.url)
    creds = load_demo_without_printer(env)
    servers = [Server(env), Server(env)]
    logs: list[str] = []
    try:
        for server in servers:
            server.start()
        yield servers[0], servers[1], creds, logs
    finally:
        logs.extend(server.stop() for server in servers)
        broker.stop()
