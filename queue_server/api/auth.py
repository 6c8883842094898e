"""Who is calling, and may they: session cookies for staff, bearer tokens for devices.

Every route passes through ``authorize`` (the ``authorization`` middleware). A route is
public only when its ``opt`` says ``public=True``; otherwise it lists the roles it admits
in ``opt["roles"]`` and everyone else is refused: 401 when not signed in, 403 when signed
in with another role or for another hall. Cookie-authenticated writes also need the
``X-CSRF-Token`` header.

Who the caller is comes from the process's ``PrincipalCache`` when it has them: a device
by its token's SHA-256, a staff member by id. The cache forgets a principal in every
process as soon as a change to its row commits (realtime.invalidation), so a revoked
device or a deactivated user is refused on the next request, wherever it lands.
"""

from __future__ import annotations

import copy
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.base import DefineMiddleware
from litestar.middleware.session.client_side import ClientSideSessionBackend, CookieBackendConfig
from litestar.types import ASGIApp, Message, Receive, Scope, ScopeSession, Send

from queue_server.service import accounts, audit, hall_config, sessions
from queue_server.service.accounts import Principal, PrincipalCache
from queue_server.service.bus import Bus
from queue_server.service.unit_of_work import UnitOfWork

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"

ADMIN = ("admin",)
MANAGERS = ("admin", "manager")
STAFF = ("admin", "manager", "clerk")
ISSUERS = ("kiosk", "admin", "manager", "clerk")
HALL_VIEWERS = ("board", "kiosk", "printer", "admin", "manager", "clerk")


def roles(*allowed: str) -> dict[str, Any]:
    """Route ``opt`` admitting ``allowed`` roles."""
    return {"roles": frozenset(allowed)}


PUBLIC: dict[str, Any] = {"public": True}
PRINCIPAL_KEY = "onedoor_principal"
ACCESS_KEYS = "onedoor_access_keys"
"""The principal cache keys the caller's access was read from (its session and user, or its
device): an open websocket is checked again when one of them changes."""
REFUSED_BEFORE_ROUTING = "onedoor_refused_before_routing"
"""Where ``authorize``'s refusal of a board device's socket, met before the router
(``realtime/boards.py``), waits for the board route to give it as its own answer."""
PRINCIPALS_STATE = "principals"
"""Where the app keeps its PrincipalCache (``app.state``); absent: every request reads."""


async def current_principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    """The caller, from a bearer device token or the session cookie (cached per request)."""
    state = connection.scope.setdefault("state", {})
    if PRINCIPAL_KEY in state:
        return state[PRINCIPAL_KEY]  # type: ignore[no-any-return]
    bus: Bus = connection.app.state.bus
    principal: Principal | None = None
    token = bearer_token(connection.scope)
    if token is None and _may_carry_token_in_url(connection):
        token = connection.query_params.get("token")
    cache: PrincipalCache | None = getattr(connection.app.state, PRINCIPALS_STATE, None)
    if token:
        device = accounts.token_digest(token)
        key = accounts.device_key(device)
        principal = await _cached(cache, key, bus, accounts.device_principal_by_digest, device)
        if principal is None:
            raise NotAuthorizedException(
                "this device token is unknown or revoked; ask a manager for a new one"
            )
        state[ACCESS_KEYS] = frozenset({key})
    elif (signed_in := session_digest(connection)) is not None:
        # The session's row says whose it is (and that it stands); the user's own entry
        # says who they are now. Each is forgotten everywhere when its row changes.
        key = sessions.session_key(signed_in)
        owner = await _cached(cache, key, bus, sessions.session_owner, signed_in)
        if owner is not None and owner.user_id is not None:
            uid = owner.user_id
            user = accounts.user_key(uid)
            principal = await _cached(cache, user, bus, accounts.user_principal, uid)
            state[ACCESS_KEYS] = frozenset({key, user})
    state[PRINCIPAL_KEY] = principal
    return principal


def session_digest(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The SHA-256 of the session token the request's cookie carries, if any."""
    if "session" not in connection.scope:
        return None
    token = connection.session.get("sid")
    return accounts.token_digest(token) if isinstance(token, str) and token else None


async def _cached(
    cache: PrincipalCache | None,
    key: str,
    bus: Bus,
    read: Callable[[UnitOfWork, Any], Awaitable[Principal | None]],
    arg: Any,
) -> Principal | None:
    """The principal under ``key`` from the process's cache, else read (and kept)."""
    if cache is None:
        return await bus.run(read, arg)
    principal = cache.get(key)
    if principal is None:
        generation = cache.generation
        principal = await bus.run(read, arg)
        if principal is not None:
            cache.put(key, principal, generation)
    return principal


COUNTER_HALLS = "onedoor_counter_halls"
"""Where the app keeps which hall each counter it has seen belongs to."""
COUNTER_HALLS_KEPT = 100_000


async def _counter_hall(
    connection: ASGIConnection[Any, Any, Any, Any], counter_id: int
) -> int | None:
    """The hall of counter ``counter_id`` (None: no such counter). A counter never moves to
    another hall and is never deleted, so what was read once is kept for the app's life:
    a clerk's every call costs no transaction for this check."""
    state = connection.app.state
    known: dict[int, int] | None = getattr(state, COUNTER_HALLS, None)
    if known is None:
        known = {}
        setattr(state, COUNTER_HALLS, known)
    hall_id = known.get(counter_id)
    if hall_id is None:
        bus: Bus = state.bus
        hall_id = await bus.run(hall_config.counter_hall_id, counter_id)
        if hall_id is not None:
            if len(known) >= COUNTER_HALLS_KEPT:
                known.clear()
            known[counter_id] = hall_id
    return hall_id


def bearer_token(scope: Scope) -> str | None:
    """The token of the request's ``Authorization: Bearer`` header, read from the raw ASGI
    headers (building Litestar's header map was a twentieth of a board read's CPU)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            header = value.decode("latin-1")
            return header[7:].strip() if header[:7].lower() == "bearer " else None
    return None


def _may_carry_token_in_url(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """Browsers cannot set headers on a websocket or on a board page's URL: there, a device
    token may come as ``?token=``. Writes always need the header."""
    scope = connection.scope
    return scope["type"] == ScopeType.WEBSOCKET or scope.get("method") in SAFE_METHODS


def _check_same_origin(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """A cookie-authenticated websocket must come from our own pages (no CSRF header there)."""
    origin = connection.headers.get("origin")
    if origin is None:
        return  # not a browser
    host = connection.headers.get("host", "")
    if origin.split("://", 1)[-1] != host:
        raise PermissionDeniedException(f"websocket from another site ({origin}) refused")


def _check_csrf(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    expected = str(connection.session.get("csrf", ""))
    given = connection.headers.get(CSRF_HEADER, "")
    if not expected or not hmac.compare_digest(expected, given):
        raise PermissionDeniedException(
            f"missing or wrong {CSRF_HEADER} header; send the csrf_token from the login answer"
        )


OPENAPI_PATH = "/schema"


def _is_openapi_or_options(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """The API docs are public, and so are the framework's automatic OPTIONS answers."""
    path = connection.scope["path"]
    if path == OPENAPI_PATH or path.startswith(OPENAPI_PATH + "/"):
        return True
    return connection.scope.get("method") == "OPTIONS"


def authorization(app: ASGIApp) -> ASGIApp:
    """Middleware: ``authorize`` every routed request and websocket before its handler.

    The same check as a Litestar guard, run once the route is known (the router puts its
    handler in the scope) and after the session middleware, so refusals go through the
    app's exception handlers as before. Not a guard because Litestar copies the route
    handler object for each guard call: a tenth of a board snapshot's CPU (py-spy)."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        handler = scope.get("route_handler")
        if handler is not None and scope["type"] in (ScopeType.HTTP, ScopeType.WEBSOCKET):
            refused = scope.get("state", {}).pop(REFUSED_BEFORE_ROUTING, None)
            if refused is not None:
                raise refused
            await authorize(ASGIConnection(scope, receive=receive, send=send), handler)
        await app(scope, receive, send)

    return guarded


STARTS_SESSION: dict[str, Any] = {"public": True, "starts_session": True}
"""The ``opt`` of a public route that signs a caller in: it sets the session cookie."""


SESSION_AS_LOADED = "onedoor_session_as_loaded"
"""The scope key of the session as its cookie brought it (``StaffCookies``)."""


class StaffCookies(ClientSideSessionBackend):
    """Litestar's encrypted cookie sessions, written only when the session changed.

    Litestar encrypts the session into a new cookie on every response, so that its
    ``max_age`` starts again. A staff session ends ``SESSION_HOURS`` after sign-in by its
    row on the server, whatever the cookie says, so a renewed cookie buys nothing: the
    cookie is now set at sign-in and cleared at sign-out, and a request that leaves the
    session as it came answers with no ``Set-Cookie``. Encrypting and encoding it was a
    twentieth of a clerk's call in py-spy (docs/performance.md, 2026-12-05)."""

    async def load_from_connection(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> dict[str, Any]:
        loaded = await super().load_from_connection(connection)
        connection.scope[SESSION_AS_LOADED] = copy.deepcopy(loaded)  # type: ignore[literal-required]
        return loaded

    async def store_in_message(
        self,
        scope_session: ScopeSession,
        message: Message,
        connection: ASGIConnection[Any, Any, Any, Any],
    ) -> None:
        as_loaded = connection.scope.get(SESSION_AS_LOADED)
        if as_loaded and scope_session == as_loaded:
            return  # unchanged, and its cookie still good: nothing to write
        await super().store_in_message(scope_session, message, connection)


class StaffCookieConfig(CookieBackendConfig):
    """``CookieBackendConfig`` with ``StaffCookies`` as its backend."""

    _backend_class = StaffCookies


def sessions_with_cookies(session: DefineMiddleware) -> Callable[[ASGIApp], ASGIApp]:
    """The session middleware, only where there is a session: a request or websocket that
    carries no cookie has none to load or store — a device with its token, a kiosk issuing,
    a visitor booking from a phone — unless its route starts one (sign-in). Skipping it
    saved a tenth of a board snapshot's CPU and a twentieth of a booking's (py-spy); a
    caller with any cookie goes through it as before."""

    def factory(app: ASGIApp) -> ASGIApp:
        with_session = session(app)

        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if all(name != b"cookie" for name, _ in scope["headers"]):
                handler = scope.get("route_handler")
                if handler is None or not handler.opt.get("starts_session"):
                    await app(scope, receive, send)
                    return
            await with_session(scope, receive, send)

        return middleware

    return factory


async def authorize(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """The app-wide guard; see the module docstring."""
    opt = handler.opt
    if opt.get("public") or _is_openapi_or_options(connection):
        return
    allowed: frozenset[str] = opt.get("roles", frozenset())
    principal = await current_principal(connection)
    if principal is None:
        raise NotAuthorizedException("sign in first (POST /api/auth/login), or send a device token")
    client = connection.client.host if connection.client else None
    audit.set_actor(
        audit.Actor(
            principal.name or principal.role, principal.user_id, principal.device_id, client
        )
    )
    if principal.role not in allowed:
        raise PermissionDeniedException(
            f"a {principal.role} may not do this; it needs one of: {', '.join(sorted(allowed))}"
        )
    if not principal.is_device:
        if connection.scope["type"] == ScopeType.WEBSOCKET:
            _check_same_origin(connection)
        elif connection.scope.get("method") not in SAFE_METHODS:
            _check_csrf(connection)
    params = connection.path_params
    hall_id = params.get("hall_id")
    if hall_id is None and "counter_id" in params:
        hall_id = await _counter_hall(connection, int(params["counter_id"]))
    if hall_id is not None and not principal.may_access_hall(int(hall_id)):
        raise PermissionDeniedException(f"you have no access to hall {hall_id}")
