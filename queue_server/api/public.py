"""What anyone may read: a hall's matters for the kiosk, a ticket by its follow link, health."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotAuthorizedException
from litestar.params import FromPath, JSONBody

from queue_server import ops
from queue_server.realtime.follows import FollowReads
from queue_server.service import ratings, views
from queue_server.service.bus import Bus
from queue_server.service.views import TicketView
from queue_server.settings import Settings

from .auth import PUBLIC
from .schemas import RatingIn
from .tickets import with_follow_url


@dataclass(frozen=True)
class Following:
    """What a follow read needs, as one dependency (a route's several are resolved in a
    task group per request, a fifth of a follow read's CPU; one is resolved inline)."""

    follows: FollowReads
    settings: Settings


def provide_following(state: State) -> Following:
    return Following(state.follows, state.settings)


class PublicController(Controller):
    tags = ["public"]
    opt = PUBLIC

    @get("/api/public/halls")
    async def halls(self, bus: NamedDependency[Bus]) -> list[views.HallRef]:
        """Every hall: where a visitor can book."""
        return await bus.run(views.public_halls)

    @get("/api/public/halls/{hall_id:int}")
    async def hall(self, hall_id: FromPath[int], bus: NamedDependency[Bus]) -> views.PublicHall:
        """A hall's name, whether it is open, its priority classes and its active matters."""
        return await bus.run(views.public_hall, hall_id)

    @get(
        "/api/follow/{token:str}",
        dependencies={"following": Provide(provide_following, sync_to_thread=False)},
    )
    async def follow(
        self, token: FromPath[str], following: NamedDependency[Following]
    ) -> TicketView:
        """A visitor's ticket by the token in their follow link: state, people ahead, estimate.

        Read from the database once, then kept in the process while no event changes the
        ticket (realtime/follows.py): a waiting ticket's place and wait are told again
        from the hall's shared projection."""
        return with_follow_url(await following.follows.answer(token), following.settings)

    @post("/api/follow/{token:str}/rating", status_code=201)
    async def rate(
        self, token: FromPath[str], data: JSONBody[RatingIn], bus: NamedDependency[Bus]
    ) -> dict[str, int]:
        """Rate the finished service (1 to 5 stars, an optional comment); once per ticket."""
        ticket_id = await bus.run(ratings.rate_service, token, data.stars, data.comment)
        return {"ticket_id": ticket_id, "stars": data.stars}

    @get("/livez")
    async def live(self) -> dict[str, str]:
        """Liveness: the process answers (nothing else is checked; restart it if not)."""
        return {"status": "ok"}

    @get("/readyz")
    async def ready(self, request: Request[Any, Any, Any]) -> Response[dict[str, str]]:
        """Readiness: the database answers with the schema at the code's migration, and
        Redis answers when it is configured; 503 says which is not (take the host out of
        the balancer until it is)."""
        state = request.app.state
        found = await ops.readiness(state.engine, state.settings)
        body = {"status": "ready" if found.ready else "not ready", "database": found.database,
                "schema": found.schema, "redis": found.redis}  # fmt: skip
        return Response(body, status_code=200 if found.ready else 503)

    @get("/metrics", media_type="text/plain; version=0.0.4")
    async def metrics(self, request: Request[Any, Any, Any], bus: NamedDependency[Bus]) -> bytes:
        """Prometheus metrics of this process (requests, durations, open feeds) and of the
        halls (waiting tickets, the longest wait, failed print jobs). With
        ONEDOOR_METRICS_TOKEN set, send it as a bearer token."""
        token = request.app.state.settings.metrics_token
        given = request.headers.get("authorization", "")
        if token and not hmac.compare_digest(given, f"Bearer {token}"):
            raise NotAuthorizedException("send the metrics token: Authorization: Bearer <token>")
        return await request.app.state.metrics.render(bus)  # type: ignore[no-any-return]

    @get("/healthz")
    async def health(self, bus: NamedDependency[Bus]) -> Response[dict[str, str]]:
        """Liveness and database reachability, for load balancers."""
        try:
            await bus.run(views.database_ok)
        except Exception:  # any failure means unhealthy
            return Response({"status": "unhealthy", "database": "unreachable"}, status_code=503)
        return Response({"status": "ok", "database": "ok"})
