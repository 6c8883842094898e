"""The websocket feeds: board, counter, ticket follower, print agent and kiosk (message
shapes: docs/realtime.md)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import WebSocket, websocket
from litestar.di import NamedDependency
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromPath, QueryParameter

from display.board import BoardView
from queue_server.api.auth import PUBLIC, STAFF, roles
from queue_server.api.counter import read_console
from queue_server.api.tickets import with_follow_url
from queue_server.service import hall_config, kiosk_prints, printing, views
from queue_server.service.accounts import Principal
from queue_server.service.bus import Bus
from queue_server.service.errors import NotFound
from queue_server.service.queue import waiting_for_counter
from queue_server.service.unit_of_work import UnitOfWork
from queue_server.settings import Settings

from .access import hold_access
from .boards import BOARD_ROUTE_NAME, serve_board
from .hub import PING_SECONDS, HallHub, Hubs, ping_message

log = logging.getLogger("onedoor.realtime")
COALESCE_SECONDS = 0.05
ESTIMATE_REFRESH_SECONDS = 60.0
QUEUE_MOVES = frozenset(
    {"TicketIssued", "TicketCalled", "TicketReturnedToQueue", "TicketMarkedNoShow",
     "TicketTransferred", "TicketCancelled", "ServiceFinished",
     "CounterOpened", "CounterPaused", "CounterClosed"}
)  # fmt: skip
"""Events that change a waiting visitor's estimate (a service starting or rated does not)."""
"""A follower's ticket is sent again at least this often while it waits: time passes."""
BOARD_ROLES = ("board", "admin", "manager", "clerk")
Since = Annotated[int | None, QueryParameter(ge=0, description="last sequence number seen")]
T = TypeVar("T")


class ChangeListener:
    """Marks its feed stale when an event it cares about happens; the feed then re-reads."""

    def __init__(self, cares: Callable[[str, Mapping[str, Any]], bool]) -> None:
        self.cares = cares
        self.stale = asyncio.Event()
        self.last_event: dict[str, Any] | None = None
        self.seq = 0
        """The number of the last event it cared about."""
        self.missed = False
        """Set when the hub started afresh (it may have missed events): read everything."""

    def snapshot(self, board: BoardView, message: bytes) -> None:
        self.missed = True
        self.stale.set()

    def event(self, seq: int, name: str, data: Mapping[str, Any], message: bytes) -> None:
        if name and self.cares(name, data):
            self.last_event = {"name": name, "seq": seq, **data}
            self.seq = max(self.seq, seq)
            self.stale.set()


async def _until_closed(socket: WebSocket[Any, Any, Any]) -> None:
    """Read (and ignore) what the client sends until it goes away."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await socket.receive_data(mode="text")


async def _read_through(read: Awaitable[T]) -> T:
    """``read`` (a unit of work), finished even when the feed stops meanwhile (its client
    went away). Cancelled while a statement runs, a unit of work on SQLite leaves its
    connection holding the write lock of its BEGIN IMMEDIATE, and every other request in
    the hall waits out the busy timeout (30 s)."""
    task = asyncio.ensure_future(read)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
        raise


async def _run(socket: WebSocket[Any, Any, Any], sender: Awaitable[None]) -> None:
    """Serve the feed until its client goes, its sender stops, or its access ends."""
    tasks = [
        asyncio.ensure_future(sender),
        asyncio.ensure_future(_until_closed(socket)),
        asyncio.ensure_future(hold_access(socket)),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                exc = task.exception()
                if not isinstance(exc, WebSocketDisconnect | OSError):
                    log.warning("feed ended with %r", exc)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _send_changes(
    socket: WebSocket[Any, Any, Any],
    hub: HallHub,
    listener: ChangeListener,
    state: Callable[[], Awaitable[dict[str, Any]]],
    refresh_seconds: float | None = None,
) -> None:
    kind = "snapshot"
    sent = time.monotonic()
    while True:
        try:
            async with asyncio.timeout(PING_SECONDS):
                await listener.stale.wait()
        except TimeoutError:
            if refresh_seconds is None or time.monotonic() - sent < refresh_seconds:
                await socket.send_data(ping_message(hub.seq))
                continue
            # Nothing happened, but time passed: a wait told a while ago is stale.
            listener.stale.set()
        await asyncio.sleep(COALESCE_SECONDS)  # a burst of events, one re-read
        listener.stale.clear()
        event, listener.last_event = listener.last_event, None
        body = {"type": kind, "seq": hub.seq, **await _read_through(state())}
        if kind == "update":
            body["event"] = event
        await socket.send_data(msgspec.json.encode(body))
        sent = time.monotonic()
        kind = "update"


async def _follow_changes(
    socket: WebSocket[Any, Any, Any],
    hubs: Hubs,
    hall_id: int,
    listener: ChangeListener,
    state: Callable[[], Awaitable[dict[str, Any]]],
    refresh_seconds: float | None = None,
) -> None:
    """Send ``state()`` now and again whenever an event the ``listener`` cares about
    happens (and, given ``refresh_seconds``, at least that often while nothing happens)."""
    hub = await hubs.acquire(hall_id)
    hub.attach(listener)
    try:
        await _run(socket, _send_changes(socket, hub, listener, state, refresh_seconds))
    finally:
        hub.detach(listener)
        await hubs.release(hall_id)


@websocket("/ws/halls/{hall_id:int}/board", opt=roles(*BOARD_ROLES), name=BOARD_ROUTE_NAME)
async def board_feed(
    socket: WebSocket[Any, Any, Any],
    hall_id: FromPath[int],
    hubs: NamedDependency[Hubs],
    since: Since = None,
) -> None:
    """The hall's board: a snapshot (or the events after ``since``), then every event.

    Board devices are served before they reach this route (``boards.py``); this serves
    the rest, staff signed in with a cookie, through the same loop."""
    await socket.accept()
    hub = await hubs.acquire(hall_id)
    try:
        await serve_board(socket, socket.receive, socket.send, hub, since)
    finally:
        await hubs.release(hall_id)


@websocket("/ws/counters/{counter_id:int}", opt=roles(*STAFF))
async def counter_feed(
    socket: WebSocket[Any, Any, Any],
    counter_id: FromPath[int],
    hubs: NamedDependency[Hubs],
    bus: NamedDependency[Bus],
    settings: NamedDependency[Settings],
) -> None:
    """A counter's console: its state and current ticket, and its waiting list, kept fresh."""
    await socket.accept()
    try:
        counter = await bus.run(hall_config.get_counter, counter_id)
    except NotFound as exc:
        await socket.close(code=4404, reason=str(exc)[:120])
        return
    matters = {p.service_id for p in counter.profile}

    def cares(name: str, data: Mapping[str, Any]) -> bool:
        if name in ("PrinterStatusChanged", "PrintJobFailed"):
            return True  # staff see printer alerts on their console
        if name.startswith("Booking"):
            return False  # a booking reaches the queue as a ticket (TicketIssued)
        return data.get("counter_id") == counter_id or data.get("service_id") in matters

    silent = timedelta(seconds=settings.screen_silent_seconds)

    async def read(uow: UnitOfWork) -> dict[str, Any]:
        return {
            "counter": await read_console(uow, settings, counter_id),
            "waiting": await waiting_for_counter(uow, counter_id),
            "alerts": await printing.alerts(uow, counter.hall_id, silent),
        }

    async def state() -> dict[str, Any]:
        return await bus.read(read)  # one unit of work per message, not six

    await _follow_changes(socket, hubs, counter.hall_id, ChangeListener(cares), state)


@websocket("/ws/tickets/{token:str}", opt=PUBLIC)
async def ticket_feed(
    socket: WebSocket[Any, Any, Any],
    token: FromPath[str],
    hubs: NamedDependency[Hubs],
    bus: NamedDependency[Bus],
    settings: NamedDependency[Settings],
) -> None:
    """A visitor's ticket: state, people ahead, estimate, counter when called; kept fresh."""
    await socket.accept()
    try:
        kept = await bus.read(views.followed, token)
    except NotFound as exc:
        await socket.close(code=4404, reason=str(exc)[:120])
        return
    read_at = time.monotonic()
    own = False

    def cares(name: str, data: Mapping[str, Any]) -> bool:
        nonlocal own
        if data.get("ticket_id") == kept.view.id:
            own = True
            return True  # the visitor's own ticket: called, served, sent on, rated
        # The estimate plays the whole hall forward (counters are shared between matters):
        # while the ticket waits, whatever moves the queue moves it. One projection per hall
        # state answers every follower (service/estimates.py).
        return kept.view.state == "waiting" and name in QUEUE_MOVES

    listener = ChangeListener(cares)
    counted = socket.app.state.metrics.follower_updates

    async def state() -> dict[str, Any]:
        nonlocal kept, read_at, own
        changed, own = own, False
        missed, listener.missed = listener.missed, False
        fresh = time.monotonic() - read_at < ESTIMATE_REFRESH_SECONDS
        if kept.view.state == "waiting" and fresh and not (changed or missed):
            # Only the queue moved: the ticket is as read, its wait is told again from the
            # hall's shared projection — no read of the ticket per follower and move.
            view = await bus.read(views.retold, kept, listener.seq)
            if view is not None:
                counted.labels("projection").inc()
                return {"ticket": with_follow_url(view, settings)}
        kept, read_at = await bus.read(views.followed, token), time.monotonic()
        counted.labels("ticket").inc()
        return {"ticket": with_follow_url(kept.view, settings)}

    await _follow_changes(
        socket, hubs, kept.view.hall_id, listener, state, refresh_seconds=ESTIMATE_REFRESH_SECONDS
    )


@websocket("/ws/printers", opt=roles("printer"))
async def printer_feed(
    socket: WebSocket[Any, Any, Any],
    hubs: NamedDependency[Hubs],
    bus: NamedDependency[Bus],
    principal: NamedDependency[Principal],
) -> None:
    """A print agent's link: its jobs out (unacknowledged ones again on every connect),
    acknowledgements and printer status in."""
    await socket.accept()
    printer_id, hall_id = principal.device_id, principal.hall_id
    assert printer_id is not None and hall_id is not None
    connection = uuid.uuid4().hex
    hub = await hubs.acquire(hall_id)
    listener = ChangeListener(
        lambda name, data: name == "PrintJobQueued" and data.get("printer_id") == printer_id
    )
    hub.attach(listener)

    async def send_jobs() -> None:
        resend = True
        while True:
            try:
                async with asyncio.timeout(PING_SECONDS):
                    await listener.stale.wait()
            except TimeoutError:
                await socket.send_data(ping_message(hub.seq))
                # Jobs sent into a connection that died unnoticed go out again.
            listener.stale.clear()
            jobs = await _read_through(bus.run(printing.jobs_to_send, printer_id, resend=resend))
            for job_id, ticket in jobs:
                await socket.send_data(
                    msgspec.json.encode({"type": "job", "job_id": job_id, "ticket": ticket})
                )
            resend = False

    async def receive() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                message = msgspec.json.decode(await socket.receive_data(mode="text"))
                if message.get("type") == "ack":
                    await bus.run(
                        printing.acknowledge,
                        printer_id,
                        int(message["job_id"]),
                        str(message.get("state")),
                        message.get("detail"),
                    )
                elif message.get("type") == "status":
                    status = {k: message.get(k) for k in ("online", "paper", "cover", "problem")}
                    await bus.run(printing.report_status, printer_id, True, status, connection)

    tasks: list[asyncio.Future[None]] = []
    try:
        await bus.run(printing.report_status, printer_id, True, None, connection)
        tasks = [asyncio.ensure_future(send_jobs()), asyncio.ensure_future(receive())]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = task.exception()
            if exc is not None and not isinstance(exc, WebSocketDisconnect | OSError):
                log.error("printer %s feed failed", printer_id, exc_info=exc)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        hub.detach(listener)
        await hubs.release(hall_id)
        await bus.run(printing.report_status, printer_id, False, None, connection)


PRINT_OUTCOMES = frozenset({"PrintJobPrinted", "PrintJobFailed"})
KIOSK_BACKLOG = 64
"""A kiosk feed holding more unsent events than this sends a snapshot instead."""


class KioskListener:
    """Collects the print events of one kiosk's printers for its feed. The hub calls it
    synchronously, so it only files what it sees; the feed reads and sends."""

    def __init__(self) -> None:
        self.printers: set[int] = set()
        self.others: set[int] = set()
        """Printers known to belong to other kiosks (a printer's kiosk does not change)."""
        self.events: deque[tuple[int, str, Mapping[str, Any]]] = deque()
        self.resync = True  # the feed starts with a snapshot
        self.ready = asyncio.Event()

    def snapshot(self, board: BoardView, message: bytes) -> None:
        self._start_afresh()  # the hub reloaded: so does the kiosk

    def _start_afresh(self) -> None:
        self.resync = True
        self.events.clear()
        self.ready.set()

    def event(self, seq: int, name: str, data: Mapping[str, Any], message: bytes) -> None:
        if name not in PRINT_OUTCOMES and name != "PrinterStatusChanged":
            return
        if data.get("printer_id") in self.others:
            return
        if len(self.events) >= KIOSK_BACKLOG:
            self._start_afresh()  # the feed fell behind: a snapshot replaces what it missed
            return
        self.events.append((seq, name, data))
        self.ready.set()


async def _send_kiosk_prints(
    socket: WebSocket[Any, Any, Any], hub: HallHub, listener: KioskListener, bus: Bus, kiosk_id: int
) -> None:
    async def read_printers() -> None:
        listener.printers = await _read_through(bus.run(kiosk_prints.printer_ids, kiosk_id))

    while True:
        try:
            async with asyncio.timeout(PING_SECONDS):
                await listener.ready.wait()
        except TimeoutError:
            await socket.send_data(ping_message(hub.seq))
            continue
        listener.ready.clear()
        if listener.resync:
            listener.resync = False
            listener.events.clear()
            seq = hub.seq
            prints = await _read_through(bus.run(kiosk_prints.recent_prints, kiosk_id))
            listener.printers = {p.printer_id for p in prints.printers}
            listener.printers |= {job.printer_id for job in prints.jobs}
            listener.others.clear()
            await socket.send_data(
                msgspec.json.encode(
                    {"type": "snapshot", "seq": seq, "kiosk_id": kiosk_id,
                     "printers": prints.printers, "jobs": prints.jobs}
                )
            )  # fmt: skip
            continue
        while listener.events and not listener.resync:
            seq, name, data = listener.events.popleft()
            printer_id = int(data["printer_id"])
            if printer_id not in listener.printers:
                # A printer registered since the last read may be this kiosk's.
                await read_printers()
                if printer_id not in listener.printers:
                    listener.others.add(printer_id)
                    continue
            if name == "PrinterStatusChanged":
                await socket.send_data(printer_message(seq, data))
                continue
            # The job as stored: the event of a printed job carries no detail.
            job = await _read_through(bus.run(kiosk_prints.kiosk_job, int(data["job_id"])))
            if job is not None:
                await socket.send_data(print_message(seq, job))


def printer_message(seq: int, data: Mapping[str, Any]) -> bytes:
    return msgspec.json.encode(
        {"type": "printer", "seq": seq, "printer_id": data["printer_id"],
         "connected": data.get("connected"), "problem": data.get("problem")}
    )  # fmt: skip


def print_message(seq: int, job: kiosk_prints.KioskJob) -> bytes:
    return msgspec.json.encode(
        {"type": "print", "seq": seq, "job_id": job.job_id, "ticket_id": job.ticket_id,
         "printer_id": job.printer_id, "number": job.number, "state": job.state,
         "detail": job.detail}
    )  # fmt: skip


@websocket("/ws/halls/{hall_id:int}/kiosk", opt=roles("kiosk"))
async def kiosk_feed(
    socket: WebSocket[Any, Any, Any],
    hall_id: FromPath[int],
    hubs: NamedDependency[Hubs],
    bus: NamedDependency[Bus],
    principal: NamedDependency[Principal],
) -> None:
    """A kiosk's print jobs: a snapshot of its recent ones (on connect and whenever the hub
    reloads), then each outcome as its printer's agent reports it."""
    await socket.accept()
    kiosk_id = principal.device_id
    assert kiosk_id is not None  # the guard admits kiosk devices only, of this hall
    hub = await hubs.acquire(hall_id)
    listener = KioskListener()
    hub.attach(listener)
    try:
        await _run(socket, _send_kiosk_prints(socket, hub, listener, bus, kiosk_id))
    finally:
        hub.detach(listener)
        await hubs.release(hall_id)


FEEDS = [board_feed, counter_feed, ticket_feed, printer_feed, kiosk_feed]
