"""Wires the live feeds into the app: starts the relay and the hub watcher after channels."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import msgspec
from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.plugins import InitPluginProtocol
from sqlalchemy import select

from queue_server.db.engine import is_sqlite
from queue_server.db.tables import HallRow
from queue_server.service import views
from queue_server.service.bus import Bus
from queue_server.service.unit_of_work import UnitOfWork
from queue_server.settings import Settings

from .channels import make_channels
from .hub import Hubs
from .relay import Relay

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
        self.channels = make_channels(settings.redis_url, self._on_reconnect)
        self._tasks: list[asyncio.Task[None]] = []

    def _on_reconnect(self) -> None:
        if self.hubs is not None:
            self.hubs.resync_all_soon()

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        # Registered after the channels plugin, so its backend is up when these start.
        app_config.on_startup.append(self._start)
        app_config.on_shutdown.append(self._stop)
        return app_config

    async def _start(self, app: Litestar) -> None:
        bus: Bus = app.state.bus
        url = self.settings.effective_database_url
        self.relay = Relay(
            bus.sessions, self.channels, POLL_SQLITE if is_sqlite(url) else POLL_SHARED
        )
        bus.on_events = self.relay.wake

        async def load(hall_id: int) -> Mapping[str, Any]:
            snapshot = await bus.run(views.hall_snapshot, hall_id)
            return msgspec.to_builtins(snapshot)  # type: ignore[no-any-return]

        async def read_seqs(hall_ids: list[int]) -> dict[int, int]:
            async def read(uow: UnitOfWork) -> dict[int, int]:
                rows = await uow.session.execute(
                    select(HallRow.id, HallRow.event_seq).where(HallRow.id.in_(hall_ids))
                )
                return {hall_id: seq for hall_id, seq in rows}

            return await bus.run(read)

        self.hubs = Hubs(self.channels, load, read_seqs)
        app.state.hubs = self.hubs
        app.state.relay = self.relay
        self._tasks = [
            asyncio.create_task(self.relay.run(), name="outbox-relay"),
            asyncio.create_task(self.hubs.watch_forever(), name="hub-watcher"),
        ]

    async def _stop(self, app: Litestar) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
