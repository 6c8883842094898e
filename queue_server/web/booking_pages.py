"""The booking site (phone first) and a visitor's ticket follower page."""

from __future__ import annotations

from litestar import Controller, get
from litestar.params import FromPath
from litestar.response import Template

from queue_server.api.auth import PUBLIC

from .pages import AnyRequest, render


class BookingPages(Controller):
    opt = PUBLIC
    include_in_schema = False

    @get("/book")
    async def book(self, request: AnyRequest) -> Template:
        return render(request, "book.html")

    @get("/book/manage")
    async def manage(self, request: AnyRequest) -> Template:
        return render(request, "manage.html")

    @get("/t/{token:str}")
    async def follow(self, request: AnyRequest, token: FromPath[str]) -> Template:
        return render(request, "follow.html", token=token)
