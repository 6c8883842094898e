"""The print agent: runs beside a kiosk's printer, prints the jobs the server sends, acks.

``onedoor printer-agent --server URL --token T --config printers.toml``. It keeps the ids
of jobs it has started printing, and of those it finished, in a small file, so a job
resent after a reconnect (or after the agent restarts) is never printed again: a job prints
at most once. One the agent started but never finished (it was killed mid-job) is reported
failed with that doubt, so staff check the printer instead of the kiosk claiming it
printed. It reports the printer's status when it changes and every 30 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .config import PrinterConfig
from .layout import TicketPrint, render
from .status import PrinterStatus
from .transports import PrintFailed

log = logging.getLogger("onedoor.printer")
KEEP_IDS = 5000
STATUS_EVERY_S = 10.0
HEARTBEAT_S = 30.0


MAYBE_PRINTED = (
    "the print agent stopped while printing this ticket; it may have come out: "
    "check the printer, and reprint if it did not"
)


class PrintedLog:
    """Ids of jobs this agent has started printing and of those it finished, on disk
    (newest ``KEEP_IDS``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ids: list[int] = []
        self._done: set[int] = set()
        if path.exists():
            with contextlib.suppress(ValueError, OSError, TypeError, KeyError):
                kept = json.loads(path.read_text())
                if isinstance(kept, list):  # the older file: started ids, taken as finished
                    self._ids = [int(i) for i in kept]
                    self._done = set(self._ids)
                else:
                    self._ids = [int(i) for i in kept["started"]]
                    self._done = {int(i) for i in kept["done"]}
        self._set = set(self._ids)

    def __contains__(self, job_id: int) -> bool:
        return job_id in self._set

    def finished(self, job_id: int) -> bool:
        """Whether the job's bytes were all sent (False: the agent died while sending)."""
        return job_id in self._done

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".printed-")
        with os.fdopen(fd, "w") as handle:
            json.dump({"started": self._ids, "done": sorted(self._done & self._set)}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    def add(self, job_id: int) -> None:
        """Remember ``job_id`` durably before its bytes are sent."""
        self._ids = [*self._ids, job_id][-KEEP_IDS:]
        self._set = set(self._ids)
        self._done &= self._set
        self._save()

    def done(self, job_id: int) -> None:
        """Remember durably that ``job_id``'s bytes all went out."""
        self._done.add(job_id)
        self._save()

    def forget(self, job_id: int) -> None:
        """The bytes never left: the job may be printed when it comes again."""
        self._ids = [i for i in self._ids if i != job_id]
        self._set.discard(job_id)
        self._done.discard(job_id)
        self._save()


def feed_url(server: str, token: str) -> str:
    parts = urlsplit(server)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = f"{parts.path.rstrip('/')}/ws/printers"
    return urlunsplit((scheme, parts.netloc, path, urlencode({"token": token}), ""))


class Agent:
    def __init__(
        self,
        server: str,
        token: str,
        config: PrinterConfig,
        state_dir: Path,
        say: Callable[[str], None] = print,
    ) -> None:
        self.url = feed_url(server, token)
        self.config = config
        self.printed = PrintedLog(state_dir / "printed-jobs.json")
        self.say = say
        self.last_status: PrinterStatus | None = None
        # One conversation with the printer at a time: many accept a single connection,
        # and a status query in the middle of a job would garble it.
        self._printer = asyncio.Lock()

    async def _status(self) -> PrinterStatus:
        async with self._printer:
            return await asyncio.to_thread(self.config.transport.status)

    async def _report(self, ws: Any, status: PrinterStatus) -> None:
        self.last_status = status
        await ws.send(json.dumps({"type": "status", **status.to_json(), "problem": status.problem}))

    async def _status_loop(self, ws: Any) -> None:
        since_report = 0.0
        while True:
            await asyncio.sleep(STATUS_EVERY_S)
            since_report += STATUS_EVERY_S
            status = await self._status()
            if status != self.last_status or since_report >= HEARTBEAT_S:
                await self._report(ws, status)
                since_report = 0.0

    async def _ack(self, ws: Any, job_id: int, state: str, detail: str | None = None) -> None:
        await ws.send(
            json.dumps({"type": "ack", "job_id": job_id, "state": state, "detail": detail})
        )

    async def handle_job(self, ws: Any, job_id: int, payload: dict[str, Any]) -> None:
        """Print one job at most once and acknowledge it."""
        if job_id in self.printed:
            if not self.printed.finished(job_id):
                self.say(f"job {job_id}: interrupted earlier; not printing it again")
                await self._ack(ws, job_id, "failed", MAYBE_PRINTED)
                return
            self.say(f"job {job_id}: already printed by this agent; not printing it again")
            await self._ack(ws, job_id, "printed", "already printed by this agent")
            return
        status = await self._status()
        if status != self.last_status:
            await self._report(ws, status)
        if not status.can_print:
            self.say(f"job {job_id}: not printed ({status.problem})")
            await self._ack(ws, job_id, "failed", status.problem)
            return
        ticket = TicketPrint.from_json(payload)
        data = render(ticket, self.config.profile)
        self.printed.add(job_id)
        try:
            async with self._printer:
                await asyncio.to_thread(self.config.transport.print_job, job_id, data, ticket)
        except Exception as exc:  # whatever it was, the ticket did not come out
            self.printed.forget(job_id)
            detail = str(exc) if isinstance(exc, PrintFailed) else f"{type(exc).__name__}: {exc}"
            self.say(f"job {job_id}: {detail}")
            await self._ack(ws, job_id, "failed", detail)
            # Say at once what became of the printer (pulled, switched off), not at the
            # next status round: the alert is what sends staff to it.
            status = await self._status()
            if status != self.last_status:
                await self._report(ws, status)
            return
        self.printed.done(job_id)
        self.say(f"job {job_id}: printed {ticket.number}")
        unsure = None if status.online == "online" else "printer did not answer status queries"
        await self._ack(ws, job_id, "printed", unsure)

    async def session(self) -> None:
        """One connection: report status, then print what comes until it closes."""
        async with websockets.connect(self.url, proxy=None, open_timeout=10) as ws:
            self.say("connected to the server")
            await self._report(ws, await self._status())
            reporter = asyncio.create_task(self._status_loop(ws))
            try:
                async for raw in ws:
                    message = json.loads(raw)
                    if message.get("type") == "job":
                        await self.handle_job(ws, int(message["job_id"]), message["ticket"])
            finally:
                reporter.cancel()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Stay connected (reconnecting with jittered back-off) until ``stop`` is set."""
        backoff = 0.5
        while stop is None or not stop.is_set():
            try:
                await self.session()
                backoff = 0.5
            except InvalidStatus as exc:
                code = exc.response.status_code
                if code in (401, 403):
                    self.say("the server refused this printer token; ask a manager for a new one")
                    raise SystemExit(2) from None
                self.say(f"server answered {code}; retrying in {backoff:.1f} s")
            except (OSError, ConnectionClosed, TimeoutError) as exc:
                self.say(f"connection lost ({exc.__class__.__name__}); retrying in {backoff:.1f} s")
            except InvalidHandshake as exc:  # a proxy's error page, a server going down
                self.say(f"the server's answer was not a websocket ({exc}); "
                         f"retrying in {backoff:.1f} s")  # fmt: skip
            except Exception as exc:
                # A kiosk's printer must not go quiet on what nobody foresaw: say it, and
                # try again (the jobs not acknowledged come again on the next connection).
                log.exception("print agent session failed")
                self.say(f"unexpected {exc.__class__.__name__}: {exc}; retrying in {backoff:.1f} s")
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))  # noqa: S311 - jitter
            backoff = min(backoff * 2, 10.0)
