"""The counter console: a clerk signs in, calls, serves, finishes, transfers."""

from __future__ import annotations

from litestar import Controller, get
from litestar.response import Template

from queue_server.api.auth import PUBLIC

from .pages import AnyRequest, render


class CounterPage(Controller):
    opt = PUBLIC
    include_in_schema = False

    @get("/counter")
    async def counter(self, request: AnyRequest) -> Template:
        return render(request, "counter.html")
