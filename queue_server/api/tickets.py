"""Issuing tickets (kiosks and staff), reading them, and the hall snapshot."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta
from typing import Annotated

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter

from queue_server.realtime.snapshots import PRECOMPRESSED, Encoded, HallSnapshots
from queue_server.service import kiosk_prints, printing, queue, ratings, views
from queue_server.service.bus import Bus
from queue_server.service.commands import Actor, IssueTicket
from queue_server.service.errors import NotFound
from queue_server.service.printing import Alert
from queue_server.service.ratings import RatingsOut
from queue_server.service.views import HallSnapshot, PrintState, TicketView
from queue_server.settings import Settings

from .auth import HALL_VIEWERS, ISSUERS, MANAGERS, STAFF, roles
from .deps import Desk
from .schemas import IssueIn, ReprintIn


def with_follow_url(view: TicketView, settings: NamedDependency[Settings]) -> TicketView:
    """Add the link (and QR payload) a visitor opens to follow their turn."""
    return dataclasses.replace(
        view, follow_url=f"{settings.effective_public_base_url}/t/{view.follow_token}"
    )


async def ticket_answer(
    bus: Bus, settings: Settings, ticket_id: int, *, with_print: bool
) -> TicketView:
    """A new ticket with its follow link and, for a kiosk's, its print job as it stands
    now: the answer never waits for the printer. The outcome follows on the kiosk's feed
    (``/ws/halls/{hall}/kiosk``)."""
    read = kiosk_prints.answer_view if with_print else views.ticket_view
    return with_follow_url(await bus.read(read, ticket_id), settings)


class TicketController(Controller):
    path = "/api/halls/{hall_id:int}"
    tags = ["tickets"]

    @post("/tickets", opt=roles(*ISSUERS))
    async def issue(
        self,
        hall_id: FromPath[int],
        data: JSONBody[IssueIn],
        desk: NamedDependency[Desk],
        idempotency_key: Annotated[
            str | None,
            HeaderParameter(
                name="Idempotency-Key",
                min_length=1,
                max_length=128,
                description="Same key again (e.g. a double tap) returns the same ticket.",
            ),
        ] = None,
    ) -> TicketView:
        """Take a ticket for a matter: number, people ahead, estimated wait and follow link.

        Kiosks use their device token; staff issuing for a visitor (assisted service) sign in.
        ``printing`` is the print job as it stands when the ticket is made (pending, or
        no_printer); whether it printed follows on the kiosk's feed, ``/ws/halls/{id}/kiosk``.
        """
        bus, principal, settings = desk.bus, desk.principal, desk.settings
        # The ticket and what its answer says come from one statement on PostgreSQL; the
        # answer's own transaction then only reads when no projection holds the ticket yet.
        new = await bus.run(
            queue.issue_new,
            IssueTicket(
                hall_id=hall_id,
                service_id=data.service_id,
                priority=data.priority,
                actor=Actor(user_id=principal.user_id, device_id=principal.device_id),
                idempotency_key=idempotency_key,
                follow_base=settings.effective_public_base_url,
            ),
        )
        return with_follow_url(await bus.read(kiosk_prints.new_ticket_answer, new), settings)

    @post("/tickets/{ticket_id:int}/reprint", opt=roles(*STAFF), status_code=200)
    async def reprint(
        self,
        hall_id: FromPath[int],
        ticket_id: FromPath[int],
        bus: NamedDependency[Bus],
        settings: NamedDependency[Settings],
        data: JSONBody[ReprintIn | None] = None,
    ) -> PrintState:
        """Print a ticket again, on the printer of the kiosk that issued it or on ``printer_id``;
        the answer waits (up to ONEDOOR_PRINT_WAIT_SECONDS) to say whether it printed."""
        job_id = await bus.run(
            printing.reprint,
            hall_id,
            ticket_id,
            data.printer_id if data else None,
            settings.effective_public_base_url,
        )
        return await printing.wait_for_print(bus, job_id, settings.print_wait_seconds)

    @get("/alerts", opt=roles(*HALL_VIEWERS))
    async def alerts(
        self,
        hall_id: FromPath[int],
        bus: NamedDependency[Bus],
        settings: NamedDependency[Settings],
    ) -> list[Alert]:
        """Devices that need staff now: a print agent gone, paper out, cover open, a kiosk
        or board gone silent."""
        silent = timedelta(seconds=settings.screen_silent_seconds)
        return await bus.run(printing.alerts, hall_id, silent)

    @get("/tickets/{ticket_id:int}", opt=roles(*STAFF))
    async def get_ticket(
        self,
        hall_id: FromPath[int],
        ticket_id: FromPath[int],
        bus: NamedDependency[Bus],
        settings: NamedDependency[Settings],
    ) -> TicketView:
        view = await bus.run(views.ticket_view, ticket_id)
        if view.hall_id != hall_id:
            raise NotFound(f"hall {hall_id} has no ticket with id {ticket_id}")
        return with_follow_url(view, settings)

    @get("/ratings", opt=roles(*MANAGERS))
    async def ratings(
        self,
        hall_id: FromPath[int],
        bus: NamedDependency[Bus],
        day: Annotated[date | None, QueryParameter(description="hall date, default today")] = None,
    ) -> RatingsOut:
        """The day's service ratings (好差评), newest first, with their average."""
        return await bus.run(ratings.hall_ratings, hall_id, day)

    @get(
        "/snapshot",
        opt={**roles(*HALL_VIEWERS), PRECOMPRESSED: True},
        responses={200: ResponseSpec(HallSnapshot, description="The hall now")},
    )
    async def snapshot(
        self,
        hall_id: FromPath[int],
        snapshots: NamedDependency[HallSnapshots],
        since: Annotated[
            int,
            QueryParameter(
                ge=0,
                description="A seq the caller has seen (from an event): the answer is at "
                "least that new, whichever server process answers.",
            ),
        ] = 0,
    ) -> Encoded:
        """Waiting per matter, each counter's state and ticket, and the last calls of today.

        Answered from the process's memory (realtime/snapshots.py): ``seq`` is never behind
        an event this process has applied, nor behind ``since``; without ``since``, a change
        made through another process shows as soon as its event reaches this one
        (milliseconds)."""
        return await snapshots.answer(hall_id, since)
