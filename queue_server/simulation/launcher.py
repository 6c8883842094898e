"""Simulations started from the manager pages.

Each is ``onedoor simulate --from-hall N --days D --save --quiet`` in a process of its own
(the simulation is CPU work for seconds to minutes; the server's event loop must not carry
it), with the server's environment and database. One runs per hall at a time. How the last
one of each hall went is kept in this process's memory only: with several server processes,
each knows the runs it started (the result itself is kept in the database by the command).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from queue_server.clock import Clock
from queue_server.service.errors import Conflict
from queue_server.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_DAYS = 28
MAX_DAYS = 365
MAX_RUNNING = 2
"""Simulations one server process runs at once (of all halls)."""
TIME_LIMIT_SECONDS = 30 * 60.0
"""A run still going after this long is stopped and reported as failed."""
_PROGRAM_PREFIXES = ("onedoor simulate: ", "onedoor: ")


class RunState(StrEnum):
    IDLE = "idle"
    """No run started by this server process for the hall."""
    RUNNING = "running"
    FAILED = "failed"
    DONE = "done"


@dataclass(frozen=True)
class RunStatus:
    """How the hall's last simulation started from the pages stands."""

    state: RunState
    detail: str = ""
    """Running: the command. Failed: why (the last line it wrote to stderr, or its exit
    code). Done: what it said when it kept the result."""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    days: int | None = None
    """Days of history it simulates from."""


def environment_for(settings: Settings) -> dict[str, str]:
    """The server's own environment, pointed at its database and folder (the settings may
    have come from elsewhere than the environment, e.g. a test's or a TOML file's)."""
    return {
        **os.environ,
        "ONEDOOR_DATABASE_URL": settings.effective_database_url,
        "ONEDOOR_VAR_DIR": str(settings.var_dir),
    }


def command_line(hall_id: int, days: int) -> list[str]:
    """The arguments after ``onedoor``."""
    return ["simulate", "--from-hall", str(hall_id), "--days", str(days), "--save", "--quiet"]


def last_line(stderr: bytes) -> str:
    """The last line a run wrote to stderr, without the program's name in front."""
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines()]
    text = next((line for line in reversed(lines) if line), "")
    for prefix in _PROGRAM_PREFIXES:
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


class SimulationLauncher:
    """Starts hall simulations as processes and remembers how each hall's last one went."""

    def __init__(
        self,
        environ: Mapping[str, str],
        clock: Clock,
        *,
        python: str = sys.executable,
        time_limit: float = TIME_LIMIT_SECONDS,
    ) -> None:
        self._environ = dict(environ)
        self._clock = clock
        self._python = python
        self._time_limit = time_limit
        self._status: dict[int, RunStatus] = {}
        self._watchers: set[asyncio.Task[None]] = set()

    def status(self, hall_id: int) -> RunStatus:
        """The hall's last run started here (``idle`` when none)."""
        return self._status.get(hall_id, RunStatus(RunState.IDLE))

    async def start(self, hall_id: int, days: int = DEFAULT_DAYS) -> RunStatus:
        """Start simulating hall ``hall_id`` from its last ``days`` days; the run's status.

        Raises Conflict while one of the hall's runs is still going. A process that cannot
        be started at all is a ``failed`` status saying why.
        """
        current = self.status(hall_id)
        running = sum(1 for st in self._status.values() if st.state == RunState.RUNNING)
        if current.state != RunState.RUNNING and running >= MAX_RUNNING:
            raise Conflict(
                f"{running} simulations are running on this server already; each takes a "
                "processor for minutes: start this one when one of them is done",
                state="busy",
            )
        if current.state == RunState.RUNNING:
            started = current.started_at.isoformat() if current.started_at else None
            raise Conflict(
                f"a simulation of hall {hall_id} is already running; wait until it is done",
                state=str(current.state),
                started_at=started,
            )
        args = command_line(hall_id, days)
        status = RunStatus(
            RunState.RUNNING, "onedoor " + " ".join(args), self._clock.now(), None, days
        )
        # Marked before the first await: a second request meanwhile finds it running.
        self._status[hall_id] = status
        try:
            process = await asyncio.create_subprocess_exec(
                self._python, "-m", "queue_server.cli", *args,
                env=self._environ,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
        except OSError as exc:
            log.warning("simulation of hall %s could not start: %s", hall_id, exc)
            self._finish(hall_id, RunState.FAILED, f"the simulation could not start: {exc}")
            return self.status(hall_id)
        watcher = asyncio.create_task(self._watch(hall_id, process), name=f"simulate-{hall_id}")
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return status

    async def _watch(self, hall_id: int, process: asyncio.subprocess.Process) -> None:
        try:
            async with asyncio.timeout(self._time_limit):
                _, stderr = await process.communicate()
        except TimeoutError:
            await self._stop(process)
            minutes = round(self._time_limit / 60)
            self._finish(hall_id, RunState.FAILED, f"stopped after {minutes} min without an end")
            return
        except asyncio.CancelledError:
            await self._stop(process)
            self._finish(hall_id, RunState.FAILED, "stopped: the server was shutting down")
            raise
        said = last_line(stderr)
        if process.returncode == 0:
            self._finish(hall_id, RunState.DONE, said)
        else:
            log.warning("simulation of hall %s failed (%s): %s", hall_id, process.returncode, said)
            self._finish(
                hall_id,
                RunState.FAILED,
                said or f"the simulation stopped with exit code {process.returncode}",
            )

    def _finish(self, hall_id: int, state: RunState, detail: str) -> None:
        self._status[hall_id] = replace(
            self.status(hall_id), state=state, detail=detail, finished_at=self._clock.now()
        )

    @staticmethod
    async def _stop(process: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await asyncio.shield(process.wait())

    async def close(self) -> None:
        """Stop the runs still going (the server is stopping) and wait for their watchers."""
        watchers = list(self._watchers)
        for watcher in watchers:
            watcher.cancel()
        for watcher in watchers:
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
