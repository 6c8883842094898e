"""Open websockets lose their access when the caller does.

A feed is authorised once, when its socket opens. What it was authorised from — the
session and its user, or the device token — are principal cache keys (``ACCESS_KEYS`` in
the connection's state); realtime.invalidation forgets those keys in every process the
moment their rows change. ``AccessWatch`` hears the same news and wakes the sockets
holding those keys; each checks its access again as a new request would, and closes with
4401 (signed out, revoked, deactivated) or 4403 (no longer allowed here) if it is gone.
So signing out everywhere, a password reset, a deactivation or a device's revocation ends
its live feeds at once, in whichever process they are.

Processes that cannot hear every change (PostgreSQL shared without Redis) keep no caches
and get no news: there each socket checks again every ``RECHECK_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol, TypeVar

from litestar import WebSocket
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException

from queue_server.api.auth import ACCESS_KEYS, PRINCIPAL_KEY, authorize
from queue_server.service.accounts import EVERYONE

log = logging.getLogger("onedoor.realtime")
RECHECK_SECONDS = 60.0
"""How often an open socket checks its access again without news of a change."""
CLOSED_SIGNED_OUT = 4401
CLOSED_NOT_ALLOWED = 4403
CLOSE_REASONS = {
    CLOSED_SIGNED_OUT: "signed out or access revoked",
    CLOSED_NOT_ALLOWED: "no longer allowed here",
}


class Wakeable(Protocol):
    """What a socket registers to be told of a change: an ``asyncio.Event``, or a board's
    listener (which wakes its one task instead of keeping an event and a task of its own)."""

    def set(self) -> None: ...


W = TypeVar("W", bound=Wakeable)


class AccessWatch:
    """The open sockets of this process by the keys their access was read from."""

    def __init__(self) -> None:
        self._sockets: dict[str, set[Wakeable]] = {}

    def forget(self, keys: frozenset[str]) -> None:
        """Wake the sockets whose access was read from any of ``keys``."""
        if EVERYONE in keys:
            woken = {e for events in self._sockets.values() for e in events}
        else:
            woken = {e for k in keys for e in self._sockets.get(k, ())}
        for changed in woken:
            changed.set()

    def register(self, keys: frozenset[str], changed: W) -> W:
        """Wake ``changed`` when one of ``keys`` changes."""
        for key in keys:
            self._sockets.setdefault(key, set()).add(changed)
        return changed

    def unregister(self, keys: frozenset[str], changed: Wakeable) -> None:
        for key in keys:
            events = self._sockets.get(key)
            if events is not None:
                events.discard(changed)
                if not events:
                    del self._sockets[key]

    def __len__(self) -> int:
        return len({e for events in self._sockets.values() for e in events})


async def _allowed(connection: ASGIConnection[Any, Any, Any, Any]) -> int | None:
    """None while the socket's caller may still use it; else the close code."""
    state = connection.scope.setdefault("state", {})
    state.pop(PRINCIPAL_KEY, None)
    state.pop(ACCESS_KEYS, None)
    try:
        await authorize(connection, connection.scope["route_handler"])
    except NotAuthorizedException:
        return CLOSED_SIGNED_OUT
    except PermissionDeniedException:
        return CLOSED_NOT_ALLOWED
    except Exception as exc:  # the database away a moment: not a reason to drop a board
        log.warning("could not check a feed's access again (%r); it stays open", exc)
    return None


async def checked_again(
    connection: ASGIConnection[Any, Any, Any, Any],
    watch: AccessWatch,
    keys: frozenset[str],
    changed: Wakeable,
) -> tuple[int | None, frozenset[str]]:
    """Check an open socket's access as a new request would: the close code if it has
    ended (else None), and the keys it now rests on, ``changed`` registered under them."""
    code = await _allowed(connection)
    fresh: frozenset[str] | None = connection.scope["state"].get(ACCESS_KEYS)
    if code is None and fresh and fresh != keys:
        watch.unregister(keys, changed)
        keys = fresh
        watch.register(keys, changed)
    return code, keys


async def hold_access(socket: WebSocket[Any, Any, Any]) -> None:
    """Return once the socket's access has ended, having closed it; never, while it lasts
    (or for a public feed)."""
    keys: frozenset[str] | None = socket.scope.get("state", {}).get(ACCESS_KEYS)
    watch: AccessWatch | None = getattr(socket.app.state, "access_watch", None)
    if not keys or watch is None:
        await asyncio.Event().wait()
        return
    changed = watch.register(keys, asyncio.Event())
    try:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RECHECK_SECONDS):
                    await changed.wait()
            changed.clear()
            code, keys = await checked_again(socket, watch, keys, changed)
            if code is not None:
                with contextlib.suppress(Exception):
                    await socket.close(code=code, reason=CLOSE_REASONS[code])
                return
    finally:
        watch.unregister(keys, changed)
