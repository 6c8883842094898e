"""``onedoor serve``'s HTTP protocol sends what one turn of the event loop writes to a
connection in one system call (``queue_server/one_write.py``): an answer's headers and body
together, nothing held past the turn, nothing lost at close, and every answer byte for byte
what uvicorn's own protocol sends."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets

from queue_server.one_write import FLUSH_AT, OneWriteHttpToolsProtocol, OneWriteTransport
from queue_server.serving import uvicorn_options
from tests.servers import port_of, served_in_process


class Recording(asyncio.Transport):
    """Stands in for the socket's transport, recording each write the adapter makes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0


async def test_writes_of_one_turn_leave_together_at_its_end() -> None:
    inner = Recording()
    transport = OneWriteTransport(inner, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(memoryview(b"ok"))
    assert inner.writes == [] and transport.get_write_buffer_size() == 40
    await asyncio.sleep(0)
    assert inner.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]
    transport.write(b"alone")  # a write with nothing beside it still goes, at the turn's end
    await asyncio.sleep(0)
    assert inner.writes[1:] == [b"alone"]
    transport.write(b"last words")
    transport.close()  # what is pending goes out before the close
    assert inner.writes[2:] == [b"last words"] and inner.closed
    await asyncio.sleep(0)
    assert len(inner.writes) == 3, "nothing is written twice, nor after the close"


async def test_a_pending_write_reaches_a_closing_transport_but_not_a_lost_one() -> None:
    """The loop may start closing the transport within the turn (the client's EOF): what
    was written before still goes to it, as uvicorn would have sent it at once. Once the
    connection is lost, what is pending goes nowhere."""
    inner = Recording()
    transport = OneWriteTransport(inner, asyncio.get_running_loop())
    transport.write(b"the answer")
    inner.close()
    await asyncio.sleep(0)
    assert inner.writes == [b"the answer"]
    inner = Recording()
    transport = OneWriteTransport(inner, asyncio.get_running_loop())
    transport.write(b"to a client that is gone")
    transport.lost()
    await asyncio.sleep(0)
    assert inner.writes == []


async def test_a_turn_writing_much_sends_at_once_for_flow_control() -> None:
    """Past ``FLUSH_AT`` bytes in one turn the writes go out at once, so that the
    transport's flow control, which uvicorn checks before each write, sees them."""
    inner = Recording()
    transport = OneWriteTransport(inner, asyncio.get_running_loop())
    part = b"x" * (FLUSH_AT // 2 + 1)
    transport.write(part)
    assert inner.writes == []
    transport.write(part)
    assert inner.writes == [part + part], "sent within the turn"
    transport.write(b"tail")
    await asyncio.sleep(0)
    assert inner.writes[1:] == [b"tail"]


async def test_a_transport_closing_already_is_written_at_once() -> None:
    """The loop closes a transport itself when the client half-closes after its request
    (EOF); uvicorn writes the answer to it all the same, and so does this."""
    inner = Recording()
    transport = OneWriteTransport(inner, asyncio.get_running_loop())
    inner.closed = True
    transport.write(b"the answer")
    assert inner.writes == [b"the answer"], "handed straight to the transport, as uvicorn does"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI app: an answer in memory, an empty one, and one streamed in chunks."""
    if scope["type"] == "lifespan":
        while True:
            kind = (await receive())["type"]
            await send({"type": kind + ".complete"})  # lifespan.startup.complete, ...
            if kind == "lifespan.shutdown":
                return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        message = await receive()
        await send({"type": "websocket.send", "text": "echo " + message["text"]})
        await send({"type": "websocket.close", "code": 1000})
        return
    path = scope["path"]
    if path == "/empty":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one,", b"two,", b"three"):
            await asyncio.sleep(0)  # another turn of the loop for each chunk
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        body = f"hello {path}".encode()
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def served(protocol: Any) -> AsyncIterator[int]:
    async with served_in_process(app, http=protocol, lifespan="on") as server:
        yield port_of(server)


REQUESTS = (
    b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n"
    b"HEAD /small HTTP/1.1\r\nHost: t\r\n\r\n"
    b"GET /empty HTTP/1.1\r\nHost: t\r\n\r\n"
    b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n"
    b"GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
)


def exchange(port: int) -> bytes:
    """``REQUESTS`` on one keep-alive connection, sent at once; all the server answered,
    up to its close (after the last, which asked for it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(REQUESTS)
        answers = b""
        while chunk := client.recv(65536):
            answers += chunk
        return answers


def without_dates(answers: bytes) -> bytes:
    return b"\r\n".join(
        line for line in answers.split(b"\r\n") if not line.lower().startswith(b"date:")
    )


async def test_the_protocol_answers_byte_for_byte_as_uvicorn_s_own() -> None:
    """Pipelined keep-alive requests (a small answer, HEAD, 204, a chunked stream, and a
    close) answered in order, exactly as uvicorn's httptools protocol answers them."""
    async with served(OneWriteHttpToolsProtocol) as port:
        ours = await asyncio.to_thread(exchange, port)
    async with served("httptools") as port:
        theirs = await asyncio.to_thread(exchange, port)
    assert without_dates(ours) == without_dates(theirs)
    assert ours.count(b"HTTP/1.1 ") == 5
    assert b"hello /small" in ours and b"hello /last" in ours
    assert b"4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n" in ours
    assert b"connection: close" in ours


def half_closed_exchange(port: int) -> bytes:
    """One request, then the client's end shut for writing (``nc -N``, some health
    checks); what came back."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n")
        client.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
        return answer


async def test_a_client_that_half_closes_after_its_request_gets_its_answer() -> None:
    async with served(OneWriteHttpToolsProtocol) as port:
        for _ in range(20):
            answer = await asyncio.to_thread(half_closed_exchange, port)
            assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"hello /small")


async def test_a_websocket_upgraded_from_it_writes_to_the_socket_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After the upgrade a websocket's frames go one at a time, straight to the socket's
    transport: a board's message to each of thousands of sockets is not held a turn."""
    upgraded: list[Any] = []
    original = OneWriteHttpToolsProtocol.handle_websocket_upgrade

    def watching(protocol: OneWriteHttpToolsProtocol) -> None:
        original(protocol)
        upgraded.append(protocol.transport)

    monkeypatch.setattr(OneWriteHttpToolsProtocol, "handle_websocket_upgrade", watching)
    async with (
        served(OneWriteHttpToolsProtocol) as port,
        websockets.connect(f"ws://127.0.0.1:{port}/ws") as board,
    ):
        await board.send("hello")
        assert await board.recv() == "echo hello"
    assert len(upgraded) == 1 and not isinstance(upgraded[0], OneWriteTransport)


def test_onedoor_serve_uses_it() -> None:
    assert uvicorn_options("info")["http"] is OneWriteHttpToolsProtocol
