"""The outbox relay: publishes committed events from the ``hall_events`` log, in order.

Events are written in the same transaction as the change they record, so only committed
changes are ever published, and a crash between commit and publish loses nothing: the
row is still unpublished and the next pass (in this process after a restart, or in any
other) sends it. Several processes may relay at once: each claims rows with
``FOR UPDATE SKIP LOCKED``, so an event goes out once (a crash mid-batch may send it
twice; listeners ignore a sequence number they have seen).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import msgspec
from litestar.channels import ChannelsPlugin
from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from queue_server.clock import SystemClock
from queue_server.db import driven
from queue_server.db.tables import HallEventRow
from queue_server.logs import Outage
from queue_server.service.unit_of_work import UnitOfWork

from .channels import hall_channel

log = logging.getLogger("onedoor.realtime")
BATCH = 500
GAP = 0.02
BURST = 3
"""A process's relay starts up to ``BURST`` rounds back to back, and then one per ``GAP``
seconds (a token bucket, shared by all the halls the process serves): under a rush, what
is committed in the meantime goes out with the next round, in one claim and one publish,
instead of a transaction and a Redis round trip for each commit. It adds at most ``GAP``
to an event's publication, and nothing while commits come less often than that."""


_EVENTS = cast(Table, HallEventRow.__table__)
# Built once (the relay runs after every commit that wrote events), and a plain table
# statement: one batch of unpublished rows, oldest first, claimed and marked published at
# once. The mark holds only if the publishing that follows succeeds: otherwise the
# transaction rolls back and the rows are still unpublished.
_CLAIM_UNPUBLISHED = (
    update(_EVENTS)
    .where(
        _EVENTS.c.id.in_(
            select(_EVENTS.c.id)
            .where(_EVENTS.c.published_at.is_(None))
            .order_by(_EVENTS.c.id)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        )
    )
    .values(published_at=bindparam("now"))
    .returning(_EVENTS.c.id, _EVENTS.c.hall_id, _EVENTS.c.seq, _EVENTS.c.name, _EVENTS.c.payload)
)


_CLAIM_ON_DRIVER = driven.for_driver(_CLAIM_UNPUBLISHED)
_CLOCK = SystemClock()


def event_message(hall_id: int, seq: int, name: str, payload: Any) -> bytes:
    """What goes on the hall's channel for one logged event."""
    return msgspec.json.encode({"hall_id": hall_id, "seq": seq, "name": name, "data": payload})


class Relay:
    """Runs beside the app; ``wake()`` after a commit that wrote events."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        channels: ChannelsPlugin,
        poll_interval: float,
        publish_batch: Callable[[Sequence[tuple[str, bytes]]], Awaitable[None]] | None = None,
        gap: float = GAP,
        burst: int = BURST,
    ) -> None:
        self._sessions = sessions
        self._channels = channels
        self._publish_batch = publish_batch
        """Publishes a batch in one round trip (Redis: ``RedisPubSubBackend.publish_batch``);
        without it, each message is published through ``channels`` in turn."""
        if gap <= 0 or burst < 1:
            raise ValueError(f"a relay needs gap > 0 and burst >= 1, not {gap} and {burst}")
        self._poll = poll_interval
        self._gap = gap
        self._burst = burst
        self._wake = asyncio.Event()
        self._outage = Outage(log, "relay")
        """The broker or the database away: logged once, summarised, and its end."""
        self.published = 0
        self.rounds = 0
        """Rounds ``run`` started (each claims and publishes until nothing is left)."""

    def wake(self) -> None:
        self._wake.set()

    async def relay_once(self) -> int:
        """Publish one batch of unpublished events, oldest first; return how many.

        On PostgreSQL the claim runs on the driver's own connection, in a transaction of
        its own there (``UnitOfWork.begin_on_driver``): no ORM session is made and ended
        for each round (under a kiosk rush, a round every ``GAP``; ORM sessions, the
        relay's and the answers', held 18.7% of a busy worker's event loop:
        docs/performance.md, "2026-12-06, late")."""
        async with UnitOfWork(self._sessions, _CLOCK) as uow:
            now = _CLOCK.now()
            claimed: Sequence[Any]
            if uow.dialect == "postgresql":
                driver = await uow.begin_on_driver()
                claimed = await driven.fetch(driver, _CLAIM_ON_DRIVER, {"now": now})
            else:
                claimed = (await uow.session.execute(_CLAIM_UNPUBLISHED, {"now": now})).all()
            # In each hall's order (RETURNING keeps none). On PostgreSQL a clerk's events
            # are numbered as their transaction commits, after the rows got their ids:
            # within a hall, ids need not follow the numbers (a batch cut at BATCH rows may
            # leave an earlier number for the next round; the hub waits for such a gap).
            rows = sorted(claimed, key=lambda row: (row[1], row[2]))
            messages = [
                (hall_channel(hall_id), event_message(hall_id, seq, name, payload))
                for _, hall_id, seq, name, payload in rows
            ]
            if self._publish_batch is not None:
                await self._publish_batch(messages)
            else:
                for channel, message in messages:
                    await self._channels.wait_published(message, channel)
            # Marked published only now: a publish that failed rolls the claim back.
            await uow.commit()
        self.published += len(rows)
        return len(rows)

    async def run(self) -> None:
        """Relay until cancelled: when woken, else every ``poll_interval`` seconds; up to
        ``burst`` rounds back to back, then one per ``gap`` seconds."""
        backoff = 0.1
        loop = asyncio.get_running_loop()
        tokens, since = float(self._burst), loop.time()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll)
            tokens = min(self._burst, tokens + (loop.time() - since) / self._gap)
            since = loop.time()
            if tokens < 1:
                await asyncio.sleep((1 - tokens) * self._gap)  # commits meanwhile join in
                tokens, since = 1.0, loop.time()
            tokens -= 1
            self._wake.clear()
            self.rounds += 1
            try:
                published = total = await self.relay_once()
                while published == BATCH:
                    published = await self.relay_once()
                    total += published
                backoff = 0.1
                if total:  # an empty round reached the database, not the broker
                    self._outage.recovered()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker or database is away: keep the rows, retry
                self._outage.failed(f"could not publish ({exc!r}); retrying in {backoff:.1f} s, "
                                    "then at most every 5 s")  # fmt: skip
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                self._wake.set()
