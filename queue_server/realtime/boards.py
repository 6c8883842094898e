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
  that is not a plain number, a ``Host`` that is not a plain host and port, a root path, a
  hub that could not start — goes on to the route, which answers as it always has (a
  refusal with the very answer ``authorize`` gave here).
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
from queue_server.api.auth import ACCESS_KEYS, REFUSED_BEFORE_ROUTING, authorize, bearer_token
from queue_server.service import audit

from .access import CLOSE_REASONS, RECHECK_SECONDS, AccessWatch, checked_again
from .hub import PING_SECONDS, HallHub, Hubs, Mailbox, ping_message

log = logging.getLogger("onedoor.realtime")
MAILBOX = 64
BOARD_ROUTE_NAME = "board-feed"
HALL_PARAMETER = "{hall_id:int}"
SINCE = re.compile(r"[0-9]{1,18}")
PLAIN_HOST = re.compile(rb"[0-9A-Za-z.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
"""A host name or address and a port: any other ``Host`` is for the router to judge."""


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
    ``since``), then every event, a ping when nothing was sent for ``PING_SECONDS`` — until
    its screen goes or its access ends (closed with 4401 or 4403, as ``hold_access`` does).

    One task reads what the screen sends; this loop does the rest: it wakes for a message,
    for the reader finishing, for the access watch, or when a ping or a check is due, and
    checks the access again when told to and every ``RECHECK_SECONDS`` (busy or quiet:
    processes sharing PostgreSQL without Redis hear of no change and rely on that)."""
    listener = BoardListener()
    box = listener.mailbox
    keys: frozenset[str] | None = connection.scope["state"].get(ACCESS_KEYS)
    watch: AccessWatch | None = getattr(connection.app.state, "access_watch", None)
    if not keys:
        watch = None  # a public feed: nothing to watch
    reader = asyncio.ensure_future(_read_until_closed(receive))
    try:
        reader.add_done_callback(listener.reader_done)
        hub.attach(listener, since)
        if watch is not None and keys:
            watch.register(keys, listener)
        now = time.monotonic()
        ping_at, recheck_at = now + PING_SECONDS, now + RECHECK_SECONDS
        while not reader.done():
            # The watch's news may have come while this loop was sending: it is not lost.
            told = listener.recheck and watch is not None
            due = (min(ping_at, recheck_at) if watch is not None else ping_at) - time.monotonic()
            if not told and due > 0:
                # asyncio.timeout, unlike wait_for, makes no task per wait: thousands of
                # boards each wake for every call.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(due):
                        await box.wait()
            now = time.monotonic()
            if watch is not None and keys and (listener.recheck or now >= recheck_at):
                listener.recheck = False
                recheck_at = now + RECHECK_SECONDS
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
            messages = box.take()
            if not messages and now >= ping_at:
                messages = [ping_message(hub.seq)]
            if messages:
                ping_at = now + PING_SECONDS
            for message in messages:
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


def _device_board(scope: Scope, path: re.Pattern[str]) -> tuple[int, int | None] | None:
    """The hall and ``since`` of a board socket opened by a device as hall screens open
    them (at ``path``, a token, no cookie, a plain host and ``since`` if any, no root
    path); None for anything else."""
    found = path.fullmatch(scope["path"])
    if found is None or scope.get("root_path"):
        return None
    for name, value in scope["headers"]:
        if name == b"cookie" or (name == b"host" and PLAIN_HOST.fullmatch(value) is None):
            return None
    query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    since = [value for name, value in query if name == "since"]
    if len(since) > 1 or (since and SINCE.fullmatch(since[0]) is None):
        return None
    if bearer_token(scope) is None and not any(name == "token" for name, _ in query):
        return None
    return int(found[1]), int(since[0]) if since else None


class _BesideTheStack:
    """The ASGI handler ``serve_boards_beside_the_stack`` puts in front of Litestar's."""

    def __init__(self, app: Litestar, stack: ASGIApp) -> None:
        index = app.get_handler_index_by_name(BOARD_ROUTE_NAME)
        if index is None or not isinstance(index["handler"], WebsocketRouteHandler):
            raise RuntimeError(f"no websocket route named {BOARD_ROUTE_NAME!r} to serve boards")
        route = index["paths"][0]
        if route.count(HALL_PARAMETER) != 1:
            raise RuntimeError(f"the board route {route!r} names its hall other than as expected")
        self.app, self.stack, self.handler = app, stack, index["handler"]
        before, after = route.split(HALL_PARAMETER)
        self.path = re.compile(f"{re.escape(before)}([0-9]{{1,18}}){re.escape(after)}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.WEBSOCKET and await self._served(scope, receive, send):
            return
        await self.stack(scope, receive, send)

    async def _served(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Serve a device's board socket; False (having sent nothing) where the board route
        should answer instead."""
        opened = _device_board(scope, self.path)
        if opened is None:
            return False
        hall_id, since = opened
        scope["path_params"] = {"hall_id": hall_id}  # type: ignore[dict-item]  # parsed, as the router's
        scope["route_handler"] = self.handler
        connection: ASGIConnection[Any, Any, Any, Any] = ASGIConnection(scope, receive, send)
        named = audit.begin_request()
        try:
            try:
                await authorize(connection, self.handler)
            except Exception as refused:
                # The route refuses it as it always has, with this very answer: a forged
                # token reconnecting over and over is looked up once an attempt.
                scope["state"][REFUSED_BEFORE_ROUTING] = refused
                return False
            hubs: Hubs = self.app.state.hubs
            try:
                hub = await hubs.acquire(hall_id)
            except Exception:
                return False  # the route tries again, and says what went wrong its way
            feeds = self.app.state.metrics.feeds
            feeds.inc()
            try:
                if (await receive())["type"] == "websocket.connect":
                    accept: WebSocketAcceptEvent = {
                        "type": "websocket.accept", "subprotocol": None, "headers": []
                    }  # fmt: skip
                    await send(accept)
                    await serve_board(connection, receive, send, hub, since)
            finally:
                feeds.dec()
                await hubs.release(hall_id)
            return True
        finally:
            audit.end_request(named)


def serve_boards_beside_the_stack(app: Litestar) -> None:
    """Have ``app`` serve device board sockets itself, ahead of its router and middleware
    (see the module's docstring); every other request and socket goes through as before.

    It takes the place of ``app.asgi_handler``, what Litestar's ``__call__`` hands every
    request and socket to once it has put itself in the scope; Litestar builds it once,
    when the app is made. The board route is found by its name, its path read from it."""
    app.asgi_handler = _BesideTheStack(app, app.asgi_handler)
