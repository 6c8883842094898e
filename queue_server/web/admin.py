"""The manager pages: the hall's configuration and its live dashboard."""

from __future__ import annotations

from litestar import Controller, get
from litestar.response import Template

from queue_server.api.auth import PUBLIC

from .pages import AnyRequest, render


class AdminPage(Controller):
    opt = PUBLIC
    include_in_schema = False

    @get("/admin")
    async def admin(self, request: AnyRequest) -> Template:
        return render(request, "admin.html")
