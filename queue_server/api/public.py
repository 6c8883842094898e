"""What anyone may read: a hall's matters for the kiosk, a ticket by its follow link, health."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Redirect

from queue_server.service import views
from queue_server.service.bus import Bus
from queue_server.service.views import TicketView
from queue_server.settings import Settings

from .auth import PUBLIC
from .tickets import with_follow_url


class PublicController(Controller):
    tags = ["public"]
    opt = PUBLIC

    @get("/api/public/halls/{hall_id:int}")
    async def hall(self, hall_id: FromPath[int], bus: NamedDependency[Bus]) -> views.PublicHall:
        """A hall's name, whether it is open, its priority classes and its active matters."""
        return await bus.run(views.public_hall, hall_id)

    @get("/api/follow/{token:str}")
    async def follow(
        self, token: FromPath[str], bus: NamedDependency[Bus], settings: NamedDependency[Settings]
    ) -> TicketView:
        """A visitor's ticket by the token in their follow link: state, people ahead, estimate."""
        return with_follow_url(await bus.run(views.ticket_by_follow_token, token), settings)

    @get("/t/{token:str}", include_in_schema=False)
    async def follow_link(self, token: FromPath[str]) -> Redirect:
        # The link printed on tickets; it stays stable while what it shows evolves.
        return Redirect(f"/api/follow/{token}", status_code=307)

    @get("/healthz")
    async def health(self, bus: NamedDependency[Bus]) -> Response[dict[str, str]]:
        """Liveness and database reachability, for load balancers."""
        try:
            await bus.run(views.database_ok)
        except Exception:  # any failure means unhealthy
            return Response({"status": "unhealthy", "database": "unreachable"}, status_code=503)
        return Response({"status": "ok", "database": "ok"})
