"""What happened in the hall, in the past tense. Each event becomes a row in the hall's log."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Event:
    """Base of all hall events; ``at`` is an aware UTC datetime."""

    hall_id: int
    at: datetime

    @property
    def name(self) -> str:
        return type(self).__name__

    def payload(self) -> dict[str, Any]:
        """The event's fields as JSON-ready values (datetimes as ISO 8601). Events hold
        scalars only, so the fields are read as they are (``asdict`` deep-copied each one:
        a twentieth of a booking's CPU)."""
        names = _FIELD_NAMES.get(type(self))
        if names is None:
            names = _FIELD_NAMES[type(self)] = tuple(f.name for f in fields(self))
        data = {}
        for name in names:
            value = getattr(self, name)
            data[name] = value.isoformat() if isinstance(value, datetime) else value
        return data


_FIELD_NAMES: dict[type[Event], tuple[str, ...]] = {}


@dataclass(frozen=True)
class TicketEvent(Event):
    ticket_id: int
    number: str
    service_id: int


@dataclass(frozen=True)
class TicketIssued(TicketEvent):
    kind: str
    priority: str


@dataclass(frozen=True)
class TicketCalled(TicketEvent):
    counter_id: int
    reason: str


@dataclass(frozen=True)
class TicketRecalled(TicketEvent):
    counter_id: int
    call_count: int


@dataclass(frozen=True)
class TicketReturnedToQueue(TicketEvent):
    counter_id: int


@dataclass(frozen=True)
class TicketMarkedNoShow(TicketEvent):
    counter_id: int


@dataclass(frozen=True)
class ServiceStarted(TicketEvent):
    counter_id: int


@dataclass(frozen=True)
class ServiceFinished(TicketEvent):
    counter_id: int
    outcome: str


@dataclass(frozen=True)
class TicketTransferred(TicketEvent):
    counter_id: int | None
    to_service_id: int


@dataclass(frozen=True)
class TicketCancelled(TicketEvent):
    pass


@dataclass(frozen=True)
class TicketEscalated(TicketEvent):
    """A finished ticket's visit was sent on to the hall's desk (the new ticket is issued)."""

    desk_service_id: int


@dataclass(frozen=True)
class OutcomeCorrected(TicketEvent):
    outcome: str
    by_user_id: int


@dataclass(frozen=True)
class CaseChanged(Event):
    """A desk case was opened, noted, answered, closed or found overdue."""

    case_id: int
    ticket_id: int
    """The ticket the visitor follows (their visit's desk ticket, or the one escalated)."""
    status: str
    change: str


@dataclass(frozen=True)
class CounterEvent(Event):
    counter_id: int
    clerk_id: int | None


@dataclass(frozen=True)
class CounterOpened(CounterEvent):
    pass


@dataclass(frozen=True)
class CounterPaused(CounterEvent):
    pass


@dataclass(frozen=True)
class CounterClosed(CounterEvent):
    pass


@dataclass(frozen=True)
class HallNoticeChanged(Event):
    notice: str


@dataclass(frozen=True)
class PrintJobEvent(Event):
    job_id: int
    printer_id: int
    ticket_id: int


@dataclass(frozen=True)
class PrintJobQueued(PrintJobEvent):
    pass


@dataclass(frozen=True)
class PrintJobPrinted(PrintJobEvent):
    pass


@dataclass(frozen=True)
class PrintJobFailed(PrintJobEvent):
    detail: str


@dataclass(frozen=True)
class PrinterStatusChanged(Event):
    printer_id: int
    connected: bool
    problem: str | None


@dataclass(frozen=True)
class ServiceRated(Event):
    ticket_id: int
    service_id: int
    counter_id: int | None
    stars: int
