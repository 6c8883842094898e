"""What a process keeps in memory is forgotten, in every process, as soon as it changes.

Two caches hold what the database says: who a token or a session belongs to
(``accounts.PrincipalCache``) and each hall's snapshot (``realtime.snapshots``). Events
keep the snapshot current; what changes without an event (an account, a device, a hall's
names, its matters and counters) is found here, in the ORM's own bookkeeping: every flush
notes the keys of the rows it changed in columns that matter, and the commit hands them to
``Invalidations.committed``. That drops them from this process's caches before the
committing request goes on, and publishes them on ``onedoor:invalidate``, which every
process subscribes to at start-up. Each process forgets the keys, then acknowledges; the
committing request's answer waits (``settle``, at most ``ACK_WAIT`` seconds) until every
process Redis delivered the message to has done so. So once a manager is told a clerk is
deactivated, no process serves that clerk any more.

Redis pub/sub loses what is published while a process is disconnected; a process that
reconnects forgets everything (``Realtime._on_reconnect``). What changes behind the
server's back (SQL typed by hand) is caught by the caches' time limits only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar.channels import ChannelsPlugin, Subscriber
from sqlalchemy import event, inspect
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from queue_server.db.tables import (
    CounterRow,
    DeviceRow,
    HallRow,
    ServiceRow,
    StaffSessionRow,
    UserRow,
)
from queue_server.service import accounts, sessions
from queue_server.service.accounts import EVERYONE

from .channels import INVALIDATION_CHANNEL, REDIS_ERRORS, RedisPubSubBackend

log = logging.getLogger("onedoor.realtime")
ACK_WAIT = 1.0
"""How long a committing request waits for the other processes to acknowledge."""
RETRY_FOR = 30.0
"""A publish that failed is tried again this long (the principal cache's time limit)."""
Forget = Callable[[frozenset[str]], None]


def hall_key(hall_id: int) -> str:
    """The key of what a hall's snapshot shows besides its events: names, matters, counters."""
    return f"hall:{hall_id}"


def hall_ids(keys: Iterable[str]) -> set[int]:
    return {int(k[5:]) for k in keys if k.startswith("hall:")}


def halls_named(keys: frozenset[str]) -> set[int] | None:
    """The halls whose setup ``keys`` say changed; None: every hall."""
    return None if EVERYONE in keys else hall_ids(keys)


@dataclass(frozen=True)
class Watch:
    """A table whose changes in ``columns`` make the keys named by ``key_column`` stale."""

    columns: frozenset[str]
    key_column: str
    key: Callable[[Any], str]
    inserts: bool
    """Whether a new row changes anything kept (a new matter shows on the snapshot; a new
    user or device was never cached)."""


SHOWN_SERVICE = frozenset({"hall_id", "name_zh", "name_en", "prefix", "desk"})
"""What a board shows of a matter, and a follower's view (names, and whether it is the desk)."""
SHOWN_COUNTER = frozenset({"hall_id", "number", "name"})
"""A counter's state and clerk change with events (CounterOpened...): not watched here."""
WATCHED: dict[type, Watch] = {
    UserRow: Watch(accounts.USER_COLUMNS, "id", accounts.user_key, inserts=False),
    DeviceRow: Watch(accounts.DEVICE_COLUMNS, "token_hash", accounts.device_key, inserts=False),
    # A session ends by its row's deletion (``whole``); a new one was never cached.
    StaffSessionRow: Watch(
        frozenset({"user_id", "token_hash", "expires_at"}),
        "token_hash",
        sessions.session_key,
        inserts=False,
    ),
    HallRow: Watch(frozenset({"name_zh", "name_en", "timezone"}), "id", hall_key, inserts=False),
    ServiceRow: Watch(SHOWN_SERVICE, "hall_id", hall_key, inserts=True),
    CounterRow: Watch(SHOWN_COUNTER, "hall_id", hall_key, inserts=True),
}
PENDING = "onedoor_invalidate"
"""Where a session collects the keys its flushes changed until it commits."""
_listeners: list[Forget] = []


def _pending(session: Session) -> set[str]:
    return session.info.setdefault(PENDING, set())  # type: ignore[no-any-return]


def _row_keys(row: object, watch: Watch, whole: bool) -> set[str]:
    state = inspect(row)
    if not whole and not any(state.attrs[c].history.has_changes() for c in watch.columns):
        return set()
    key_attr = state.attrs[watch.key_column]
    values = [state.dict.get(watch.key_column), *key_attr.history.deleted]
    keys = {watch.key(v) for v in values if v is not None}
    return keys or {EVERYONE}


def _after_flush(session: Session, flush_context: UOWTransaction) -> None:
    keys: set[str] = set()
    for rows, whole, new in (
        (session.dirty, False, False),
        (session.deleted, True, False),
        (session.new, True, True),
    ):
        for row in rows:
            watch = WATCHED.get(type(row))
            if watch is None or (new and not watch.inserts):
                continue
            keys |= _row_keys(row, watch, whole)
    if keys:
        _pending(session).update(keys)


def _bulk(state: ORMExecuteState) -> None:
    """An UPDATE or DELETE statement on a watched table: its rows are unknown, so unless it
    sets no watched column (a heartbeat's ``last_seen_at``), everything is stale."""
    if not (state.is_update or state.is_delete) or state.bind_mapper is None:
        return
    watch = WATCHED.get(state.bind_mapper.class_)
    if watch is None:
        return
    if state.is_update:
        values = getattr(state.statement, "_values", None)
        if values and not {getattr(c, "key", c) for c in values} & watch.columns:
            return
    _pending(state.session).add(EVERYONE)


def _after_commit(session: Session) -> None:
    keys = session.info.pop(PENDING, None)
    if keys:
        for listener in list(_listeners):
            listener(frozenset(keys))


def _after_rollback(session: Session) -> None:
    session.info.pop(PENDING, None)


def listen_for_changes(listener: Forget) -> Callable[[], None]:
    """Call ``listener(keys)`` after each commit, in this process, that changed watched rows;
    returns the function that stops it."""
    if not event.contains(Session, "after_commit", _after_commit):
        event.listen(Session, "after_flush", _after_flush)
        event.listen(Session, "do_orm_execute", _bulk)
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_rollback", _after_rollback)
    _listeners.append(listener)
    return lambda: _listeners.remove(listener)


def _over(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Invalidations:
    """This process's end of ``onedoor:invalidate``: forgets here, tells the others, hears
    them. ``redis`` is None when the process is alone (in-memory channels)."""

    def __init__(
        self, channels: ChannelsPlugin, redis: RedisPubSubBackend | None, ack_wait: float = ACK_WAIT
    ) -> None:
        self._channels = channels
        self._redis = redis
        self._ack_wait = ack_wait
        self._forget: list[Forget] = []
        self._subscriber: Subscriber | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.pending: set[asyncio.Future[None]] = set()
        """First attempts at telling the others, not yet over: answers wait for these."""
        self._broadcasts: set[asyncio.Task[None]] = set()
        self.heard = 0
        """Messages handled (tests wait on it)."""

    def add(self, forget: Forget) -> None:
        """``forget(keys)`` is called whenever ``keys`` changed, here or elsewhere."""
        self._forget.append(forget)

    def forget_here(self, keys: frozenset[str]) -> None:
        for forget in self._forget:
            forget(keys)

    def committed(self, keys: frozenset[str]) -> None:
        """A commit in this process changed ``keys``: forget them now, tell the others."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if self._loop is not None and running is not self._loop:
            # Committed on another thread's loop (a test's own session): hand it over.
            with contextlib.suppress(RuntimeError):  # that loop is closed: nothing to forget
                self._loop.call_soon_threadsafe(self._committed_here, keys)
            return
        self._committed_here(keys)

    def _committed_here(self, keys: frozenset[str]) -> None:
        self.forget_here(keys)
        if self._redis is None or self._loop is None:
            return
        first: asyncio.Future[None] = self._loop.create_future()
        self.pending.add(first)
        first.add_done_callback(self.pending.discard)
        task = self._loop.create_task(self._broadcast(keys, first), name="invalidate")
        self._broadcasts.add(task)
        task.add_done_callback(self._broadcasts.discard)
        task.add_done_callback(lambda _: _over(first))

    async def settle(self) -> None:
        """Wait (briefly) until every process acknowledged what this one changed."""
        if self.pending:
            await asyncio.wait(list(self.pending), timeout=self._ack_wait + 0.5)

    async def _broadcast(self, keys: frozenset[str], first: asyncio.Future[None]) -> None:
        """Publish and wait for the acknowledgements; ``first`` is over after the first
        attempt, so that answers do not wait for retries while Redis is away."""
        assert self._redis is not None
        ack = f"{INVALIDATION_CHANNEL}:ack:{uuid.uuid4().hex}"
        message = msgspec.json.encode({"keys": sorted(keys), "ack": ack})
        loop = asyncio.get_running_loop()
        give_up = loop.time() + RETRY_FOR
        while True:
            try:
                receivers = await self._redis.publish_counted(message, INVALIDATION_CHANNEL)
                acked = await self._redis.wait_acks(ack, receivers, self._ack_wait)
            except REDIS_ERRORS as exc:
                _over(first)
                if loop.time() > give_up:
                    log.error("could not publish an invalidation (%s); caches expire it", exc)
                    return
                log.warning("could not publish an invalidation (%s); trying again", exc)
                await asyncio.sleep(0.5)
                continue
            if acked < receivers:
                log.warning("%d of %d processes acknowledged an invalidation within %.1f s",
                            acked, receivers, self._ack_wait)  # fmt: skip
            return

    async def start(self) -> None:
        """Subscribe (before the app serves anyone)."""
        self._loop = asyncio.get_running_loop()
        self._subscriber = await self._channels.subscribe([INVALIDATION_CHANNEL])

    async def stop(self) -> None:
        if self._subscriber is not None:
            await self._channels.unsubscribe(self._subscriber)
        for task in list(self._broadcasts):
            task.cancel()

    async def run(self) -> None:
        """Forget what other processes (and this one) announce, then acknowledge it."""
        assert self._subscriber is not None, "start() first"
        async for payload in self._subscriber.iter_events():
            ack = None
            try:
                message = msgspec.json.decode(payload)
                keys = frozenset(str(k) for k in message["keys"])
                ack = message.get("ack")
            except (msgspec.DecodeError, KeyError, TypeError):
                log.warning("unreadable invalidation %r; forgetting everything", payload[:200])
                keys = frozenset({EVERYONE})
            self.forget_here(keys)
            self.heard += 1
            if ack and self._redis is not None:
                try:
                    await self._redis.ack(str(ack))
                except REDIS_ERRORS as exc:
                    log.warning("could not acknowledge an invalidation: %s", exc)
