"""uvicorn's HTTP protocol, with what one turn of the event loop writes to a connection sent
in one system call.

uvicorn writes an answer's status line and headers as soon as the app sends
``http.response.start``, then its body at ``http.response.body``: two ``send()`` calls, and
two TCP segments, for every answer, however small. An answer made in memory (a board's
snapshot, a kiosk's ticket) sends both messages in the same turn of the loop, so here the
connection's writes wait for the end of that turn (``loop.call_soon``) and go out
together. Nothing waits longer than the turn: a write that is alone goes out at its end,
and closing the connection sends what is pending first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["OneWriteHttpToolsProtocol", "OneWriteTransport"]


class OneWriteTransport:
    """``transport`` whose writes within one turn of ``loop`` go out as one. Everything else
    is the transport's own (flow control included: the transport still tells the protocol
    when its buffer is full, and the writes joined here are never more than one turn's)."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pending = self._pending
        if pending is None:
            self._pending = [bytes(data)]
            self._loop.call_soon(self._flush)
        else:
            pending.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        pending = self._pending
        waiting = sum(len(data) for data in pending) if pending else 0
        return self._transport.get_write_buffer_size() + waiting

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through ``OneWriteTransport``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = OneWriteTransport(transport, self.loop)  # type: ignore[assignment]
