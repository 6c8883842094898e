"""Staff sign-in and sign-out."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException
from litestar.params import JSONBody

from queue_server.service import accounts, sessions
from queue_server.service.accounts import Principal
from queue_server.service.bus import Bus
from queue_server.service.sessions import SessionOut

from .auth import HALL_VIEWERS, STAFF, STARTS_SESSION, roles, session_digest
from .clients import LoginThrottle
from .schemas import LoginIn, PasswordChangeIn


@dataclass(frozen=True)
class Detail:
    detail: str


@dataclass(frozen=True)
class Me:
    role: str
    hall_id: int | None
    user_id: int | None
    device_id: int | None
    name: str


@dataclass(frozen=True)
class LoginOut:
    user: Me
    csrf_token: str
    """Send it back as the X-CSRF-Token header on every POST, PATCH, PUT and DELETE."""


def _me(p: Principal) -> Me:
    return Me(p.role, p.hall_id, p.user_id, p.device_id, p.name)


class AuthController(Controller):
    path = "/api/auth"
    tags = ["accounts"]

    @post("/login", opt=STARTS_SESSION, status_code=200)
    async def login(
        self, request: Request[Any, Any, Any], data: JSONBody[LoginIn], bus: NamedDependency[Bus]
    ) -> LoginOut:
        """Sign in with username and password: sets the session cookie, returns the CSRF token."""
        client = request.client.host if request.client else None
        throttle: LoginThrottle = request.app.state.login_throttle
        await throttle.check(data.username, client or "")
        principal = await bus.run(accounts.authenticate_user, data.username, data.password)
        if principal is None or principal.user_id is None:
            await throttle.failed(data.username, client or "")
            raise NotAuthorizedException("wrong username or password")
        await throttle.succeeded(data.username)
        token = await bus.run(
            sessions.open_session, principal.user_id, client, request.headers.get("user-agent")
        )
        csrf = secrets.token_urlsafe(24)
        request.set_session({"sid": token, "csrf": csrf})
        return LoginOut(_me(principal), csrf)

    @post("/logout", opt=roles(*STAFF), status_code=200)
    async def logout(self, request: Request[Any, Any, Any], bus: NamedDependency[Bus]) -> Detail:
        """End this session: its cookie, and any copy of it, is refused from now on."""
        digest = session_digest(request)
        if digest is not None:
            await bus.run(sessions.end_session, digest)
        request.clear_session()
        return Detail("signed out")

    @post("/logout-everywhere", opt=roles(*STAFF), status_code=200)
    async def logout_everywhere(
        self,
        request: Request[Any, Any, Any],
        bus: NamedDependency[Bus],
        principal: NamedDependency[Principal],
    ) -> Detail:
        """End every session of the signed-in user, on every browser, this one too; their
        open pages' live feeds close at once."""
        assert principal.user_id is not None
        ended = await bus.run(sessions.sign_out_everywhere, principal.user_id)
        request.clear_session()
        return Detail(f"signed out of {ended} session{'s' if ended != 1 else ''}")

    @get("/sessions", opt=roles(*STAFF))
    async def list_sessions(
        self,
        request: Request[Any, Any, Any],
        bus: NamedDependency[Bus],
        principal: NamedDependency[Principal],
    ) -> list[SessionOut]:
        """The signed-in user's sessions still standing (``current``: this one)."""
        assert principal.user_id is not None
        return await bus.run(
            sessions.list_sessions, principal.user_id, session_digest(request) or ""
        )

    @post("/password", opt=roles(*STAFF), status_code=200)
    async def change_password(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[PasswordChangeIn],
        bus: NamedDependency[Bus],
        principal: NamedDependency[Principal],
    ) -> Detail:
        """Change your own password, giving the current one; your other sessions end (this
        one goes on)."""
        assert principal.user_id is not None
        ended = await bus.run(
            sessions.change_own_password, principal.user_id, data.current_password,
            data.new_password, session_digest(request) or "",
        )  # fmt: skip
        return Detail(f"password changed; {ended} other session{'s' if ended != 1 else ''} ended")

    @get("/me", opt=roles(*HALL_VIEWERS))
    async def me(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> LoginOut:
        """Who the session or device token belongs to; a page reloaded after login gets its
        CSRF token back here (empty for devices)."""
        csrf = "" if principal.is_device else str(request.session.get("csrf", ""))
        return LoginOut(_me(principal), csrf)
