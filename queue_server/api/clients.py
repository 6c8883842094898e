"""Who the client is, behind a reverse proxy, and how often they may try to sign in.

``client_address`` is ASGI middleware: when the connection comes from one of the trusted
proxies (ONEDOOR_TRUSTED_PROXIES), the client is the right-most address of
``X-Forwarded-For`` that is not itself a trusted proxy; otherwise the header is ignored (a
client cannot choose its own address). Everything that looks at the client — the booking
rate limit, the sign-in throttle, a session's recorded address — sees the result.

``LoginThrottle`` counts failed sign-ins per account and per address in the app's store
(Redis when several processes run, so they count together): past the limit, sign-in is
refused with 429 and Retry-After until the window has passed, whatever the password.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any

from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_429_TOO_MANY_REQUESTS
from litestar.stores.base import Store
from litestar.types import ASGIApp, Receive, Scope, Send

from queue_server.service import audit

Network = IPv4Network | IPv6Network


def _address(text: str) -> IPv4Address | IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return ip_address(text)
    except ValueError:
        return None


def forwarded_client(peer: str, forwarded: str, trusted: Sequence[Network]) -> str:
    """The client's address: ``peer`` unless it is a trusted proxy, then the right-most hop
    of ``forwarded`` (X-Forwarded-For) that is not one."""

    def is_trusted(text: str) -> bool:
        found = _address(text)
        return found is not None and any(found in network for network in trusted)

    if not trusted or not is_trusted(peer):
        return peer
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        found = _address(hop)
        if found is None:
            return peer  # a malformed hop: trust nothing left of it
        if not is_trusted(hop):
            return str(found)
    return str(_address(hops[0])) if hops else peer


def client_address(trusted: Sequence[Network]) -> Callable[[ASGIApp], ASGIApp]:
    """Middleware factory (Litestar's ``middleware=[...]``) applying ``forwarded_client``."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def resolve(scope: Scope, receive: Receive, send: Send) -> None:
            # Whoever the access guard names is the audit log's actor of this request only.
            token = audit.begin_request()
            try:
                await _resolved(scope, receive, send)
            finally:
                audit.end_request(token)

        async def _resolved(scope: Scope, receive: Receive, send: Send) -> None:
            client = scope.get("client")
            if trusted and client and scope["type"] in ("http", "websocket"):
                forwarded = ",".join(
                    value.decode("latin-1")
                    for name, value in scope.get("headers", ())
                    if name == b"x-forwarded-for"
                )
                if forwarded:
                    host = forwarded_client(client[0], forwarded, trusted)
                    if host != client[0]:
                        scope["client"] = (host, 0)
            await app(scope, receive, send)

        return resolve

    return middleware


class TooManySignIns(HTTPException):
    status_code = HTTP_429_TOO_MANY_REQUESTS


class LoginThrottle:
    """Failed sign-ins per account (any address) and per address (any account)."""

    def __init__(
        self, store: Store, per_account: int = 5, per_address: int = 30, window: int = 900
    ) -> None:
        self.store = store
        self.per_account = per_account
        self.per_address = per_address
        self.window = window

    @staticmethod
    def _keys(username: str, address: str) -> tuple[str, str]:
        account = hashlib.sha256(username.strip().casefold().encode()).hexdigest()
        return f"account:{account}", f"address:{address}"

    async def check(self, username: str, address: str) -> None:
        """Refuse (429, Retry-After) while the account or the address is over its limit."""
        for key, limit in zip(
            self._keys(username, address), (self.per_account, self.per_address), strict=True
        ):
            count = await self.store.get(key)
            if count is not None and int(count) >= limit:
                wait = max(1, await self.store.expires_in(key) or self.window)
                raise TooManySignIns(
                    detail=f"too many failed sign-ins; try again in {(wait + 59) // 60} "
                    "minutes, or ask a manager to reset the password",
                    headers={"Retry-After": str(wait)},
                )

    async def failed(self, username: str, address: str) -> None:
        for key in self._keys(username, address):
            count = await self.store.get(key)
            left = await self.store.expires_in(key) if count is not None else None
            await self.store.set(key, str(int(count or 0) + 1), expires_in=left or self.window)

    async def succeeded(self, username: str) -> None:
        await self.store.delete(self._keys(username, "")[0])


CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""OneDoor's pages load only their own scripts, styles, images and sounds, and talk only to
their own server (websockets included); none may be framed by another site."""
API_DOCS = "/schema"
"""The API docs page (Swagger UI) starts itself with an inline script: no CSP there."""


def security_headers(https: bool) -> Callable[[ASGIApp], ASGIApp]:
    """Middleware factory: the usual security headers on every answer, and the content
    security policy on every HTML page but the API docs; HSTS when served over HTTPS
    (ONEDOOR_SECURE_COOKIES)."""
    common = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        # A ticket's follow link holds its token: never hand it on to another site.
        (b"referrer-policy", b"no-referrer"),
        (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
    ]
    if https:
        common.append((b"strict-transport-security", b"max-age=31536000"))
    policy = (b"content-security-policy", CONTENT_SECURITY_POLICY.encode())

    def middleware(app: ASGIApp) -> ASGIApp:
        async def add_headers(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            docs = scope["path"] == API_DOCS or scope["path"].startswith(API_DOCS + "/")

            async def send_with_headers(message: Any) -> None:
                if message["type"] == "http.response.start":
                    headers = list(message.get("headers", ()))
                    present = {name.lower() for name, _ in headers}
                    headers += [(n, v) for n, v in common if n not in present]
                    html = any(
                        name.lower() == b"content-type" and value.startswith(b"text/html")
                        for name, value in headers
                    )
                    if html and not docs:
                        headers.append(policy)
                    message = {**message, "headers": headers}
                await send(message)

            await app(scope, receive, send_with_headers)

        return add_headers

    return middleware
