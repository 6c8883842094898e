"""Commands: what callers ask the hall to do, named as orders."""

from __future__ import annotations

from dataclasses import dataclass

from queue_server.domain.model import NO_PRIORITY, Outcome, TicketKind


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


@dataclass(frozen=True)
class TransferTicket(CounterCommand):
    to_service_id: int
    note: str | None = None


@dataclass(frozen=True)
class ReturnToQueue(CounterCommand):
    pass
