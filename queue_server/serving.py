"""How ``onedoor serve`` runs uvicorn: one process, or N balanced worker processes.

uvicorn's own ``workers=N`` shares one listening socket between its workers; whichever
worker wakes first accepts, so keep-alive connections (a load balancer's, a board's, a
load test's) pile up on one process while the others idle — measured, all 16 connections of
a load run landed on one worker. Here each worker binds a listening socket of its own on the
same address with ``SO_REUSEPORT``, and the Linux kernel hashes every new connection (its
addresses and ports) to one of them: the connections spread evenly, whoever is busy.

The parent (``Supervisor``) serves nothing itself: it checks the port is free, starts the
workers (``multiprocessing`` spawn, so ``bench/procs.py`` still knows them as workers),
forwards SIGTERM/SIGINT to them and waits for their graceful shutdown, and restarts a worker
that dies. A worker binds its socket only once it has loaded the app, and at the first start
only once every worker has: the port answers when the whole server does. A worker that dies
takes its socket with it; while its replacement loads, the kernel hands new connections to
the others. A worker that keeps dying before it serves (three times in a row) is a broken
deployment: the parent stops the others and exits 1.

Where ``SO_REUSEPORT`` does not balance (only Linux does; macOS gives every connection to
one socket), ``--workers N`` falls back to uvicorn's own workers, with a warning.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

import uvicorn

from queue_server.lean_websocket import LeanWebSocketProtocol
from queue_server.logs import uvicorn_log_config
from queue_server.one_write import OneWriteHttpToolsProtocol
from queue_server.settings import Settings

APP = "queue_server.asgi:create_from_env"
MAX_START_FAILURES = 3
"""A worker slot that dies this many times in a row before serving stops the server."""
START_RETRY_S = 1.0
"""Wait before starting a worker again after it failed at start (doubling each time)."""
QUICK_DEATH_S = 10.0
"""A worker dying within this long of serving is restarted after a growing pause."""
MAX_RESTART_PAUSE_S = 10.0
SHUTDOWN_GRACE_S = 30.0
"""How long the parent waits for the workers' graceful shutdown before killing them."""
PR_SET_PDEATHSIG = 1

log = logging.getLogger("onedoor.serve")


def uvicorn_options(log_level: str, log_format: str = "text") -> dict[str, Any]:
    """What every uvicorn process of ``onedoor serve`` is given, whichever way it runs."""
    json_config = uvicorn_log_config(log_format)
    return {
        **({"log_config": json_config} if json_config else {}),
        "log_level": log_level,
        # The client behind a proxy is found by the app, from ONEDOOR_TRUSTED_PROXIES only
        # (api/clients.py); uvicorn would trust X-Forwarded-For from 127.0.0.1 by default.
        "proxy_headers": False,
        # uvicorn's sans-I/O websockets implementation, keeping less per open connection
        # (queue_server/lean_websocket.py), and boards get small JSON messages: compressing
        # each one for each board costs more than it saves.
        "ws": LeanWebSocketProtocol,
        "ws_per_message_deflate": False,
        # An answer's headers and body in one system call (queue_server/one_write.py).
        "http": OneWriteHttpToolsProtocol,
    }


def reuseport_balances() -> bool:
    """Whether this kernel spreads connections over ``SO_REUSEPORT`` sockets (Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def refusal(settings: Settings) -> str | None:
    """Why ``settings`` cannot be served as they are (checked before migrating), or None."""
    if settings.workers < 1:
        return "--workers (ONEDOOR_WORKERS) must be 1 or more"
    if settings.workers > 1 and settings.port == 0 and reuseport_balances():
        return "several workers need a fixed port (--port)"
    return None


def serve(settings: Settings, log_level: str) -> int:
    """Serve the app as ``settings`` say (host, port, workers); the process's exit code."""
    problem = refusal(settings)
    if problem:
        print(f"onedoor serve: {problem}", file=sys.stderr)
        return 2
    options = uvicorn_options(log_level, settings.log_format)
    host, port, workers = settings.host, settings.port, settings.workers
    if workers == 1:
        uvicorn.run(APP, factory=True, host=host, port=port, **options)
        return 0
    _configure_logging(log_level)
    if not settings.redis_url:
        log.warning(
            "%d workers without ONEDOOR_REDIS_URL: a board or console hears only of changes "
            "made through its own worker; set ONEDOOR_REDIS_URL for live feeds",
            workers,
        )
    if not reuseport_balances():
        log.warning(
            "SO_REUSEPORT does not balance connections on %s: falling back to uvicorn's "
            "workers, which share one socket (keep-alive connections may gather on one)",
            sys.platform,
        )
        uvicorn.run(APP, factory=True, host=host, port=port, workers=workers, **options)
        return 0
    try:
        check_port_free(host, port)
    except OSError as exc:
        print(f"onedoor serve: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    return Supervisor(host, port, workers, log_level).run()


def _configure_logging(log_level: str) -> None:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s:  [onedoor serve] %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(log_level.upper())


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def check_port_free(host: str, port: int) -> None:
    """Raise OSError if anything listens on ``host:port``. (Sockets that share a port with
    ``SO_REUSEPORT`` would also share it with a stale server of the same user: look first.)"""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def reuseport_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening socket on ``host:port`` that shares the port with the other workers'."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


LOADED, GO, SERVING = "loaded", "go", "serving"
"""The worker → parent → worker handshake: the app is loaded; bind now; serving."""


class _WorkerServer(uvicorn.Server):
    """uvicorn's server on a ``SO_REUSEPORT`` socket of its own, bound only when the parent
    says so, once the app is loaded: until then the kernel gives new connections to the
    workers that serve (and at the first start nothing listens until every worker can)."""

    def __init__(self, config: uvicorn.Config, parent: Connection, name: str) -> None:
        super().__init__(config)
        self.parent = parent
        self.name = name

    def _wait_for_go(self) -> bool:
        self.parent.send(LOADED)
        while not self.should_exit:  # uvicorn's handler sets it on SIGTERM/SIGINT
            if self.parent.poll(0.1):
                try:
                    return bool(self.parent.recv() == GO)
                except (EOFError, OSError):  # the parent is gone
                    return False
        return False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        logger = logging.getLogger("uvicorn.error")
        if not self._wait_for_go():
            self.should_exit = True
            return
        config = self.config
        try:
            sock = reuseport_socket(config.host, config.port, config.backlog)
        except OSError as exc:
            logger.error("%s cannot listen on %s:%d: %s", self.name, config.host, config.port, exc)
            sys.exit(3)
        await super().startup([sock])
        if self.started:
            logger.info("%s serving on http://%s:%d", self.name, config.host, config.port)
            with contextlib.suppress(OSError):
                self.parent.send(SERVING)
                self.parent.close()


def _die_with_parent(parent: int) -> None:
    """Have the kernel SIGTERM this worker when the parent dies (e.g. killed with -9), so
    no orphan keeps serving on the shared port."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the line above
        sys.exit(1)


def run_worker(
    slot: int, count: int, host: str, port: int, log_level: str, parent: int, conn: Connection
) -> None:
    """One worker process: uvicorn serving on a ``SO_REUSEPORT`` socket of its own."""
    _die_with_parent(parent)
    log_format = os.environ.get("ONEDOOR_LOG_FORMAT", "text")  # validated by the parent
    config = uvicorn.Config(
        APP, factory=True, host=host, port=port, **uvicorn_options(log_level, log_format)
    )
    # uvicorn re-raises the signal that stopped it once it has shut down; a SIGINT becomes
    # KeyboardInterrupt, which here means only that the worker has stopped (as uvicorn.run).
    with contextlib.suppress(KeyboardInterrupt):
        _WorkerServer(config, conn, f"worker {slot} of {count} [pid {os.getpid()}]").run()


WorkerTarget = Callable[..., None]


@dataclass
class _Slot:
    number: int
    process: BaseProcess | None = None
    conn: Connection | None = None
    """The parent's end of the worker's pipe, until the worker says it serves."""
    loaded: bool = False
    ready_at: float | None = None
    start_failures: int = 0
    quick_deaths: int = 0
    restart_at: float | None = None
    last_pid: int | None = None


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


class Supervisor:
    """Starts ``count`` workers, restarts those that die, stops them all on SIGTERM/SIGINT.

    ``target`` is what each worker runs (``run_worker``; tests give one that fails).
    """

    def __init__(
        self,
        host: str,
        port: int,
        count: int,
        log_level: str = "info",
        target: WorkerTarget = run_worker,
    ) -> None:
        self.host, self.port, self.count, self.log_level = host, port, count, log_level
        self.target = target
        self.context = multiprocessing.get_context("spawn")
        self.slots = [_Slot(n) for n in range(1, count + 1)]
        self.signals: list[int] = []
        self.failure: str | None = None
        self.gate_open = False
        """At the first start the workers bind only once all have loaded the app, so the
        port answers when the whole server does (and no early connection pool gathers on
        the first worker up); a worker started later binds as soon as it has loaded."""

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (exit code 0) or a worker keeps failing at start (1)."""
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        previous_wakeup = signal.set_wakeup_fd(wake_write)
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            log.info(
                "%d workers on http://%s:%d, each on a SO_REUSEPORT socket of its own",
                self.count, self.host, self.port,
            )  # fmt: skip
            for slot in self.slots:
                if not self.signals:
                    self._start(slot)
            while not self.signals and self.failure is None:
                self._watch(wake_read)
            if self.signals:
                log.info("%s: stopping the workers", signal.Signals(self.signals[0]).name)
            self._stop_all(wake_read)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_wakeup)
            os.close(wake_read)
            os.close(wake_write)
        if self.failure is not None:
            log.error("%s; stopping", self.failure)
            return 1
        log.info("all workers stopped")
        return 0

    def _on_signal(self, sig: int, frame: object) -> None:
        self.signals.append(sig)

    def _start(self, slot: _Slot) -> None:
        ours, theirs = self.context.Pipe()
        process = self.context.Process(
            target=self.target,
            args=(slot.number, self.count, self.host, self.port, self.log_level, os.getpid(),
                  theirs),
            name=f"onedoor-worker-{slot.number}",
        )  # fmt: skip
        process.start()
        theirs.close()
        slot.process, slot.conn = process, ours
        slot.loaded, slot.ready_at, slot.restart_at = False, None, None
        if slot.last_pid is None:
            log.info("worker %d of %d started [pid %s]", slot.number, self.count, process.pid)
        else:
            log.warning(
                "worker %d of %d restarted [pid %s, was %s]",
                slot.number, self.count, process.pid, slot.last_pid,
            )  # fmt: skip
        slot.last_pid = process.pid

    def _live(self) -> list[_Slot]:
        return [s for s in self.slots if s.process is not None]

    def _watch(self, wake_read: int) -> None:
        """Wait for a worker's word or death, a signal, or a restart that is due."""
        now = time.monotonic()
        due = [s.restart_at for s in self.slots if s.restart_at is not None]
        timeout = max(0.0, min(due) - now) if due else None
        waitables: list[Any] = [wake_read]
        for slot in self._live():
            assert slot.process is not None
            waitables.append(slot.process.sentinel)
            if slot.conn is not None:
                waitables.append(slot.conn)
        fired = wait(waitables, timeout)
        if wake_read in fired:
            with contextlib.suppress(OSError):
                os.read(wake_read, 512)
        for slot in self._live():
            if slot.conn is not None and slot.conn in fired:
                self._hear(slot)
        for slot in self._live():
            assert slot.process is not None
            if slot.process.exitcode is not None:
                self._died(slot)
        now = time.monotonic()
        for slot in self.slots:
            if slot.restart_at is not None and slot.restart_at <= now and not self.signals:
                self._start(slot)

    def _hear(self, slot: _Slot) -> None:
        """What a worker says: it has loaded the app (let it bind when the gate is open), or
        it serves."""
        assert slot.conn is not None
        try:
            word = slot.conn.recv()
        except (EOFError, OSError):  # it died; its sentinel says so too
            word = None
        if word == LOADED:
            slot.loaded = True
            if not self.gate_open and all(s.loaded for s in self.slots):
                self.gate_open = True
                log.info("all %d workers have loaded the app; they listen now", self.count)
                for each in self._live():
                    self._let_bind(each)
            elif self.gate_open:
                self._let_bind(slot)
            return
        if word == SERVING:
            slot.ready_at = time.monotonic()
            slot.start_failures = 0
        slot.conn.close()
        slot.conn = None

    def _let_bind(self, slot: _Slot) -> None:
        if slot.conn is not None and slot.loaded:
            with contextlib.suppress(OSError):
                slot.conn.send(GO)

    def _died(self, slot: _Slot) -> None:
        assert slot.process is not None
        process, slot.process = slot.process, None
        while slot.conn is not None and slot.conn.poll():
            self._hear(slot)  # a worker may say it serves, then die at once
        if slot.conn is not None:
            slot.conn.close()
            slot.conn = None
        slot.loaded = False
        how = _describe_exit(process.exitcode)
        process.close()
        if self.signals:
            return
        name = f"worker {slot.number} of {self.count} [pid {slot.last_pid}]"
        if slot.ready_at is None:
            slot.start_failures += 1
            if slot.start_failures >= MAX_START_FAILURES:
                tries = slot.start_failures
                self.failure = f"{name} failed to start {tries} times in a row ({how})"
                return
            pause = START_RETRY_S * 2 ** (slot.start_failures - 1)
            log.error("%s failed to start (%s); trying again in %.0f s", name, how, pause)
        else:
            served = time.monotonic() - slot.ready_at
            slot.quick_deaths = slot.quick_deaths + 1 if served < QUICK_DEATH_S else 0
            pause = 0.0
            if slot.quick_deaths:  # 1, 2, 4… s when it keeps dying soon after it served
                pause = min(2.0 ** (slot.quick_deaths - 1), MAX_RESTART_PAUSE_S)
            log.warning(
                "%s died (%s) after serving %.0f s; restarting it%s",
                name, how, served, f" in {pause:.0f} s" if pause else "",
            )  # fmt: skip
        slot.restart_at = time.monotonic() + pause

    def _stop_all(self, wake_read: int) -> None:
        """Ask every worker to stop and wait for them; kill the stragglers.

        The first request is always SIGTERM: a Ctrl-C reaches the whole process group, and a
        second SIGINT would make uvicorn drop its connections without a graceful shutdown.
        A SIGINT that comes after the first signal is forwarded as SIGINT: stop at once.
        """
        forwarded = len(self.signals)
        for slot in self._live():
            assert slot.process is not None and slot.process.pid is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        while self._live() and time.monotonic() < deadline:
            sentinels: list[Any] = [wake_read]
            sentinels += [s.process.sentinel for s in self._live() if s.process is not None]
            wait(sentinels, max(0.0, deadline - time.monotonic()))
            with contextlib.suppress(OSError):
                os.read(wake_read, 512)
            # A second Ctrl-C makes uvicorn stop at once, without waiting for connections.
            for again in [sig for sig in self.signals[forwarded:] if sig == signal.SIGINT]:
                for slot in self._live():
                    assert slot.process is not None and slot.process.pid is not None
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(slot.process.pid, again)
            forwarded = len(self.signals)
            for slot in self._live():
                assert slot.process is not None
                if slot.process.exitcode is not None:
                    slot.process.close()
                    slot.process = None
        for slot in self.slots:
            if slot.conn is not None:
                slot.conn.close()
                slot.conn = None
        for slot in self._live():
            assert slot.process is not None
            log.warning(
                "worker %d [pid %s] did not stop within %.0f s; killing it",
                slot.number, slot.process.pid, SHUTDOWN_GRACE_S,
            )  # fmt: skip
            slot.process.kill()
            slot.process.join()
            slot.process = None
