"""What anyone may read: a hall's matters for the kiosk, a ticket by its follow link, health."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Redirect
from sqlalchemy import text

from queue_server.db.repository import hall_from_row
from queue_server.db.tables import HallRow
from queue_server.domain.model import NO_PRIORITY
from queue_server.service import hall_config, views
from queue_server.service.bus import Bus
from queue_server.service.errors import NotFound
from queue_server.service.hall_config import ServiceOut
from queue_server.service.unit_of_work import UnitOfWork
from queue_server.service.views import TicketView
from queue_server.settings import Settings

from .auth import PUBLIC
from .tickets import with_follow_url


@dataclass(frozen=True)
class PublicHall:
    id: int
    name_zh: str
    name_en: str
    timezone: str
    open_now: bool
    next_opening: datetime | None
    priority_classes: list[str]
    services: list[ServiceOut]


async def public_hall(uow: UnitOfWork, hall_id: FromPath[int]) -> PublicHall:
    row = await uow.session.get(HallRow, hall_id)
    if row is None:
        raise NotFound(f"no hall with id {hall_id}")
    hall = hall_from_row(row)
    local = uow.clock.now().astimezone(hall.tz)
    open_now = hall.opening_hours.is_open(local)
    return PublicHall(
        id=hall.id,
        name_zh=hall.name_zh,
        name_en=hall.name_en,
        timezone=hall.timezone,
        open_now=open_now,
        next_opening=None if open_now else hall.opening_hours.next_opening(local),
        priority_classes=[NO_PRIORITY, *sorted(hall.priority_boosts)],
        services=await hall_config.list_services(uow, hall_id, active_only=True),
    )


async def database_ok(uow: UnitOfWork) -> bool:
    await uow.session.execute(text("SELECT 1"))
    return True


class PublicController(Controller):
    tags = ["public"]
    opt = PUBLIC

    @get("/api/public/halls/{hall_id:int}")
    async def hall(self, hall_id: FromPath[int], bus: NamedDependency[Bus]) -> PublicHall:
        """A hall's name, whether it is open, its priority classes and its active matters."""
        return await bus.run(public_hall, hall_id)

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
            await bus.run(database_ok)
        except Exception:  # any failure means unhealthy
            return Response({"status": "unhealthy", "database": "unreachable"}, status_code=503)
        return Response({"status": "ok", "database": "ok"})
