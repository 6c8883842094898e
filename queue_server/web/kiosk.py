"""The kiosk page: take a ticket, check a booking in."""

from __future__ import annotations

from litestar import Controller, get
from litestar.params import FromPath
from litestar.response import Template

from queue_server.api.auth import PUBLIC

from .pages import AnyRequest, render


class KioskPage(Controller):
    opt = PUBLIC
    include_in_schema = False

    @get("/kiosk/{hall_id:int}")
    async def kiosk(self, request: AnyRequest, hall_id: FromPath[int]) -> Template:
        return render(request, "kiosk.html", hall_id=hall_id)
