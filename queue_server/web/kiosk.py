"""The kiosk page: take a ticket, check a booking in.

Opened on the hall's touch screen as ``/kiosk/{hall}?token=<kiosk device token>``; the
script (``static/kiosk.js``) reads the hall's matters from the public API and issues
tickets with the token. ``?idle=<seconds>`` changes how long the result stays on screen
without input (default 45 s) before the kiosk goes back to the start.
"""

from __future__ import annotations

from litestar import Controller, get
from litestar.params import FromPath
from litestar.response import Template

from queue_server.api.auth import PUBLIC

from .pages import AnyRequest, language, render

IDLE_SECONDS = 45
IDLE_RANGE = (2, 600)


def idle_seconds(text: str | None) -> int:
    """The ``?idle=`` choice, kept within reason; the default when missing or not a number."""
    try:
        seconds = int(text or "")
    except ValueError:
        return IDLE_SECONDS
    return max(IDLE_RANGE[0], min(IDLE_RANGE[1], seconds))


class KioskPage(Controller):
    opt = PUBLIC
    include_in_schema = False

    @get("/kiosk/{hall_id:int}")
    async def kiosk(self, request: AnyRequest, hall_id: FromPath[int]) -> Template:
        page_data = {
            "hall_id": hall_id,
            "token": request.query_params.get("token", ""),
            "idle_seconds": idle_seconds(request.query_params.get("idle")),
            "lang": language(request),
        }
        return render(request, "kiosk.html", hall_id=hall_id, page_data=page_data)
