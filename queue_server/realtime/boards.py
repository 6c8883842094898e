"""Board sockets: each hall screen is sent the hub's ready-made messages, and held as
cheaply as an open socket can be.

Boards are a process's most numerous sockets (issue 12 sizes them at 5,000 a process).
Held open through Litestar's route, each kept about 16 KiB more than the bare server's own
20: the router's, middleware's and handler's frames and the connection objects for the
socket's whole life, and four tasks (the handler, its sender, its reader and its access
watch). Now a board is served by one loop (``serve_board``) and one reader task, whichever
way it came in:

- A board *device* — a token and no cookie, as every hall screen connects — is served
  beside Litestar's stack (``serve_boards_beside_the_stack``): authorised by the same
  ``authorize`` with the board route's own handler, fed by the same hub, told the same
  messages and closed with the same codes, with none of the stack held while it is open.
  Whatever it would not serve exactly as the route would — no token, a refusal, a ``since``
  that is not a plain number, a hub that could not start — goes on to the route, which
  answers as it always has.
- Anyone else (staff signed in with a cookie, watching a board from a desk) comes through
  the route (``feeds.board_feed``), which hands its accepted socket to the same loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from litestar import Litestar
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import WebSocketDisconnect
from litestar.handlers import WebsocketRouteHandler
from litestar.routes import WebSocketRoute
from litestar.types import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    WebSocketAcceptEvent,
    WebSocketCloseEvent,
    WebSocketSendEvent,
)

from display.board import BoardView
from queue_server.api.auth import ACCESS_KEYS, authorize, bearer_token
from queue_server.service import audit

from .access import CLOSE_REASONS, RECHECK_SECONDS, AccessWatch, checked_again
from .hub import PING_SECONDS, HallHub, Hubs, Mailbox, ping_message

log = logging.getLogger("onedoor.realtime")
MAILBOX = 64
BOARD_ROUTE = "/ws/halls/{hall_id:int}/board"
BOARD_PATH = re.compile(r"/ws/halls/([0-9]{1,18})/board")
SINCE = re.compile(r"[0-9]{1,18}")


class BoardListener:
    """Queues the hub's ready-made messages for one board, and is what the access watch
    wakes when the board's access may have changed."""

    __slots__ = ("mailbox", "recheck")

    def __init__(self) -> None:
        self.mailbox = Mailbox(MAILBOX)
        self.recheck = False

    def snapshot(self, board: BoardView, message: bytes) -> None:
        self.mailbox.replace(message)

    def event(self, seq: int, name: str, data: Mapping[str, Any], message: bytes) -> None:
        self.mailbox.put(message)

    def set(self) -> None:
        """``AccessWatch``: what this board's access was read from changed; check it before
        sending anything more."""
        self.recheck = True
        self.mailbox.wake()

    def reader_done(self, _reader: asyncio.Future[None]) -> None:
        self.mailbox.wake()


async def _read_until_closed(receive: Receive) -> None:
    """Read (and ignore) what the screen sends, until it goes away."""
    with contextlib.suppress(WebSocketDisconnect):
        while (await receive())["type"] != "websocket.disconnect":
            pass


async def _send_text(send: Send, message: bytes) -> None:
    # Text frames, as the route's send_data(..., mode="text") sent them: pages read strings.
    text: WebSocketSendEvent = {"type": "websocket.send", "bytes": None, "text": message.decode()}
    await send(text)


async def serve_board(
    connection: ASGIConnection[Any, Any, Any, Any],
    receive: Receive,
    send: Send,
    hub: HallHub,
    since: int | None,
) -> None:
    """Send the hall's board to one accepted socket — a snapshot (or the events after
    ``since``), then every event, a ping when nothing happened for ``PING_SECONDS`` — until
    its screen goes or its access ends (closed with 4401 or 4403, as ``hold_access`` does).

    One task reads what the screen sends; this loop does the rest: it wakes for a message,
    for the reader finishing, or for the access watch, and checks the access again when
    told to and at least every ``RECHECK_SECONDS`` (busy or quiet: processes sharing
    PostgreSQL without Redis hear of no change and rely on that)."""
    listener = BoardListener()
    box = listener.mailbox
    watch: AccessWatch | None = getattr(connection.app.state, "access_watch", None)
    keys: frozenset[str] | None = connection.scope["state"].get(ACCESS_KEYS)
    reader = asyncio.ensure_future(_read_until_closed(receive))
    reader.add_done_callback(listener.reader_done)
    hub.attach(listener, since)
    if watch is not None and keys:
        watch.register(keys, listener)
    recheck_at = time.monotonic() + RECHECK_SECONDS
    try:
        while not reader.done():
            try:
                # asyncio.timeout, unlike wait_for, makes no task per message: thousands of
                # boards each wake for every call.
                async with asyncio.timeout(PING_SECONDS):
                    await box.wait()
            except TimeoutError:
                await _send_text(send, ping_message(hub.seq))
            if watch is not None and keys and (listener.recheck or time.monotonic() >= recheck_at):
                listener.recheck = False
                recheck_at = time.monotonic() + RECHECK_SECONDS
                code, keys = await checked_again(connection, watch, keys, listener)
                if code is not None:
                    close: WebSocketCloseEvent = {
                        "type": "websocket.close", "code": code, "reason": CLOSE_REASONS[code]
                    }  # fmt: skip
                    await send(close)
                    return
            if box.overflowed and hub.board is not None:
                # This screen fell behind: a snapshot replaces what it missed.
                box.replace(hub.snapshot_now())
            for message in box.take():
                await _send_text(send, message)
    except (OSError, WebSocketDisconnect):
        pass  # the screen went while a message was on its way
    except Exception as exc:
        log.warning("board feed ended with %r", exc)
    finally:
        hub.detach(listener)
        if watch is not None and keys:
            watch.unregister(keys, listener)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


def _device_board(scope: Scope) -> tuple[int, int | None] | None:
    """The hall and ``since`` of a board socket opened by a device as hall screens open
    them (a token, no cookie, a plain ``since`` if any); None for anything else."""
    found = BOARD_PATH.fullmatch(scope["path"])
    if found is None or any(name == b"cookie" for name, _ in scope["headers"]):
        return None
    query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    since = [value for name, value in query if name == "since"]
    if len(since) > 1 or (since and SINCE.fullmatch(since[0]) is None):
        return None
    if bearer_token(scope) is None and not any(name == "token" for name, _ in query):
        return None
    return int(found[1]), int(since[0]) if since else None


async def _serve_device_board(
    app: Litestar, handler: WebsocketRouteHandler, scope: Scope, receive: Receive, send: Send
) -> bool:
    """Serve a device's board socket beside the stack; False (having sent nothing) where
    the board route should answer instead."""
    opened = _device_board(scope)
    if opened is None:
        return False
    hall_id, since = opened
    scope["path_params"] = {"hall_id": hall_id}  # type: ignore[dict-item]  # parsed, as the router's
    scope["route_handler"] = handler
    connection: ASGIConnection[Any, Any, Any, Any] = ASGIConnection(scope, receive, send)
    named = audit.begin_request()
    try:
        try:
            await authorize(connection, handler)
        except Exception:  # refused, or could not tell: the route answers as it always has
            return False
        hubs: Hubs = app.state.hubs
        try:
            hub = await hubs.acquire(hall_id)
        except Exception:
            return False
        app.state.metrics.feeds.inc()
        try:
            if (await receive())["type"] == "websocket.connect":
                accept: WebSocketAcceptEvent = {
                    "type": "websocket.accept", "subprotocol": None, "headers": []
                }  # fmt: skip
                await send(accept)
                await serve_board(connection, receive, send, hub, since)
        finally:
            app.state.metrics.feeds.dec()
            await hubs.release(hall_id)
        return True
    finally:
        audit.end_request(named)


def serve_boards_beside_the_stack(app: Litestar) -> None:
    """Have ``app`` serve device board sockets itself, ahead of its router and middleware
    (see the module's docstring); every other request and socket goes through as before."""
    handler = next(route.route_handler for route in app.routes
                   if isinstance(route, WebSocketRoute) and route.path == BOARD_ROUTE)  # fmt: skip
    stack: ASGIApp = app.asgi_handler

    async def boards_first(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.WEBSOCKET and await _serve_device_board(
            app, handler, scope, receive, send
        ):
            return
        await stack(scope, receive, send)

    app.asgi_handler = boards_first
