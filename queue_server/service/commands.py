"""Commands: what callers ask the hall to do, named as orders."""

from __future__ import annotations

from dataclasses import dataclass

from queue_server.domain.model import NO_PRIORITY, Outcome, TicketKind

from .visitors import VisitorId


@dataclass(frozen=True)
class Actor:
    """Who gives the command: a signed-in user or a device."""

    user_id: int | None = None
    device_id: int | None = None


@dataclass(frozen=True)
class IssueTicket:
    hall_id: int
    service_id: int
    actor: Actor
    priority: str = NO_PRIORITY
    kind: TicketKind = TicketKind.WALK_IN
    idempotency_key: str | None = None
    follow_base: str = ""
    """Public base URL for the follow link printed on the ticket."""


@dataclass(frozen=True)
class CounterCommand:
    counter_id: int
    clerk_id: int


@dataclass(frozen=True)
class OpenCounter(CounterCommand):
    pass


@dataclass(frozen=True)
class PauseCounter(CounterCommand):
    pass


@dataclass(frozen=True)
class CloseCounter(CounterCommand):
    pass


@dataclass(frozen=True)
class CallNext(CounterCommand):
    pass


@dataclass(frozen=True)
class CallTicket(CounterCommand):
    ticket_id: int


@dataclass(frozen=True)
class Recall(CounterCommand):
    pass


@dataclass(frozen=True)
class MarkNoShow(CounterCommand):
    pass


@dataclass(frozen=True)
class StartService(CounterCommand):
    pass


@dataclass(frozen=True)
class FinishService(CounterCommand):
    outcome: Outcome
    note: str | None = None
    missing_documents: tuple[str, ...] = ()
    """With ``missing_documents``: which of the matter's documents were missing."""
    escalate: bool = False
    """Send the visit on to the hall's desk at once (an outcome other than done)."""
    visitor: VisitorId | None = None
    """Who the visitor is, when the clerk asked (for the one-visit rate; stored hashed)."""


@dataclass(frozen=True)
class EscalateTicket:
    """Send the visit of a finished, not-done ticket on to the hall's desk."""

    hall_id: int
    ticket_id: int
    user_id: int


@dataclass(frozen=True)
class TransferTicket(CounterCommand):
    to_service_id: int
    note: str | None = None


@dataclass(frozen=True)
class ReturnToQueue(CounterCommand):
    pass
