"""The hall's entities: halls, matters (services), counters, visits and tickets.

Each state change is a method that checks the current state, changes it, and records an
event in ``events``; anything the state does not allow raises ``IllegalTransition``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from . import events as ev
from .errors import DomainError, HallClosed, IllegalTransition, InvalidOutcome, UnknownPriority
from .hours import OpeningHours


class TicketState(StrEnum):
    WAITING = "waiting"
    CALLED = "called"
    SERVING = "serving"
    DONE = "done"
    NO_SHOW = "no_show"
    TRANSFERRED = "transferred"
    CANCELLED = "cancelled"


ACTIVE_STATES = frozenset({TicketState.CALLED, TicketState.SERVING})
FINAL_STATES = frozenset(
    {TicketState.DONE, TicketState.NO_SHOW, TicketState.TRANSFERRED, TicketState.CANCELLED}
)


class TicketKind(StrEnum):
    WALK_IN = "walk_in"
    APPOINTMENT = "appointment"
    REMOTE = "remote"
    TRANSFER = "transfer"
    ESCALATION = "escalation"


class Outcome(StrEnum):
    """How a service ended: done, or why the visitor could not get the matter done."""

    DONE = "done"
    MISSING_DOCUMENTS = "missing_documents"
    """Names which of the matter's documents were missing (``Ticket.missing_documents``)."""
    OTHER_DEPARTMENT = "other_department"
    """The matter needs another department first."""
    SYSTEM_PROBLEM = "system_problem"
    """A system or policy problem kept the clerk from doing it."""
    VISITOR_LEFT = "visitor_left"
    NEEDS_ESCALATION = "needs_escalation"
    OTHER = "other"
    """Needs a note saying what happened."""
    DAY_CLOSED = "day_closed"
    """Not served before the day was closed; recorded by the day-close job, never a clerk."""


CLERK_OUTCOMES = tuple(o for o in Outcome if o != Outcome.DAY_CLOSED)
"""What a clerk (or a manager correcting it) may record."""
NOT_DONE = frozenset(CLERK_OUTCOMES) - {Outcome.DONE}
"""Outcomes a visitor did not get their matter done with: each can go to the hall's desk."""


def check_outcome(
    outcome: Outcome, note: str | None, missing: Sequence[str], documents: Sequence[str]
) -> tuple[str, ...]:
    """The missing documents to record with ``outcome``, or ``InvalidOutcome`` saying what to fix:
    ``missing_documents`` names at least one document of the matter's list and only those;
    ``other`` needs a note; a clerk never records ``day_closed``."""
    if outcome not in CLERK_OUTCOMES:
        raise InvalidOutcome(
            "outcome", f"outcome {str(outcome)!r} is recorded by the day close, not by staff"
        )
    if outcome == Outcome.OTHER and not (note and note.strip()):
        raise InvalidOutcome("note", "outcome 'other' needs a note saying what happened")
    names = tuple(dict.fromkeys(m.strip() for m in missing if m.strip()))
    if outcome != Outcome.MISSING_DOCUMENTS:
        if names:
            raise InvalidOutcome(
                "missing_documents",
                "missing documents are named only with the outcome 'missing_documents'",
            )
        return ()
    if not names:
        if documents:
            raise InvalidOutcome(
                "missing_documents",
                "outcome 'missing_documents' needs the missing ones named, from the matter's "
                "list: " + "; ".join(documents),
            )
        if not (note and note.strip()):
            raise InvalidOutcome(
                "note", "this matter lists no documents: say in the note which ones were missing"
            )
        return ()
    unknown = [n for n in names if n not in documents]
    if unknown:
        listed = "; ".join(documents) if documents else "none"
        raise InvalidOutcome(
            "missing_documents",
            f"{', '.join(repr(u) for u in unknown)} is not in the matter's list of documents "
            f"(it lists: {listed})",
        )
    return names


class ServiceLevel(StrEnum):
    PRIMARY = "primary"
    SECONDARY = "secondary"


class CounterState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    PAUSED = "paused"


NO_PRIORITY = "none"
# Built-in priority classes and how many minutes of waiting each is worth in the queue
# (25: what the standard simulated days need for priority visitors to wait half as long;
# docs/queue.md).
DEFAULT_PRIORITY_BOOSTS: Mapping[str, int] = {"elderly": 25, "disability": 25, "pregnancy": 25}
PREFIX_PATTERN = re.compile(r"^[A-Z]{1,2}$")


def format_number(prefix: str, seq: int) -> str:
    """The printed and announced number: prefix then at least three digits (``A001``)."""
    return f"{prefix}{seq:03d}"


@dataclass
class Hall:
    id: int
    name_zh: str
    name_en: str
    timezone: str
    opening_hours: OpeningHours
    priority_boosts: Mapping[str, int] = field(
        default_factory=lambda: dict(DEFAULT_PRIORITY_BOOSTS)
    )
    secondary_after_minutes: int = 20

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def check_priority(self, priority: str) -> str:
        """Return ``priority`` if the hall knows it, else raise ``UnknownPriority``."""
        if priority != NO_PRIORITY and priority not in self.priority_boosts:
            known = ", ".join([NO_PRIORITY, *sorted(self.priority_boosts)])
            raise UnknownPriority(f"unknown priority class {priority!r}; use one of: {known}")
        return priority

    def check_open(self, now: datetime) -> None:
        """Raise ``HallClosed`` (saying when it opens) unless the hall is open at ``now``."""
        local = now.astimezone(self.tz)
        if self.opening_hours.is_open(local):
            return
        reopens = self.opening_hours.next_opening(local)
        when = f"; it opens {reopens:%a %Y-%m-%d %H:%M}" if reopens else ""
        raise HallClosed(f"the hall is closed now ({local:%H:%M} {self.timezone}){when}")


@dataclass
class Service:
    """A matter a visitor comes to get done (事项)."""

    id: int
    hall_id: int
    name_zh: str
    name_en: str
    prefix: str
    typical_minutes: int
    documents: list[str] = field(default_factory=list)
    active: bool = True
    desk: bool = False
    """The hall's "can't get it done" desk (办不成事反映窗口): escalated visits queue here."""


@dataclass
class Counter:
    """A counter (窗口) and the matters it serves, each at a level."""

    id: int
    hall_id: int
    number: int
    name: str
    profile: dict[int, ServiceLevel] = field(default_factory=dict)
    state: CounterState = CounterState.CLOSED
    clerk_id: int | None = None
    events: list[ev.Event] = field(default_factory=list, repr=False, compare=False)

    @property
    def label(self) -> str:
        return f"counter {self.number}"

    def open(self, clerk_id: int, now: datetime) -> None:
        """Sign ``clerk_id`` in and open for calls; a counter held by another clerk refuses."""
        if self.state != CounterState.CLOSED and self.clerk_id not in (None, clerk_id):
            raise IllegalTransition(
                self.label, "open", f"{self.state} by another clerk", "they must close it first"
            )
        if self.state == CounterState.OPEN and self.clerk_id == clerk_id:
            raise IllegalTransition(self.label, "open", "already open")
        self.state = CounterState.OPEN
        self.clerk_id = clerk_id
        self.events.append(ev.CounterOpened(self.hall_id, now, self.id, clerk_id))

    def pause(self, now: datetime) -> None:
        if self.state != CounterState.OPEN:
            raise IllegalTransition(self.label, "pause", str(self.state))
        self.state = CounterState.PAUSED
        self.events.append(ev.CounterPaused(self.hall_id, now, self.id, self.clerk_id))

    def close(self, now: datetime) -> None:
        if self.state == CounterState.CLOSED:
            raise IllegalTransition(self.label, "close", str(self.state))
        clerk_id, self.clerk_id = self.clerk_id, None
        self.state = CounterState.CLOSED
        self.events.append(ev.CounterClosed(self.hall_id, now, self.id, clerk_id))

    def check_can_call(self) -> None:
        if self.state != CounterState.OPEN:
            raise IllegalTransition(self.label, "call at", str(self.state), "open it first")


@dataclass
class Ticket:
    """One queue entry of a visit, for one matter. ``number`` is what the board shows."""

    hall_id: int
    visit_id: int
    service_id: int
    number: str
    business_day: date
    kind: TicketKind
    priority: str
    issued_at: datetime
    queued_at: datetime
    id: int | None = None
    state: TicketState = TicketState.WAITING
    due_at: datetime | None = None
    counter_id: int | None = None
    clerk_id: int | None = None
    called_at: datetime | None = None
    call_count: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outcome: Outcome | None = None
    note: str | None = None
    missing_documents: tuple[str, ...] = ()
    origin_ticket_id: int | None = None
    """For an escalation: the ticket whose matter was not done."""
    events: list[ev.Event] = field(default_factory=list, repr=False, compare=False)

    @property
    def label(self) -> str:
        return f"ticket {self.number}"

    @property
    def ref(self) -> int:
        """The stored ticket's id; state changes apply only to stored tickets."""
        if self.id is None:
            raise DomainError(f"{self.label} has not been stored yet")
        return self.id

    def _require(self, action: str, *allowed: TicketState) -> None:
        self.ref  # noqa: B018 - an unstored ticket is refused before anything changes
        if self.state not in allowed:
            raise IllegalTransition(self.label, action, str(self.state))

    def _require_counter(self, action: str, counter_id: int) -> int:
        if self.counter_id != counter_id:
            raise IllegalTransition(
                self.label, action, f"{self.state} at another counter", "only that counter can"
            )
        return counter_id

    def call(self, counter_id: int, clerk_id: int | None, now: datetime, reason: str) -> None:
        """Call this waiting ticket to ``counter_id``."""
        self._require("call", TicketState.WAITING)
        self.state = TicketState.CALLED
        self.counter_id, self.clerk_id = counter_id, clerk_id
        self.called_at = now
        self.call_count = 1
        self.events.append(
            ev.TicketCalled(
                self.hall_id, now, self.ref, self.number, self.service_id, counter_id, reason
            )
        )

    def recall(self, counter_id: int, now: datetime) -> None:
        """Announce the call again (the visitor has not come yet)."""
        self._require("recall", TicketState.CALLED)
        self._require_counter("recall", counter_id)
        self.call_count += 1
        self.called_at = now
        self.events.append(
            ev.TicketRecalled(
                self.hall_id,
                now,
                self.ref,
                self.number,
                self.service_id,
                counter_id,
                self.call_count,
            )
        )

    def return_to_queue(self, counter_id: int, now: datetime) -> None:
        """Put a called ticket back in the queue at its old place (``queued_at`` is kept)."""
        self._require("return to the queue", TicketState.CALLED)
        self._require_counter("return to the queue", counter_id)
        self.state = TicketState.WAITING
        self.counter_id = self.clerk_id = None
        self.called_at = None
        self.call_count = 0
        self.events.append(
            ev.TicketReturnedToQueue(
                self.hall_id, now, self.ref, self.number, self.service_id, counter_id
            )
        )

    def mark_no_show(self, counter_id: int, now: datetime) -> None:
        self._require("mark as no-show", TicketState.CALLED)
        self._require_counter("mark as no-show", counter_id)
        self.state = TicketState.NO_SHOW
        self.finished_at = now
        self.events.append(
            ev.TicketMarkedNoShow(
                self.hall_id, now, self.ref, self.number, self.service_id, counter_id
            )
        )

    def start(self, counter_id: int, now: datetime) -> None:
        """The visitor has arrived at the counter: service begins."""
        self._require("start serving", TicketState.CALLED)
        self._require_counter("start serving", counter_id)
        self.state = TicketState.SERVING
        self.started_at = now
        self.events.append(
            ev.ServiceStarted(self.hall_id, now, self.ref, self.number, self.service_id, counter_id)
        )

    def finish(
        self,
        counter_id: int,
        outcome: Outcome,
        note: str | None,
        now: datetime,
        missing: Sequence[str] = (),
        documents: Sequence[str] = (),
    ) -> None:
        """Service ended with ``outcome`` (``check_outcome`` says what each one needs)."""
        self._require("finish", TicketState.SERVING)
        self._require_counter("finish", counter_id)
        self.missing_documents = check_outcome(outcome, note, missing, documents)
        self.state = TicketState.DONE
        self.outcome = outcome
        self.note = note
        self.finished_at = now
        self.events.append(
            ev.ServiceFinished(
                self.hall_id, now, self.ref, self.number, self.service_id, counter_id, outcome
            )
        )

    def transfer(
        self, counter_id: int, to_service: Service, note: str | None, now: datetime
    ) -> Ticket:
        """End this ticket as transferred and return the visit's next ticket for ``to_service``.

        The new ticket keeps the visit's number and joins the target queue as a continuing
        visit, so it is not sent to the back.
        """
        self._require("transfer", TicketState.CALLED, TicketState.SERVING)
        self._require_counter("transfer", counter_id)
        if to_service.id == self.service_id:
            raise DomainError("transfer needs a different matter than the current one")
        if to_service.hall_id != self.hall_id:
            raise DomainError("transfer is only possible to a matter of the same hall")
        if not to_service.active:
            raise DomainError(f"matter {to_service.name_en} is inactive; choose another")
        self.state = TicketState.TRANSFERRED
        self.finished_at = now
        self.note = note
        self.events.append(
            ev.TicketTransferred(
                self.hall_id, now, self.ref, self.number, self.service_id, counter_id, to_service.id
            )
        )
        return self._continued(to_service.id, TicketKind.TRANSFER, now)

    def _continued(self, service_id: int, kind: TicketKind, now: datetime) -> Ticket:
        """The visit's next ticket (a transfer's or an escalation's): the same number and
        priority, queued from ``now`` as a continuing visit."""
        return Ticket(
            hall_id=self.hall_id,
            visit_id=self.visit_id,
            service_id=service_id,
            number=self.number,
            business_day=self.business_day,
            kind=kind,
            priority=self.priority,
            issued_at=now,
            queued_at=now,
            origin_ticket_id=self.ref if kind == TicketKind.ESCALATION else None,
        )

    def escalate(self, desk: Service, now: datetime) -> Ticket:
        """Send the visit of this finished, not-done ticket on to the hall's desk: the new
        ticket keeps the number and queues there as a continuing visit (not from the start)."""
        if self.state != TicketState.DONE or self.outcome not in NOT_DONE:
            raise IllegalTransition(
                self.label, "escalate", f"{self.state} ({self.outcome or 'no outcome'})",
                "only a service finished with an outcome other than done can go to the desk",
            )  # fmt: skip
        if not desk.desk or desk.hall_id != self.hall_id:
            raise DomainError("escalation goes to the hall's can't-get-it-done desk only")
        if desk.id == self.service_id:
            raise DomainError(f"{self.label} was served at the desk already")
        if not desk.active:
            raise DomainError("the hall's desk is inactive; activate its matter first")
        self.events.append(
            ev.TicketEscalated(self.hall_id, now, self.ref, self.number, self.service_id, desk.id)
        )
        return self._continued(desk.id, TicketKind.ESCALATION, now)

    def cancel(self, now: datetime) -> None:
        """The visitor gave up (or staff cancelled): only a waiting or called ticket can be."""
        self._require("cancel", TicketState.WAITING, TicketState.CALLED)
        self.state = TicketState.CANCELLED
        self.finished_at = now
        self.events.append(
            ev.TicketCancelled(self.hall_id, now, self.ref, self.number, self.service_id)
        )

    def close_unserved(self, now: datetime) -> None:
        """The day closed with this ticket still waiting or called: it ends cancelled with
        the outcome ``day_closed``, so the day's figures say who was not served."""
        self._require("close at the end of the day", TicketState.WAITING, TicketState.CALLED)
        self.state = TicketState.CANCELLED
        self.outcome = Outcome.DAY_CLOSED
        self.finished_at = now
        self.events.append(
            ev.TicketCancelled(self.hall_id, now, self.ref, self.number, self.service_id)
        )

    def waited(self, now: datetime) -> timedelta:
        """How long this ticket has been in its current queue."""
        return now - self.queued_at
