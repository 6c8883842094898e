"""uvicorn's sans-I/O websocket protocol, keeping less for each open connection.

A hall's boards keep their websockets open all day, so what one idle connection holds is
what a building's screens cost the server. uvicorn's protocol holds, for a connection's
whole life, a few things its idle connection never uses again (measured with tracemalloc
over 1,000 idle sockets, uvicorn 0.55, docs/performance.md):

- the handshake's request and response, with their headers: about 4 KiB. Nothing reads
  them once the handshake is answered; here they are let go then, and the request's
  headers emptied (the websocket library's parser keeps the request itself, a local of
  its generator, for the socket's life).
- an ``asyncio.Queue`` for the events the app receives (three deques and an ``Event``
  with a fourth): about 3 KiB. Here the events wait in a list, and a future is made only
  while the app waits for one.
- an ``asyncio.Event`` for the transport's flow control (one more deque): here a flag
  whose waiters are made only while a send waits for the transport to drain.

Everything else is uvicorn's own: the handshake, frames, pings, closing and errors. Its
protocol reaches these two objects through ``put_nowait``, ``get`` and ``empty``, and
``set``, ``clear`` and ``wait``; ``Inbox`` and ``Flag`` keep ``asyncio.Queue``'s and
``asyncio.Event``'s meaning for those (and the few other methods they offer), including
a waiter cancelled while it waits. The handshake is let go of from ``start_keepalive``,
which uvicorn calls once, right after writing the accepting response (uvicorn 0.44 and
later), so a socket's messages pass through nothing more than uvicorn's own code. These
are uvicorn's attributes, not its API: tests/unit/test_lean_websocket.py serves the same
sockets through this protocol and uvicorn's own and compares what clients and the app see,
so an uvicorn that changes them fails there.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Generic, TypeVar

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

__all__ = ["Flag", "Inbox", "LeanWebSocketProtocol"]

T = TypeVar("T")

COMPACT_AT = 64
"""Items read from an ``Inbox`` before its list drops them (once they are half of it)."""


class _Waiting:
    """What ``Inbox`` and ``Flag`` share: their loop, and the futures of whoever waits,
    a list made only while someone does."""

    __slots__ = ("_loop", "_waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiters: list[asyncio.Future[None]] | None = None

    def _enlisted(self) -> asyncio.Future[None]:
        waiter = self._loop.create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        return waiter

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        if self._waiters is not None:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
        self._waiters = self._waiters or None


class Inbox(_Waiting, Generic[T]):
    """A queue for one connection's events, without ``asyncio.Queue``'s deques: the items
    in a list read from a head index (compacted as it is read, so each item costs the same
    however many wait: a client can send tens of thousands of small frames in one read),
    and a future for each ``get`` only while it waits. Unbounded, first in, first out; a
    waiter woken and then cancelled passes its wake to the next one, as asyncio's does."""

    __slots__ = ("_head", "_items")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._items: list[T | None] = []
        self._head = 0

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        self._wake_one()

    def get_nowait(self) -> T:
        if self.empty():
            raise asyncio.QueueEmpty
        return self._take()

    async def get(self) -> T:
        while self.empty():
            waiter = self._enlisted()
            try:
                await waiter
            except BaseException:
                self._forget(waiter)
                if not self.empty() and not waiter.cancelled():
                    # Woken for an item, but leaving without it: the next waiter takes it.
                    self._wake_one()
                raise
        return self._take()

    def empty(self) -> bool:
        return self._head == len(self._items)

    def qsize(self) -> int:
        return len(self._items) - self._head

    def _take(self) -> T:
        items, head = self._items, self._head
        item = items[head]
        items[head] = None
        head += 1
        if head == len(items):
            items.clear()
            head = 0
        elif head >= COMPACT_AT and 2 * head >= len(items):
            del items[:head]
            head = 0
        self._head = head
        return item  # type: ignore[return-value]

    def _wake_one(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                break
        if not waiters:
            self._waiters = None


class Flag(_Waiting):
    """``asyncio.Event`` for a connection's flow control, without its deque: a future is
    made for each ``wait`` only while the flag is down."""

    __slots__ = ("_set",)

    def __init__(self, loop: asyncio.AbstractEventLoop, *, is_set: bool = False) -> None:
        super().__init__(loop)
        self._set = is_set

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = self._enlisted()
        try:
            await waiter
        finally:
            self._forget(waiter)
        return True


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol with an ``Inbox``, a ``Flag``, and the
    handshake's request and response let go once it is answered."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox(self.loop)  # type: ignore[assignment]
        self.writable = Flag(self.loop, is_set=True)  # type: ignore[assignment]

    def start_keepalive(self) -> None:
        # Called once, right after the handshake's accepting response is written: nothing
        # on a socket's message path is added for this.
        super().start_keepalive()
        self._let_go_of_the_handshake()

    def _let_go_of_the_handshake(self) -> None:
        # Read by uvicorn only while it answers the handshake (handle_connect, and send's
        # accept); the scope the app was given keeps its own copy of the headers. The
        # library's parser keeps the request as a local of its generator for as long as
        # the connection lasts, so its headers are emptied as well as let go.
        request = self.__dict__.get("request")
        if request is not None:
            request.headers.clear()
            self.request = None  # type: ignore[assignment]
            self.response = None  # type: ignore[assignment]
