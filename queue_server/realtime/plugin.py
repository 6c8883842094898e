"""Wires the live feeds into the app: starts the relay and the hub watcher after channels,
the hall snapshots read from memory, and the caches' invalidation (principals, snapshots)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from litestar import Litestar
from litestar.channels.backends.memory import MemoryChannelsBackend
from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.plugins import InitPluginProtocol
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from sqlalchemy import select

from queue_server.api.auth import PRINCIPALS_STATE, SAFE_METHODS
from queue_server.db.engine import is_sqlite
from queue_server.db.tables import HallRow
from queue_server.domain.events import Event
from queue_server.service import views
from queue_server.service.accounts import EVERYONE, PrincipalCache
from queue_server.service.bus import Bus
from queue_server.service.unit_of_work import UnitOfWork
from queue_server.settings import Settings

from .access import AccessWatch
from .channels import RedisPubSubBackend, channels_on
from .follows import FollowReads
from .hub import Hubs
from .invalidation import Invalidations, hall_ids, listen_for_changes
from .relay import Relay
from .snapshots import HallSnapshots

# SQLite serves one process, which wakes its relay on every commit; the poll only picks up
# what a crash left behind. With PostgreSQL other processes' leftovers come by the poll.
POLL_SQLITE = 5.0
POLL_SHARED = 0.5


class Realtime(InitPluginProtocol):
    """Owns the channels plugin, the outbox relay and the hubs of one process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hubs: Hubs | None = None
        self.relay: Relay | None = None
        self.snapshots: HallSnapshots | None = None
        self.follows: FollowReads | None = None
        self.invalidations: Invalidations | None = None
        self.redis = (
            RedisPubSubBackend(settings.redis_url, self._on_reconnect)
            if settings.redis_url
            else None
        )
        self.channels = channels_on(self.redis or MemoryChannelsBackend())
        # Memory is exact only if this process hears every change: through Redis, or alone
        # on SQLite. Processes sharing PostgreSQL without Redis read the database each time.
        self.remembers = bool(settings.redis_url) or is_sqlite(settings.effective_database_url)
        self.principals = PrincipalCache() if self.remembers else None
        self.access = AccessWatch()
        self._tasks: list[asyncio.Task[None]] = []
        self._stop_listening: Callable[[], None] | None = None

    def _on_reconnect(self) -> None:
        if self.hubs is not None:
            self.hubs.resync_all_soon()
        if self.invalidations is not None:
            # Whatever was published while Redis was away is lost: forget everything.
            self.invalidations.forget_here(frozenset({EVERYONE}))

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        # Registered after the channels plugin, so its backend is up when these start.
        app_config.on_startup.append(self._start)
        app_config.on_shutdown.append(self._stop)
        app_config.state[PRINCIPALS_STATE] = self.principals
        app_config.state["access_watch"] = self.access
        app_config.dependencies["snapshots"] = Provide(
            self._provide_snapshots, sync_to_thread=False
        )
        app_config.middleware.append(self._settling)
        return app_config

    def _provide_snapshots(self) -> HallSnapshots:
        assert self.snapshots is not None, "the app has not started"
        return self.snapshots

    def _settling(self, app: ASGIApp) -> ASGIApp:
        """Middleware: the answer to a write leaves only once every process has forgotten
        what the write changed (``Invalidations.settle``). Reads pass straight through."""

        async def settling(scope: Scope, receive: Receive, send: Send) -> None:
            invalidations = self.invalidations
            if invalidations is None or scope.get("method", "GET") in SAFE_METHODS:
                await app(scope, receive, send)
                return

            async def send_settled(message: Message) -> None:
                if message["type"] == "http.response.start" and invalidations.pending:
                    await invalidations.settle()
                await send(message)

            await app(scope, receive, send_settled)

        return settling

    async def _start(self, app: Litestar) -> None:
        bus: Bus = app.state.bus
        url = self.settings.effective_database_url
        self.relay = Relay(
            bus.sessions,
            self.channels,
            POLL_SQLITE if is_sqlite(url) else POLL_SHARED,
            self.redis.publish_batch if self.redis is not None else None,
        )

        async def load(hall_id: int) -> Mapping[str, Any]:
            snapshot = await bus.read(views.hall_snapshot, hall_id)
            return msgspec.to_builtins(snapshot)  # type: ignore[no-any-return]

        async def read_seqs(hall_ids: list[int]) -> dict[int, int]:
            async def read(uow: UnitOfWork) -> dict[int, int]:
                rows = await uow.session.execute(
                    select(HallRow.id, HallRow.event_seq).where(HallRow.id.in_(hall_ids))
                )
                return {hall_id: seq for hall_id, seq in rows}

            return await bus.read(read)

        self.hubs = Hubs(self.channels, load, read_seqs)
        app.state.hubs = self.hubs
        app.state.relay = self.relay
        self.snapshots = HallSnapshots(bus, self.hubs if self.remembers else None, bus.clock)
        app.state.snapshots = self.snapshots
        self.follows = FollowReads(bus, self.hubs if self.remembers else None)
        app.state.follows = self.follows
        relay, follows = self.relay, self.follows

        def committed(events: list[Event]) -> None:
            relay.wake()
            follows.changed(events)

        bus.on_events = committed
        self._tasks = [
            asyncio.create_task(self.relay.run(), name="outbox-relay"),
            asyncio.create_task(self.hubs.watch_forever(), name="hub-watcher"),
            asyncio.create_task(self.snapshots.run(), name="snapshot-idle"),
            asyncio.create_task(self.follows.run(), name="follow-idle"),
        ]
        if self.remembers:
            self.invalidations = Invalidations(self.channels, self.redis)
            app.state.invalidations = self.invalidations
            assert self.principals is not None
            self.invalidations.add(self.principals.forget)
            self.invalidations.add(self.snapshots.forget)
            self.invalidations.add(self.follows.forget)
            self.invalidations.add(self._setup_changed)
            self.invalidations.add(self.access.forget)
            await self.invalidations.start()
            self._stop_listening = listen_for_changes(self.invalidations.committed)
            self._tasks.append(asyncio.create_task(self.invalidations.run(), name="invalidations"))

    def _setup_changed(self, keys: frozenset[str]) -> None:
        """Boards show names, matters and counters too: a hall's change reloads its board.
        (Not on "everything", which a Redis reconnect also says: the watcher covers that.)"""
        halls = hall_ids(keys)
        if self.hubs is not None and halls:
            self.hubs.setup_changed(halls)

    async def _stop(self, app: Litestar) -> None:
        if self._stop_listening is not None:
            self._stop_listening()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.invalidations is not None:
            await self.invalidations.stop()
        if self.snapshots is not None:
            await self.snapshots.close()
        if self.follows is not None:
            await self.follows.close()
