"""A fresh OneDoor server in a subprocess: its own process group, pinned CPUs, and a log file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from . import procs
from .stalls import LOOP_STALL_MS

ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "bench-admin-password"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
ONEDOOR = [sys.executable, "-m", "queue_server.cli"]


class ServerError(RuntimeError):
    """The server could not be prepared or started; the message says what happened."""


@dataclass(frozen=True)
class ServerSpec:
    """One benchmark configuration: where the data lives and how many worker processes."""

    name: str
    database_url: str | None
    """SQLAlchemy async URL, or None for a SQLite file in the fresh var dir."""
    workers: int
    redis_url: str | None = None
    """Fan-out between the worker processes, as a real multi-process deployment has."""
    env: tuple[tuple[str, str], ...] = ()
    """Further settings for the server, e.g. ``(("ONEDOOR_SCHEDULER", "0"),)``."""


@dataclass
class RunningServer:
    base_url: str
    pgid: int
    pids: list[int]
    """The main process and its helpers and workers, as seen once /healthz answered."""
    processes: str
    """``pids`` with their roles, e.g. ``main 10, resource tracker 11, worker 12``."""
    log_path: Path
    repinned: list[int]
    """Processes that had not inherited the CPU pinning and were pinned after the start."""
    exit_status: str = "running"
    """How it ended, once stopped: a clean exit on SIGTERM, or killed."""


def free_port() -> int:
    """A TCP port on localhost that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(spec: ServerSpec, var_dir: Path, port: int) -> dict[str, str]:
    """This environment minus any ONEDOOR_* setting, plus the configuration's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEDOOR_")}
    env.update(
        ONEDOOR_VAR_DIR=str(var_dir),
        ONEDOOR_HOST="127.0.0.1",
        ONEDOOR_PORT=str(port),
        ONEDOOR_WORKERS=str(spec.workers),
    )
    if spec.database_url:
        env["ONEDOOR_DATABASE_URL"] = spec.database_url
    if spec.redis_url:
        env["ONEDOOR_REDIS_URL"] = spec.redis_url
    env["ONEDOOR_LOOP_STALL_MS"] = str(LOOP_STALL_MS)
    env.update(spec.env)
    return env


def create_admin(env: dict[str, str]) -> None:
    """Migrate the fresh database and create the admin with ``onedoor create-admin``."""
    command = [*ONEDOOR, "create-admin", "--username", ADMIN_USERNAME, "--password"]
    done = subprocess.run(
        [*command, ADMIN_PASSWORD], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise ServerError(f"onedoor create-admin failed ({done.returncode}): {done.stderr[-800:]}")


def _log_tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_healthy(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    """Return once GET /healthz answers 200; ServerError if the server exits or is too slow."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(
                f"server exited with {process.returncode} before it was healthy; "
                f"last lines of {log_path}:\n{_log_tail(log_path)}"
            )
        try:
            if httpx.get(f"{base_url}/healthz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise ServerError(f"server not healthy after {START_TIMEOUT_S:.0f} s; see {log_path}")


def wait_for_workers(pgid: int, workers: int) -> list[int]:
    """The server's processes once ``workers`` uvicorn workers run (when more than one; a
    single worker is the main process itself), or as they are after START_TIMEOUT_S."""
    deadline = time.monotonic() + START_TIMEOUT_S
    pids = procs.group_pids(pgid)
    while workers > 1 and time.monotonic() < deadline:
        if sum(procs.role(pid) == "worker" for pid in pids) >= workers:
            break
        time.sleep(0.1)
        pids = procs.group_pids(pgid)
    return pids


def describe_processes(pids: list[int]) -> str:
    """E.g. ``main 10, resource tracker 11, worker 12, worker 13``."""
    return ", ".join(f"{procs.role(pid)} {pid}" for pid in pids)


def pin_group(pids: list[int], cpus: frozenset[int]) -> list[int]:
    """Pin each of ``pids`` to ``cpus``; return those that were not pinned already."""
    repinned = []
    for pid in pids:
        try:
            if os.sched_getaffinity(pid) != cpus:
                os.sched_setaffinity(pid, cpus)
                repinned.append(pid)
        except ProcessLookupError:
            continue
    return repinned


def _ended(returncode: int) -> str:
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal: -15 is normal.
    return f"ended by signal {-returncode}" if returncode < 0 else f"exit code {returncode}"


def stop(process: subprocess.Popen[bytes]) -> str:
    """SIGTERM the server's whole process group, SIGKILL whatever is left after
    STOP_TIMEOUT_S; return how it ended."""
    pgid = process.pid
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return f"had exited by itself ({_ended(process.wait())})"
    with suppress(subprocess.TimeoutExpired):
        process.wait(STOP_TIMEOUT_S)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while procs.group_pids(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not procs.group_pids(pgid):
        return f"stopped on SIGTERM ({_ended(process.wait())})"
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    ended = _ended(process.wait())
    return f"NOT stopped by SIGTERM within {STOP_TIMEOUT_S:.0f} s; killed ({ended})"


@contextmanager
def running_server(
    spec: ServerSpec, var_dir: Path, log_path: Path, cpus: frozenset[int]
) -> Iterator[RunningServer]:
    """Create the admin (which migrates the database), start ``onedoor serve`` on ``cpus``
    and yield it once healthy; the server is stopped on the way out, whatever happened."""
    port = free_port()
    env = server_env(spec, var_dir, port)
    create_admin(env)
    command = [*ONEDOOR, "serve", "--no-migrate", "--log-level", "warning"]
    with running_process(command, env, port, spec.workers, log_path, cpus) as server:
        yield server


@contextmanager
def running_process(
    command: list[str],
    env: dict[str, str],
    port: int,
    workers: int,
    log_path: Path,
    cpus: frozenset[int],
) -> Iterator[RunningServer]:
    """Start ``command`` (a server listening on ``port`` with ``workers`` uvicorn workers and
    a /healthz route) in its own process group on ``cpus``, and yield it once healthy; it is
    stopped on the way out, whatever happened."""
    base_url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        server = RunningServer(base_url, process.pid, [process.pid], "", log_path, [])
        try:
            # Set before the interpreter gets to start uvicorn, so its workers inherit it.
            os.sched_setaffinity(process.pid, cpus)
            wait_healthy(process, base_url, log_path)
            server.pids = wait_for_workers(process.pid, workers)
            server.processes = describe_processes(server.pids)
            server.repinned = pin_group(server.pids, cpus)
            yield server
        finally:
            server.exit_status = stop(process)
