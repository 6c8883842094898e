"""The clerk's counter: open it, call, serve, finish, transfer."""

from __future__ import annotations

from dataclasses import dataclass

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from queue_server.domain.model import Outcome
from queue_server.service import audit, hall_config, views
from queue_server.service import commands as cmd
from queue_server.service.accounts import Principal
from queue_server.service.bus import Bus
from queue_server.service.hall_config import CounterOut
from queue_server.service.queue import WaitingEntry, waiting_for_counter, waiting_total
from queue_server.service.unit_of_work import UnitOfWork
from queue_server.service.views import TicketView
from queue_server.service.visitors import VisitorId
from queue_server.settings import Settings

from .auth import STAFF, roles
from .deps import Desk
from .schemas import FinishIn, TransferIn
from .tickets import with_follow_url


@dataclass(frozen=True)
class CounterConsole:
    counter: CounterOut
    current: TicketView | None
    waiting_total: int
    """How many wait today for the counter's matters (``/waiting`` lists the first 50)."""


@dataclass(frozen=True)
class CallOut:
    ticket: TicketView | None
    """None when nobody is waiting for this counter's matters."""
    reason: str
    """Why the policy chose this ticket, for the clerk."""


@dataclass(frozen=True)
class TransferOut:
    transferred: TicketView
    new_ticket: TicketView


async def console(bus: Bus, settings: Settings, counter_id: int) -> CounterConsole:
    """The counter, its profile, its current ticket and how many wait for it."""
    return await bus.read(read_console, settings, counter_id)


async def read_console(uow: UnitOfWork, settings: Settings, counter_id: int) -> CounterConsole:
    """``console`` in the caller's unit of work (the counter feed reads it with the rest of
    its message in one)."""
    counter = await hall_config.get_counter(uow, counter_id)
    current_id = await views.current_ticket_id(uow, counter_id)
    current = (
        with_follow_url(await views.ticket_view(uow, current_id), settings) if current_id else None
    )
    return CounterConsole(counter, current, await waiting_total(uow, counter_id))


class CounterController(Controller):
    path = "/api/counters/{counter_id:int}"
    tags = ["counter"]
    opt = roles(*STAFF)

    async def _view(self, bus: Bus, settings: Settings, ticket_id: int) -> TicketView:
        return with_follow_url(await bus.read(views.ticket_view, ticket_id), settings)

    @get("/")
    async def get_console(
        self,
        counter_id: FromPath[int],
        bus: NamedDependency[Bus],
        settings: NamedDependency[Settings],
    ) -> CounterConsole:
        """The counter, its profile, its current ticket and how many wait for its matters
        (`waiting_total`; `/waiting` lists the first 50)."""
        return await console(bus, settings, counter_id)

    @get("/waiting")
    async def waiting(
        self, counter_id: FromPath[int], bus: NamedDependency[Bus]
    ) -> list[WaitingEntry]:
        """The first 50 tickets this counter would call, in the policy's order, with the
        reasons (the console's ``waiting_total`` counts everyone waiting)."""
        return await bus.run(waiting_for_counter, counter_id)

    @post("/open", status_code=200)
    async def open(
        self,
        counter_id: FromPath[int],
        desk: NamedDependency[Desk],
    ) -> CounterConsole:
        """Sign in at this counter and open it for calls (signing out of any other)."""
        bus, principal, settings = desk.bus, desk.principal, desk.settings
        await bus.execute(cmd.OpenCounter(counter_id, _clerk(principal)))
        return await console(bus, settings, counter_id)

    @post("/pause", status_code=200)
    async def pause(
        self,
        counter_id: FromPath[int],
        desk: NamedDependency[Desk],
    ) -> CounterConsole:
        bus, principal, settings = desk.bus, desk.principal, desk.settings
        await bus.execute(cmd.PauseCounter(counter_id, _clerk(principal)))
        return await console(bus, settings, counter_id)

    @post("/close", status_code=200)
    async def close(
        self,
        counter_id: FromPath[int],
        desk: NamedDependency[Desk],
    ) -> CounterConsole:
        """Close the counter and sign out; it must have no current ticket."""
        bus, principal, settings = desk.bus, desk.principal, desk.settings
        await bus.execute(cmd.CloseCounter(counter_id, _clerk(principal)))
        return await console(bus, settings, counter_id)

    async def _call(self, bus: Bus, settings: Settings, command: object) -> CallOut:
        # The answer is read in the command's own transaction (Bus.execute_answered).
        result, view = await bus.execute_answered(command, views.settled_ticket_view)
        if view is not None:
            return CallOut(with_follow_url(view, settings), result.reason)
        ticket = await self._view(bus, settings, result.ticket_id) if result.ticket_id else None
        return CallOut(ticket, result.reason)

    @post("/call-next", status_code=200)
    async def call_next(
        self,
        counter_id: FromPath[int],
        desk: NamedDependency[Desk],
    ) -> CallOut:
        """Call the next ticket by the queue policy; the answer says why it was chosen."""
        bus, principal, settings = desk.bus, desk.principal, desk.settings
        return await self._call(bus, settings, cmd.CallNext(counter_id, _clerk(principal)))

    @post("/call/{ticket_id:int}", status_code=200)
    async def call_ticket(
        self,
        counter_id: FromPath[int],
        ticket_id: FromPath[int],
        desk: NamedDependency[Desk],
    ) -> CallOut:
        """Call a given waiting ticket of this counter's matters (out of the policy's order:
        written to the audit log)."""
        bus, principal, settings = desk.bus, desk.principal, desk.settings
        called = await self._call(
            bus, settings, cmd.CallTicket(counter_id, _clerk(principal), ticket_id)
        )
        if called.ticket is not None:
            await bus.run(
                audit.record, called.ticket.hall_id, "called out of turn",
                f"ticket {called.ticket.number}", {"counter_id": counter_id},
            )  # fmt: skip
        return called

    async def _act(self, bus: Bus, settings: Settings, command: object) -> TicketView:
        # Read in the command's own transaction; a ticket left waiting (returned to the
        # queue) is read after the commit, its wait told from the committed log.
        ticket_id, view = await bus.execute_answered(command, views.settled_ticket_view)
        if view is not None:
            return with_follow_url(view, settings)
        return await self._view(bus, settings, ticket_id)

    @post("/recall", status_code=200)
    async def recall(
        self,
        counter_id: FromPath[int],
        desk: NamedDependency[Desk],
    ) -> TicketView:
        """Announce the current ticket again."""
        bus, principal, settings = desk.bus, desk.principal, desk.settings
        return await self._act(bus, settings, cmd.Recall(counter_id, _clerk(principal)))

    @post("/no-show", status_code=200)
    async def no_show(
        self,
        counter_id: FromPath[int],
        desk: NamedDependency[Desk],
    ) -> TicketView:
        """The called visitor did not come."""
        bus, principal, settings = desk.bus, desk.principal, desk.settings
        return await self._act(bus, settings, cmd.MarkNoShow(counter_id, _clerk(principal)))

    @post("/start", status_code=200)
    async def start(
        self,
        counter_id: FromPath[int],
        desk: NamedDependency[Desk],
    ) -> TicketView:
        """The visitor is at the counter: service starts."""
        bus, principal, settings = desk.bus, desk.principal, desk.settings
        return await self._act(bus, settings, cmd.StartService(counter_id, _clerk(principal)))

    @post("/finish", status_code=200)
    async def finish(
        self,
        counter_id: FromPath[int],
        data: JSONBody[FinishIn],
        desk: NamedDependency[Desk],
    ) -> TicketView:
        """End the service with an outcome: ``missing_documents`` names which (from the
        matter's list), ``other`` needs a note; ``escalate`` sends a visit not done on to the
        hall's desk at once; ``visitor`` (a phone, or ID tail and name) links the visit to its
        visitor for the one-visit rate (kept hashed)."""
        bus, principal, settings = desk.bus, desk.principal, desk.settings
        visitor = (
            VisitorId(data.visitor.phone, data.visitor.id_tail, data.visitor.name)
            if data.visitor is not None
            else None
        )
        command = cmd.FinishService(
            counter_id, _clerk(principal), Outcome(data.outcome), data.note,
            tuple(data.missing_documents), data.escalate, visitor,
        )  # fmt: skip
        return await self._act(bus, settings, command)

    @post("/return", status_code=200)
    async def return_to_queue(
        self,
        counter_id: FromPath[int],
        desk: NamedDependency[Desk],
    ) -> TicketView:
        """Put the called ticket back in the queue at its old place."""
        bus, principal, settings = desk.bus, desk.principal, desk.settings
        return await self._act(bus, settings, cmd.ReturnToQueue(counter_id, _clerk(principal)))

    @post("/transfer", status_code=200)
    async def transfer(
        self,
        counter_id: FromPath[int],
        data: JSONBody[TransferIn],
        desk: NamedDependency[Desk],
    ) -> TransferOut:
        """Send the visitor on to another matter; they keep their number and go first there."""
        bus, principal, settings = desk.bus, desk.principal, desk.settings
        old_id, new_id = await bus.execute(
            cmd.TransferTicket(counter_id, _clerk(principal), data.service_id, data.note)
        )
        return TransferOut(
            await self._view(bus, settings, old_id), await self._view(bus, settings, new_id)
        )


def _clerk(principal: Principal) -> int:
    assert principal.user_id is not None, "counter routes admit staff only"
    return principal.user_id
