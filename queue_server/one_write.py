"""uvicorn's HTTP protocol, with what one turn of the event loop writes to a connection sent
in one system call.

uvicorn writes an answer's status line and headers as soon as the app sends
``http.response.start``, then its body at ``http.response.body``: two ``send()`` calls, and
two TCP segments, for every answer, however small. An answer made in memory (a board's
snapshot, a kiosk's ticket) sends both messages in the same turn of the loop, so here the
connection's writes wait for the end of that turn (``loop.call_soon``) and go out
together. Nothing waits longer than the turn: a write that is alone goes out at its end,
closing the connection sends what is pending first, a transport already closing (a client
that half-closed after its request) is written to at once as uvicorn would, and writes
past ``FLUSH_AT`` bytes in one turn go out at once, so that the transport's flow control
(``pause_writing``, which uvicorn checks before each write) sees them as before. A
connection upgraded to a websocket writes to the socket's own transport again: its frames
go one at a time.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["OneWriteHttpToolsProtocol", "OneWriteTransport"]


FLUSH_AT = 64 * 1024
"""Pending bytes that go out at once rather than at the turn's end (asyncio's default
high-water mark of a transport's buffer)."""


class OneWriteTransport:
    """``transport`` whose writes within one turn of ``loop`` go out as one. Everything else
    is the transport's own."""

    __slots__ = ("_loop", "_lost", "_pending", "_size", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None
        self._size = 0
        self._lost = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pending = self._pending
        if pending is None:
            if self._transport.is_closing():
                # Closed by the loop (the client's EOF) or by uvicorn: write now, as
                # uvicorn does; the transport sends what it still can.
                self._transport.write(data)
                return
            self._pending = [bytes(data)]
            self._size = len(data)
            self._loop.call_soon(self.flush)
        else:
            pending.append(bytes(data))
            self._size += len(data)
        if self._size >= FLUSH_AT:
            self.flush()

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        """Send what is pending now (the turn's end calls it too; then nothing is)."""
        pending, self._pending = self._pending, None
        self._size = 0
        if pending and not self._lost:
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    @property
    def raw(self) -> asyncio.Transport:
        """The socket's own transport."""
        return self._transport

    def lost(self) -> None:
        """The connection is gone: what is pending goes nowhere."""
        self._lost = True
        self._pending = None

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._size

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through ``OneWriteTransport``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = OneWriteTransport(transport, self.loop)  # type: ignore[assignment]

    def handle_websocket_upgrade(self) -> None:
        # A websocket's frames go one at a time (a board's message to each of thousands of
        # sockets): nothing to join, so its protocol writes to the socket's own transport.
        if isinstance(self.transport, OneWriteTransport):
            self.transport.flush()
            self.transport = self.transport.raw
        super().handle_websocket_upgrade()

    def eof_received(self) -> None:
        # The loop closes the transport itself after this (uvicorn keeps nothing open on a
        # client's EOF): what is pending goes first.
        if isinstance(self.transport, OneWriteTransport):
            self.transport.flush()
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if isinstance(self.transport, OneWriteTransport):
            self.transport.lost()
        super().connection_lost(exc)
