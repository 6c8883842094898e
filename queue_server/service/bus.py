"""The service layer's front door: commands to their handlers, each in its own transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from queue_server.clock import Clock
from queue_server.db.engine import read_session_factory

from . import audit, queue
from . import commands as cmd
from .unit_of_work import Committed, UnitOfWork, run_in_transaction

T = TypeVar("T")

HANDLERS: dict[type, Callable[[UnitOfWork, Any], Awaitable[Any]]] = {
    cmd.IssueTicket: queue.issue_ticket,
    cmd.OpenCounter: queue.open_counter,
    cmd.PauseCounter: queue.pause_counter,
    cmd.CloseCounter: queue.close_counter,
    cmd.CallNext: queue.call_next,
    cmd.CallTicket: queue.call_ticket,
    cmd.Recall: queue.act_on_current,
    cmd.MarkNoShow: queue.act_on_current,
    cmd.StartService: queue.act_on_current,
    cmd.FinishService: queue.act_on_current,
    cmd.ReturnToQueue: queue.act_on_current,
    cmd.TransferTicket: queue.transfer_ticket,
    cmd.EscalateTicket: queue.escalate_ticket,
}


class Bus:
    """Runs commands and reads; built once by the composition root."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        on_events: Committed | None = None,
    ) -> None:
        self.sessions = sessions
        self.reads = read_session_factory(sessions.kw["bind"])
        self.clock = clock
        audit.listen()  # what is configured through any bus is in the audit log
        self.on_events = on_events
        """Called after each commit that wrote events (wakes the outbox relay, drops kept
        follower views of the tickets they changed)."""

    async def execute(self, command: Any) -> Any:
        """Run the handler of ``command`` in a transaction (retried if it lost a race)."""
        handler = HANDLERS[type(command)]
        return await run_in_transaction(
            self.sessions, self.clock, lambda uow: handler(uow, command), self.on_events
        )

    async def execute_answered(
        self, command: Any, answer: Callable[[UnitOfWork, int], Awaitable[T | None]]
    ) -> tuple[Any, T | None]:
        """``execute``, and ``answer(uow, ticket_id)`` for the ticket the command acted on,
        read in the command's own transaction just before its commit (``UnitOfWork.commit``):
        the handler's result and the answer, or None where the handler gave no ticket to
        answer for (nobody called) or ``answer`` declined (then read it after the commit)."""
        handler = HANDLERS[type(command)]

        async def work(uow: UnitOfWork) -> tuple[Any, T | None]:
            uow.answer = answer
            result = await handler(uow, command)
            return result, uow.answered  # type: ignore[return-value]

        return await run_in_transaction(self.sessions, self.clock, work, self.on_events)

    async def run(self, work: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run ``work(uow, *args, **kwargs)`` in a transaction: reads and configuration."""
        return await run_in_transaction(
            self.sessions, self.clock, lambda uow: work(uow, *args, **kwargs), self.on_events
        )

    async def read(self, work: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """``run`` for work that only reads (no lock either): on PostgreSQL outside a
        transaction, two round trips fewer (``db.engine.read_session_factory``); a write
        raises ``ReadOnly``."""
        return await run_in_transaction(
            self.reads, self.clock, lambda uow: work(uow, *args, **kwargs)
        )
