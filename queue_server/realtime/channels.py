"""The channels port: Litestar's in-memory backend, or Redis pub/sub that survives restarts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence

from litestar.channels import ChannelsPlugin
from litestar.channels.backends.base import ChannelsBackend
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from queue_server.logs import Outage

log = logging.getLogger("onedoor.realtime")
# A subscriber (one per hall and process) that falls this far behind loses the oldest
# messages; the hub notices the gap in sequence numbers and reloads a snapshot.
SUBSCRIBER_BACKLOG = 1000
PREFIX = "onedoor:"
REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
ACK_KEEP_SECONDS = 10
"""An acknowledgement list nobody waits for any more is gone after this long."""


def hall_channel(hall_id: int) -> str:
    return f"{PREFIX}hall:{hall_id}"


INVALIDATION_CHANNEL = f"{PREFIX}invalidate"
"""Every process listens here for changes its caches must forget (realtime.invalidation)."""


class RedisPubSubBackend(ChannelsBackend):
    """Redis pub/sub that reconnects and resubscribes by itself after Redis restarts.

    Litestar's own pub/sub backend ends its stream on the first connection error, which
    would leave every board of the process silent until a restart. Messages published
    while Redis is away are lost to pub/sub, so ``on_reconnect`` tells the hubs to check
    their sequence numbers against the database.
    """

    def __init__(self, url: str, on_reconnect: Callable[[], None] | None = None) -> None:
        self._url = url
        self._on_reconnect = on_reconnect
        self._redis: Redis | None = None
        self._pubsub: PubSub | None = None
        self._channels: set[str] = set()
        self._has_channels = asyncio.Event()
        # redis-py's PubSub takes its connection on first use: two subscriptions at once
        # would each take one, and only the last would ever be read.
        self._lock = asyncio.Lock()
        self._outage = Outage(log, "redis pub/sub")
        """Redis away: its loss logged once, summarised while it lasts, and its return."""

    async def on_startup(self) -> None:
        self._redis = Redis.from_url(self._url, health_check_interval=5, socket_keepalive=True)

    async def on_shutdown(self) -> None:
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
        if self._redis is not None:
            await self._redis.aclose()

    def _ps(self) -> PubSub:
        if self._pubsub is None:
            assert self._redis is not None, "on_startup has not run"
            self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        return self._pubsub

    async def subscribe(self, channels: Iterable[str]) -> None:
        new = set(channels)
        async with self._lock:
            self._channels |= new
            try:
                await self._ps().subscribe(*new)
            except REDIS_ERRORS as exc:
                log.warning("redis subscribe failed (%s); will resubscribe on reconnect", exc)
                self._pubsub = None
        self._has_channels.set()

    async def unsubscribe(self, channels: Iterable[str]) -> None:
        gone = set(channels)
        async with self._lock:
            self._channels -= gone
            try:
                await self._ps().unsubscribe(*gone)
            except REDIS_ERRORS as exc:
                log.warning("redis unsubscribe failed (%s)", exc)
        if not self._channels:
            self._has_channels.clear()

    async def publish(self, data: bytes, channels: Iterable[str]) -> None:
        """Publish, raising if Redis is unreachable (the relay keeps the event and retries)."""
        assert self._redis is not None, "on_startup has not run"
        for channel in channels:
            await self._redis.publish(channel, data)

    async def publish_batch(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Publish ``(channel, data)`` messages in one round trip (a pipeline without
        MULTI: Redis runs its commands in order, so each channel hears them in order),
        raising if Redis is unreachable (the relay keeps the events and retries)."""
        assert self._redis is not None, "on_startup has not run"
        if not messages:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for channel, data in messages:
                pipe.publish(channel, data)
            await pipe.execute()

    async def publish_counted(self, data: bytes, channel: str) -> int:
        """Publish on one channel; how many subscribers (processes) Redis handed it to."""
        assert self._redis is not None, "on_startup has not run"
        return int(await self._redis.publish(channel, data))

    async def ack(self, key: str) -> None:
        """Answer a message that asked for acknowledgements under ``key``."""
        assert self._redis is not None, "on_startup has not run"
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.rpush(key, b"1")
            pipe.expire(key, ACK_KEEP_SECONDS)
            await pipe.execute()

    async def wait_acks(self, key: str, count: int, seconds: float) -> int:
        """Wait up to ``seconds`` for ``count`` answers under ``key``; how many came."""
        assert self._redis is not None, "on_startup has not run"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        got = 0
        try:
            while got < count:
                left = deadline - loop.time()
                if left <= 0:
                    break
                # BLPOP takes fractional seconds (Redis 6+); 0 would mean "forever".
                if await self._redis.blpop([key], timeout=max(left, 0.01)) is not None:
                    got += 1
        finally:
            await self._redis.delete(key)
        return got

    async def stream_events(self) -> AsyncGenerator[tuple[str, bytes], None]:
        backoff = 0.1
        while True:
            await self._has_channels.wait()
            try:
                pubsub = self._ps()
                if pubsub.connection is None:
                    # Not subscribed yet (or the last attempt failed): (re)subscribe first.
                    raise RedisConnectionError("pub/sub not connected")
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except REDIS_ERRORS as exc:
                self._outage.failed(f"connection lost ({exc!r}); reconnecting")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                async with self._lock:
                    await self._reconnect()
                continue
            backoff = 0.1
            if message is None or message.get("type") != "message":
                continue
            yield message["channel"].decode(), message["data"]

    async def _reconnect(self) -> None:
        old, self._pubsub = self._pubsub, None
        if old is not None:
            with contextlib.suppress(*REDIS_ERRORS):
                await old.aclose()  # type: ignore[no-untyped-call,unused-ignore]
        try:
            if self._channels:
                await self._ps().subscribe(*self._channels)
        except REDIS_ERRORS as exc:
            self._outage.failed(f"could not subscribe again ({exc!r})")
            self._pubsub = None
            return
        self._outage.recovered()
        log.info("redis pub/sub reconnected; %d channels resubscribed", len(self._channels))
        if self._on_reconnect is not None:
            self._on_reconnect()

    async def get_history(self, channel: str, limit: int | None = None) -> list[bytes]:
        raise NotImplementedError("pub/sub keeps no history; feeds replay from the hub")


def channels_on(backend: ChannelsBackend) -> ChannelsPlugin:
    """The channels plugin over ``backend``: in memory for one process, Redis pub/sub
    (``RedisPubSubBackend``) when several share a hall."""
    return ChannelsPlugin(
        backend=backend,
        arbitrary_channels_allowed=True,
        subscriber_max_backlog=SUBSCRIBER_BACKLOG,
        subscriber_backlog_strategy="dropleft",
    )
