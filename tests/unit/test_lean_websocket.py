"""``onedoor serve``'s websocket protocol (``queue_server/lean_websocket.py``): uvicorn's
sans-I/O protocol keeping less per open connection, and serving every socket as uvicorn's
own does — messages both ways, a refused handshake, a client that stops reading, closing."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
import websockets
from websockets.exceptions import InvalidStatus

from queue_server.lean_websocket import COMPACT_AT, Flag, Inbox, LeanWebSocketProtocol
from queue_server.serving import uvicorn_options
from tests.servers import port_of, served_in_process

STOCK = "websockets-sansio"
FLOOD = 160
"""Messages of ``FLOOD_SIZE`` sent to a client that does not read: 10 MiB, past what the
kernel's socket buffers (the server's send buffer grows to 4 MiB on Linux by default, the
client's receive buffer is kept small) and the transport's high-water mark hold, so the
sender waits."""
FLOOD_SIZE = 64 * 1024


# --- the two small parts, on their own ---------------------------------------------------


async def test_the_inbox_hands_items_out_in_order_and_waits_when_empty() -> None:
    inbox: Inbox[str] = Inbox(asyncio.get_running_loop())
    inbox.put_nowait("connect")
    inbox.put_nowait("hello")
    assert inbox.qsize() == 2 and not inbox.empty()
    assert [await inbox.get(), inbox.get_nowait()] == ["connect", "hello"]
    assert inbox.empty()
    with pytest.raises(asyncio.QueueEmpty):
        inbox.get_nowait()
    waiting = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    inbox.put_nowait("later")
    assert await waiting == "later"


async def test_an_inbox_waiter_cancelled_after_its_wake_passes_the_item_on() -> None:
    inbox: Inbox[str] = Inbox(asyncio.get_running_loop())
    first = asyncio.create_task(inbox.get())
    second = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait("one")  # wakes the first waiter...
    first.cancel()  # ...which is cancelled before it runs again
    assert await asyncio.wait_for(second, 10) == "one", "the item went to the next waiter"
    with pytest.raises(asyncio.CancelledError):
        await first
    third = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    third.cancel()  # cancelled while it waits, with nothing for it
    with pytest.raises(asyncio.CancelledError):
        await third
    inbox.put_nowait("two")
    assert await inbox.get() == "two"


async def test_an_inbox_with_a_long_backlog_keeps_order_and_does_not_grow() -> None:
    """A client's one read can queue tens of thousands of small frames; a reader that stays
    behind by a few items for ever does not make the inbox's list grow."""
    inbox: Inbox[int] = Inbox(asyncio.get_running_loop())
    for i in range(50_000):
        inbox.put_nowait(i)
    assert [inbox.get_nowait() for _ in range(50_000)] == list(range(50_000))
    assert inbox.empty() and inbox._items == []
    for i in range(3):
        inbox.put_nowait(i)
    for i in range(3, 20_000):
        inbox.put_nowait(i)
        assert await inbox.get() == i - 3
        assert len(inbox._items) <= 2 * COMPACT_AT + 3
    assert inbox.qsize() == 3


async def test_waiters_cancelled_leave_nothing_behind() -> None:
    loop = asyncio.get_running_loop()
    inbox: Inbox[str] = Inbox(loop)
    flag = Flag(loop)
    waits = [asyncio.create_task(inbox.get()), asyncio.create_task(flag.wait())]
    await asyncio.sleep(0)
    for wait in waits:
        wait.cancel()
    await asyncio.gather(*waits, return_exceptions=True)
    assert inbox._waiters is None and flag._waiters is None


async def test_the_flag_lets_waiters_through_only_while_it_is_up() -> None:
    flag = Flag(asyncio.get_running_loop(), is_set=True)
    assert flag.is_set() and await flag.wait()
    flag.clear()
    waiters = [asyncio.create_task(flag.wait()) for _ in range(3)]
    leaving = asyncio.create_task(flag.wait())
    await asyncio.sleep(0)
    assert not any(w.done() for w in [*waiters, leaving])
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    flag.set()
    assert await asyncio.gather(*waiters) == [True, True, True]


# --- served by uvicorn, beside uvicorn's own protocol ------------------------------------


class Hall:
    """A bare ASGI app: echoes a socket's messages; ``/refuse`` refuses the handshake;
    ``/flood`` first sends ``FLOOD`` large messages. Records how each socket ended."""

    def __init__(self) -> None:
        self.disconnects: list[int] = []
        self.ended = asyncio.Event()
        self.flooded = asyncio.Event()
        self.cut = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert (await receive())["type"] == "websocket.connect"
        if scope["path"] == "/refuse":
            await send({"type": "websocket.close"})
            return
        await send({"type": "websocket.accept", "headers": [(b"x-hall", b"7")]})
        if scope["path"] == "/flood":
            try:
                for i in range(FLOOD):
                    text = f"{i:04d}".ljust(FLOOD_SIZE, ".")
                    await send({"type": "websocket.send", "text": text})
            except OSError:  # uvicorn's ClientDisconnected: the client went mid-flood
                self.cut.set()
                raise
            self.flooded.set()
        while (message := await receive())["type"] != "websocket.disconnect":
            await send({"type": "websocket.send", "text": f"echo {message['text']}"})
        self.disconnects.append(message["code"])
        self.ended.set()


@contextlib.asynccontextmanager
async def served(protocol: Any, hall: Hall) -> AsyncIterator[tuple[int, uvicorn.Server]]:
    async with served_in_process(hall, ws=protocol, lifespan="on") as server:
        yield port_of(server), server


def sockets_of(server: uvicorn.Server) -> list[Any]:
    return [p for p in server.server_state.connections if hasattr(p, "conn")]


async def conversation(protocol: Any) -> dict[str, Any]:
    """What a client sees of one socket's life, and how the app saw it end."""
    hall = Hall()
    async with served(protocol, hall) as (port, _):
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(f"ws://127.0.0.1:{port}/refuse")
        async with websockets.connect(f"ws://127.0.0.1:{port}/echo") as board:
            header = board.response.headers["x-hall"]
            echoes = []
            for text in ("one", "两", "three " * 1000):
                await board.send(text)
                echoes.append(await asyncio.wait_for(board.recv(), 10))
            await board.ping()
        await asyncio.wait_for(hall.ended.wait(), 10)
    return {
        "refused": refused.value.response.status_code,
        "header": header,
        "echoes": echoes,
        "ended": hall.disconnects,
    }


async def test_a_socket_s_life_is_served_as_uvicorn_s_own_protocol_serves_it() -> None:
    ours = await conversation(LeanWebSocketProtocol)
    assert ours == await conversation(STOCK)
    assert ours["refused"] == 403 and ours["header"] == "7" and ours["ended"] == [1000]
    assert ours["echoes"][:2] == ["echo one", "echo 两"]


def small_receiver(port: int) -> socket.socket:
    """A client socket whose receive buffer does not grow (Linux lets it reach 32 MiB)."""
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    client.connect(("127.0.0.1", port))
    client.setblocking(False)
    return client


async def held_socket(server: uvicorn.Server) -> Any:
    """The server's socket whose sends wait for its client to read."""
    for _ in range(1000):
        held = [s for s in sockets_of(server) if not s.writable.is_set()]
        if held:
            return held[0]
        await asyncio.sleep(0.01)
    raise AssertionError("the server's sends never waited for the client")


async def test_a_client_that_stops_reading_holds_the_sender_until_it_reads_again() -> None:
    """The transport's flow control through the ``Flag``: the app's sends wait while a
    client reads nothing, and every message arrives, in order, once it reads again."""
    hall = Hall()
    async with (
        served(LeanWebSocketProtocol, hall) as (port, server),
        websockets.connect(
            f"ws://127.0.0.1:{port}/flood", sock=small_receiver(port), max_queue=1
        ) as board,
    ):
        protocol = await held_socket(server)
        assert not hall.flooded.is_set()
        received = [await asyncio.wait_for(board.recv(), 10) for _ in range(FLOOD)]
        await asyncio.wait_for(hall.flooded.wait(), 10)
        assert [m[:4] for m in received] == [f"{i:04d}" for i in range(FLOOD)]
        await board.send("still there")
        assert await asyncio.wait_for(board.recv(), 10) == "echo still there"
        assert protocol.writable._waiters is None, "no waiter is left behind"


async def test_a_client_that_goes_while_a_send_waits_ends_the_app_s_send() -> None:
    hall = Hall()
    async with served(LeanWebSocketProtocol, hall) as (port, server):
        board = await websockets.connect(
            f"ws://127.0.0.1:{port}/flood", sock=small_receiver(port), max_queue=1
        )
        protocol = await held_socket(server)
        board.transport.abort()  # the screen's cable pulled
        await asyncio.wait_for(hall.cut.wait(), 10)
        assert not hall.flooded.is_set()
        assert protocol.writable.is_set() and protocol.writable._waiters is None
        assert protocol.queue.get_nowait()["type"] == "websocket.disconnect"


async def test_once_open_a_socket_keeps_nothing_of_its_handshake() -> None:
    """The handshake's request and response are let go, and the headers of the request
    the websocket library's parser keeps for the socket's life are emptied."""
    hall = Hall()
    async with (
        served(LeanWebSocketProtocol, hall) as (port, server),
        websockets.connect(f"ws://127.0.0.1:{port}/echo") as board,
    ):
        await board.send("hi")
        assert await asyncio.wait_for(board.recv(), 10) == "echo hi"
        [protocol] = sockets_of(server)
        assert protocol.request is None and protocol.response is None
        kept = protocol.conn.parser.gi_frame.f_locals["request"]
        assert list(kept.headers.raw_items()) == []
        assert isinstance(protocol.queue, Inbox) and isinstance(protocol.writable, Flag)


def test_onedoor_serve_uses_it() -> None:
    assert uvicorn_options("info")["ws"] is LeanWebSocketProtocol
