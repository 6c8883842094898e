"""One hub per hall and process: one channel subscription, one board, many listeners.

The hub applies the hall's events to its board (display.board) in sequence order and
hands each listener what it needs. A listener never blocks the hub: board feeds get a
bounded mailbox that drops the oldest message and then resynchronises with a snapshot;
counter and ticket feeds only get a "something changed" mark. A gap in the sequence
(a message lost to a full backlog, a Redis restart, two processes publishing out of
order) makes the hub reload a snapshot from the database; so does a watcher that sees the
database ahead of the hub for more than a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

import msgspec
from litestar.channels import ChannelsPlugin, Subscriber

from display.board import BoardView, NeedsSnapshot, apply, board_from_snapshot
from queue_server.logs import Outage

from .channels import hall_channel

log = logging.getLogger("onedoor.realtime")
REPLAY = 256
REORDER_WAIT = 0.25
UNSHOWN = frozenset(
    {"PrintJobQueued", "PrintJobPrinted", "PrintJobFailed", "PrinterStatusChanged",
     "ServiceRated", "BookingMade", "BookingCancelled", "BookingRescheduled",
     "BookingCheckedIn", "BookingMarkedNoShow", "BookingDayReleased",
     "TicketEscalated", "OutcomeCorrected", "CaseChanged"}
)  # fmt: skip
"""Events that change nothing a hall snapshot shows (GET …/snapshot, views.hall_snapshot):
print jobs, printers, ratings, bookings. A checked-in booking joins the queue as a
``TicketIssued`` of its own. Any other event, known or not, counts as shown."""
LoadSnapshot = Callable[[int], Awaitable[Mapping[str, Any]]]


class Listener(Protocol):
    def snapshot(self, board: BoardView, message: bytes) -> None: ...

    def event(self, seq: int, name: str, data: Mapping[str, Any], message: bytes) -> None: ...


class Mailbox:
    """A feed's outgoing messages: bounded; when full the oldest goes and a resync is due.

    One per board screen, so kept small: a list, and a future only while its feed waits
    (a deque and an ``asyncio.Event`` held about 1.5 KiB of empty blocks per screen). One
    waiter at a time: the feed's sender."""

    __slots__ = ("_waiter", "messages", "overflowed", "size")

    def __init__(self, size: int) -> None:
        self.messages: list[bytes] = []
        self.size = size
        self.overflowed = False
        self._waiter: asyncio.Future[None] | None = None

    def put(self, message: bytes) -> None:
        if len(self.messages) >= self.size:
            del self.messages[0]
            self.overflowed = True
        self.messages.append(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def replace(self, message: bytes) -> None:
        self.messages = []
        self.overflowed = False
        self.put(message)

    def take(self) -> list[bytes]:
        taken, self.messages = self.messages, []
        return taken

    def wake(self) -> None:
        """End the current wait with nothing new: its feed has something else to see to."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Return once a message is there to take, or ``wake`` was called."""
        if self.messages:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


PING_SECONDS = 15.0
"""A feed with nothing to say for this long sends a ping (so screens know it is alive)."""


def ping_message(seq: int) -> bytes:
    return msgspec.json.encode({"type": "ping", "seq": seq})


def snapshot_message(board: BoardView) -> bytes:
    return msgspec.json.encode({"type": "snapshot", "seq": board.seq, "board": board})


def event_message(board: BoardView, seq: int, name: str, data: Mapping[str, Any]) -> bytes:
    return msgspec.json.encode(
        {"type": "event", "seq": seq, "event": {"name": name, **data}, "board": board}
    )


class HallHub:
    def __init__(self, hall_id: int, channels: ChannelsPlugin, load: LoadSnapshot) -> None:
        self.hall_id = hall_id
        self._channels = channels
        self._load = load
        self.board: BoardView | None = None
        self._snapshot: tuple[int, bytes] = (-1, b"")
        self._replay: deque[tuple[int, bytes]] = deque(maxlen=REPLAY)
        self.listeners: set[Listener] = set()
        self._subscriber: Subscriber | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._snapshot_outage = Outage(log, f"hall {hall_id}: board snapshot")
        self._early: dict[int, tuple[str, Mapping[str, Any]]] = {}
        self._gap_timer: asyncio.TimerHandle | None = None
        self._gap_task: asyncio.Task[None] | None = None
        self.lagging_since: float | None = None
        self._lag_target = 0
        self.resyncs = 0
        self.shown_seq = 0
        """The last event number that changed what a hall snapshot shows (see UNSHOWN)."""

    @property
    def seq(self) -> int:
        return self.board.seq if self.board else 0

    async def start(self) -> None:
        # Subscribe before loading: an event committed meanwhile arrives after the snapshot
        # and is applied or skipped by its sequence number, never lost.
        self._subscriber = await self._channels.subscribe(hall_channel(self.hall_id))
        try:
            await self.resync()
        except BaseException:
            await self._channels.unsubscribe(self._subscriber)
            raise
        self._task = asyncio.create_task(self._pump(), name=f"hub-{self.hall_id}")

    async def stop(self) -> None:
        self._snapshot_outage.abandon("the hall's last board left")
        if self._gap_timer is not None:
            self._gap_timer.cancel()
        if self._task is not None:
            self._task.cancel()
        if self._subscriber is not None:
            await self._channels.unsubscribe(self._subscriber)

    async def _pump(self) -> None:
        assert self._subscriber is not None
        async for payload in self._subscriber.iter_events():
            try:
                message = msgspec.json.decode(payload)
                await self.receive(message["seq"], message["name"], message["data"])
            except Exception:
                log.exception("hall %s: could not apply a message; resynchronising", self.hall_id)
                await self.try_resync()

    async def receive(self, seq: int, name: str, data: Mapping[str, Any]) -> None:
        """Apply event ``seq``. One that arrives early (two processes relaying out of order)
        waits up to ``REORDER_WAIT`` for the ones before it; a gap still open then, or an
        unknown reference, reloads a snapshot."""
        if self.board is None or seq <= self.board.seq:
            return
        if seq > self.board.seq + 1:
            self._early[seq] = (name, data)
            if self._gap_timer is None:
                self._gap_timer = asyncio.get_running_loop().call_later(
                    REORDER_WAIT, self._gap_timer_fired
                )
            return
        await self._apply(seq, name, data)
        await self._drain()

    async def _drain(self) -> None:
        """Apply the early events that are next in line now."""
        while self.board is not None and self.board.seq + 1 in self._early:
            next_seq = self.board.seq + 1
            await self._apply(next_seq, *self._early.pop(next_seq))
        if not self._early and self._gap_timer is not None:
            self._gap_timer.cancel()
            self._gap_timer = None

    def _gap_timer_fired(self) -> None:
        self._gap_task = asyncio.create_task(self._gap_expired(), name=f"hub-{self.hall_id}-gap")

    async def _gap_expired(self) -> None:
        self._gap_timer = None
        if self._early:
            log.info("hall %s: events before %s never came; loading a snapshot",
                     self.hall_id, min(self._early))  # fmt: skip
            if await self.try_resync():
                await self._drain()

    async def try_resync(self) -> bool:
        """``resync``, but a failure (the database away) is logged and left to the watcher,
        which tries again within a second; the hub keeps running."""
        try:
            await self.resync()
        except Exception as exc:
            self._snapshot_outage.failed(f"failed ({exc!r}); the watcher tries again")
            self.lagging_since, self._lag_target = 0.0, self.seq + 1
            return False
        return True

    async def _apply(self, seq: int, name: str, data: Mapping[str, Any]) -> None:
        assert self.board is not None
        try:
            board = apply(self.board, seq, name, data)
        except NeedsSnapshot as why:
            log.info("hall %s: %s; loading a snapshot", self.hall_id, why)
            await self.try_resync()
            return
        self.board = board
        if name not in UNSHOWN:
            self.shown_seq = seq
        if not self.listeners:
            # Nobody to send it to: not encoded. The replay must hold every event since
            # its first, so it starts again; a listener attached later asking for these
            # events gets a snapshot instead.
            self._replay.clear()
            return
        message = event_message(board, seq, name, data)
        self._replay.append((seq, message))
        for listener in list(self.listeners):
            listener.event(seq, name, data, message)

    async def resync(self) -> None:
        """Reload the board from the database and send every listener a snapshot."""
        async with self._lock:
            snapshot = await self._load(self.hall_id)
            self._snapshot_outage.recovered()
            if self.board is not None and snapshot["seq"] < self.board.seq:
                return  # a replica lagging behind what we already applied
            self.board = board_from_snapshot(snapshot)
            self.shown_seq = self.board.seq
            self._early = {k: v for k, v in self._early.items() if k > self.board.seq}
            self._replay.clear()
            self.lagging_since = None
            self.resyncs += 1
            message = self.snapshot_now()
            for listener in list(self.listeners):
                listener.snapshot(self.board, message)

    def snapshot_now(self) -> bytes:
        """The snapshot message of the board as it is now (encoded once per sequence number)."""
        assert self.board is not None, "start() first"
        if self._snapshot[0] != self.board.seq:
            self._snapshot = (self.board.seq, snapshot_message(self.board))
        return self._snapshot[1]

    def attach(self, listener: Listener, since: int | None = None) -> None:
        """Add a listener; it first gets the events after ``since`` if the hub still has
        them all, else the current snapshot."""
        assert self.board is not None, "start() first"
        self.listeners.add(listener)
        held = [seq for seq, _ in self._replay]
        if since is not None and since == self.board.seq:
            return
        if since is not None and held and held[0] <= since + 1 and since < self.board.seq:
            for seq, message in self._replay:
                if seq > since:
                    listener.event(seq, "", {}, message)
            return
        listener.snapshot(self.board, self.snapshot_now())

    def detach(self, listener: Listener) -> None:
        self.listeners.discard(listener)

    def snapshot_outage_over(self) -> None:
        """The watcher found the board in step with the database: a snapshot that failed
        meanwhile is not needed any more."""
        self._snapshot_outage.recovered()

    def note_database_seq(self, seq: int, now: float) -> bool:
        """The watcher's report of the database's sequence number; True when the hub has
        not reached a number the database had a second ago: time to resync."""
        if self.lagging_since is not None and self.seq < self._lag_target:
            return now - self.lagging_since >= 1.0
        if seq > self.seq:
            self._lag_target, self.lagging_since = seq, now
        else:
            self.lagging_since = None
        return False


ReadSeqs = Callable[[list[int]], Awaitable[dict[int, int]]]


class Hubs:
    """The process's hubs, created on first use and stopped when their last feed leaves."""

    def __init__(self, channels: ChannelsPlugin, load: LoadSnapshot, read_seqs: ReadSeqs) -> None:
        self._channels = channels
        self._load = load
        self._read_seqs = read_seqs
        self._hubs: dict[int, HallHub] = {}
        self._users: dict[int, int] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._resyncs: set[asyncio.Task[bool]] = set()
        self._watch_outage = Outage(log, "boards' watcher")

    async def acquire(self, hall_id: int) -> HallHub:
        lock = self._locks.setdefault(hall_id, asyncio.Lock())
        async with lock:
            hub = self._hubs.get(hall_id)
            if hub is None:
                hub = HallHub(hall_id, self._channels, self._load)
                await hub.start()
                self._hubs[hall_id] = hub
            self._users[hall_id] = self._users.get(hall_id, 0) + 1
            return hub

    async def release(self, hall_id: int) -> None:
        async with self._locks.setdefault(hall_id, asyncio.Lock()):
            self._users[hall_id] -= 1
            if self._users[hall_id] == 0:
                hub = self._hubs.pop(hall_id)
                del self._users[hall_id]
                await hub.stop()

    def setup_changed(self, hall_ids: set[int]) -> None:
        """These halls' names, matters or counters changed: their boards are read again."""
        for hall_id, hub in list(self._hubs.items()):
            if hall_id in hall_ids:
                task = asyncio.create_task(hub.try_resync(), name=f"hub-{hall_id}-setup")
                self._resyncs.add(task)
                task.add_done_callback(self._resyncs.discard)

    def resync_all_soon(self) -> None:
        """After a broker reconnect: let the watcher compare every hub with the database."""
        for hub in self._hubs.values():
            hub.lagging_since, hub._lag_target = 0.0, hub.seq + 1

    async def watch_forever(self, interval: float = 0.5) -> None:
        """``watch``, restarted if anything unforeseen ends it: boards must not freeze."""
        while True:
            try:
                await self.watch(interval)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("hub watcher failed; restarting it")
                await asyncio.sleep(interval)

    async def watch(self, interval: float = 0.5) -> None:
        """Compare each hub's sequence with the database and resync the ones left behind."""
        while True:
            await asyncio.sleep(interval)
            if not self._hubs:
                self._watch_outage.abandon("no boards left to watch")
                continue
            try:
                seqs = await self._read_seqs(list(self._hubs))
            except Exception as exc:
                self._watch_outage.failed(f"could not read the halls' sequences ({exc!r})")
                continue
            self._watch_outage.recovered()
            now = time.monotonic()
            for hall_id, hub in list(self._hubs.items()):
                if hub.note_database_seq(seqs.get(hall_id, 0), now):
                    log.info("hall %s: board behind the database; resynchronising", hall_id)
                    await hub.try_resync()
                else:  # caught up without a snapshot: in step with the database again
                    hub.snapshot_outage_over()

    def __len__(self) -> int:
        return len(self._hubs)


class InUse(Protocol):
    """What a process keeps for a hall while it is in use (``HallsInUse``)."""

    hub: HallHub
    last_read: float
    """``time.monotonic()`` of its last use."""


U = TypeVar("U", bound=InUse)


class HallsInUse(Generic[U]):
    """Per hall, what an HTTP read path keeps in memory on the hall's hub (the snapshot's
    readers, the follow links' views): made with the hub on the hall's first use — once,
    however many requests come at that moment — and given back, hub and all, ``idle``
    seconds after its last use."""

    def __init__(
        self,
        hubs: Hubs,
        make: Callable[[int, HallHub], U],
        gone: Callable[[U], None] = lambda _: None,
    ) -> None:
        self._hubs = hubs
        self._make = make
        self._gone = gone
        self.open: dict[int, U] = {}
        self._opening: dict[int, asyncio.Task[U]] = {}

    async def get(self, hall_id: int) -> U:
        """The hall's, made (and its hub taken) on first use."""
        found = self.open.get(hall_id)
        if found is not None:
            return found
        task = self._opening.get(hall_id)
        if task is None:
            task = asyncio.create_task(self._take(hall_id), name=f"hall-in-use-{hall_id}")
            self._opening[hall_id] = task

            def done(finished: asyncio.Task[U]) -> None:
                if self._opening.get(hall_id) is finished:
                    del self._opening[hall_id]
                finished.cancelled() or finished.exception()

            task.add_done_callback(done)
        return await asyncio.shield(task)

    async def _take(self, hall_id: int) -> U:
        hub = await self._hubs.acquire(hall_id)
        made = self.open[hall_id] = self._make(hall_id, hub)
        return made

    def named(self, hall_ids: set[int] | None) -> list[U]:
        """The open halls of ``hall_ids`` (None: all of them)."""
        if hall_ids is None:
            return list(self.open.values())
        return [self.open[h] for h in hall_ids if h in self.open]

    async def release_every(
        self, idle: Callable[[], float], before: Callable[[], None] = lambda: None
    ) -> None:
        """Give back the halls not used for ``idle()`` seconds, looking four times per
        ``idle()`` (after ``before()``), until cancelled."""
        while True:
            await asyncio.sleep(max(idle() / 4, 1.0))
            try:
                before()
                await self.release_idle(idle())
            except Exception:  # the next round tries again
                log.exception("giving back idle halls failed")

    async def release_idle(self, idle: float) -> None:
        """Give back the halls not used for ``idle`` seconds."""
        now = time.monotonic()
        for hall_id, kept in list(self.open.items()):
            if now - kept.last_read >= idle and self.open.get(hall_id) is kept:
                await self._release(hall_id, kept)

    async def _release(self, hall_id: int, kept: U) -> None:
        del self.open[hall_id]
        self._gone(kept)
        await self._hubs.release(hall_id)

    async def close(self) -> None:
        for task in list(self._opening.values()):
            task.cancel()
        for hall_id, kept in list(self.open.items()):
            with contextlib.suppress(Exception):
                await self._release(hall_id, kept)

    def __len__(self) -> int:
        return len(self.open)
