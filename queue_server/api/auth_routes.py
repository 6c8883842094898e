"""Staff sign-in and sign-out."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException
from litestar.params import JSONBody

from queue_server.service import accounts
from queue_server.service.accounts import Principal
from queue_server.service.bus import Bus

from .auth import HALL_VIEWERS, PUBLIC, STAFF, roles
from .schemas import LoginIn


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

    @post("/login", opt=PUBLIC, status_code=200)
    async def login(
        self, request: Request[Any, Any, Any], data: JSONBody[LoginIn], bus: NamedDependency[Bus]
    ) -> LoginOut:
        """Sign in with username and password: sets the session cookie, returns the CSRF token."""
        principal = await bus.run(accounts.authenticate_user, data.username, data.password)
        if principal is None:
            raise NotAuthorizedException("wrong username or password")
        csrf = secrets.token_urlsafe(24)
        request.set_session({"uid": principal.user_id, "csrf": csrf})
        return LoginOut(_me(principal), csrf)

    @post("/logout", opt=roles(*STAFF), status_code=200)
    async def logout(self, request: Request[Any, Any, Any]) -> dict[str, str]:
        """End the session."""
        request.clear_session()
        return {"detail": "signed out"}

    @get("/me", opt=roles(*HALL_VIEWERS))
    async def me(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> LoginOut:
        """Who the session or device token belongs to; a page reloaded after login gets its
        CSRF token back here (empty for devices)."""
        csrf = "" if principal.is_device else str(request.session.get("csrf", ""))
        return LoginOut(_me(principal), csrf)
