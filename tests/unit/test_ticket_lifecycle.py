"""A ticket's life at the counter: every transition, its event, and every refusal."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from queue_server.domain import events as ev
from queue_server.domain.errors import DomainError, IllegalTransition
from queue_server.domain.model import (
    FINAL_STATES,
    Outcome,
    Service,
    Ticket,
    TicketKind,
    TicketState,
)

HALL = 1
OTHER_HALL = 2
COUNTER = 5
OTHER_COUNTER = 6
CLERK = 42
TICKET_ID = 100
ISSUED = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
CALLED_AT = ISSUED + timedelta(minutes=12)
LATER = ISSUED + timedelta(minutes=20)

PASSPORT = Service(10, HALL, "出入境", "Passports", "A", 10)
RESIDENCE = Service(11, HALL, "户籍", "Residence", "B", 8)
ELSEWHERE = Service(12, OTHER_HALL, "户籍", "Residence", "B", 8)


def waiting_ticket() -> Ticket:
    """Ticket A023 of visit 7, for passports, stored and waiting since 10:00."""
    return Ticket(
        hall_id=HALL,
        visit_id=7,
        service_id=PASSPORT.id,
        number="A023",
        business_day=date(2026, 3, 2),
        kind=TicketKind.WALK_IN,
        priority="elderly",
        issued_at=ISSUED,
        queued_at=ISSUED,
        id=TICKET_ID,
    )


def ticket_in(state: TicketState) -> Ticket:
    """A stored ticket driven to ``state`` through legal transitions at ``COUNTER``."""
    ticket = waiting_ticket()
    if state == TicketState.WAITING:
        return ticket
    if state == TicketState.CANCELLED:
        ticket.cancel(CALLED_AT)
        return ticket
    ticket.call(COUNTER, CLERK, CALLED_AT, "longest wait 12 min")
    if state == TicketState.NO_SHOW:
        ticket.mark_no_show(COUNTER, CALLED_AT)
    elif state in (TicketState.SERVING, TicketState.DONE):
        ticket.start(COUNTER, CALLED_AT)
        if state == TicketState.DONE:
            ticket.finish(COUNTER, Outcome.DONE, None, CALLED_AT)
    elif state == TicketState.TRANSFERRED:
        ticket.transfer(COUNTER, RESIDENCE, None, CALLED_AT)
    assert ticket.state == state
    return ticket


def new_events(ticket: Ticket, action: Callable[[], object]) -> list[ev.Event]:
    before = len(ticket.events)
    action()
    return ticket.events[before:]


# --- legal transitions --------------------------------------------------------------------


def test_call_sends_a_waiting_ticket_to_the_counter() -> None:
    ticket = waiting_ticket()

    recorded = new_events(
        ticket, lambda: ticket.call(COUNTER, CLERK, CALLED_AT, "priority: elderly")
    )

    assert ticket.state == TicketState.CALLED
    assert (ticket.counter_id, ticket.clerk_id) == (COUNTER, CLERK)
    assert ticket.called_at == CALLED_AT
    assert ticket.call_count == 1
    assert recorded == [
        ev.TicketCalled(HALL, CALLED_AT, TICKET_ID, "A023", 10, COUNTER, "priority: elderly")
    ]


def test_recall_announces_again_and_counts_the_calls() -> None:
    ticket = ticket_in(TicketState.CALLED)

    first = new_events(ticket, lambda: ticket.recall(COUNTER, LATER))
    second = new_events(ticket, lambda: ticket.recall(COUNTER, LATER + timedelta(minutes=1)))

    assert ticket.state == TicketState.CALLED
    assert ticket.counter_id == COUNTER
    assert ticket.call_count == 3
    assert ticket.called_at == LATER + timedelta(minutes=1)
    assert first == [ev.TicketRecalled(HALL, LATER, TICKET_ID, "A023", 10, COUNTER, 2)]
    assert second == [
        ev.TicketRecalled(HALL, LATER + timedelta(minutes=1), TICKET_ID, "A023", 10, COUNTER, 3)
    ]


def test_return_to_queue_keeps_the_old_place_and_frees_the_counter() -> None:
    ticket = ticket_in(TicketState.CALLED)
    ticket.recall(COUNTER, LATER)

    recorded = new_events(ticket, lambda: ticket.return_to_queue(COUNTER, LATER))

    assert ticket.state == TicketState.WAITING
    assert ticket.queued_at == ISSUED
    assert (ticket.counter_id, ticket.clerk_id, ticket.called_at) == (None, None, None)
    assert ticket.call_count == 0
    assert recorded == [ev.TicketReturnedToQueue(HALL, LATER, TICKET_ID, "A023", 10, COUNTER)]


def test_a_ticket_returned_to_the_queue_can_be_called_again_elsewhere() -> None:
    ticket = ticket_in(TicketState.CALLED)
    ticket.return_to_queue(COUNTER, LATER)

    ticket.call(OTHER_COUNTER, None, LATER, "longest wait 20 min")

    assert (ticket.state, ticket.counter_id, ticket.call_count) == (
        TicketState.CALLED,
        OTHER_COUNTER,
        1,
    )


def test_mark_no_show_ends_the_ticket() -> None:
    ticket = ticket_in(TicketState.CALLED)

    recorded = new_events(ticket, lambda: ticket.mark_no_show(COUNTER, LATER))

    assert ticket.state == TicketState.NO_SHOW
    assert ticket.finished_at == LATER
    assert recorded == [ev.TicketMarkedNoShow(HALL, LATER, TICKET_ID, "A023", 10, COUNTER)]


def test_start_begins_service() -> None:
    ticket = ticket_in(TicketState.CALLED)

    recorded = new_events(ticket, lambda: ticket.start(COUNTER, LATER))

    assert ticket.state == TicketState.SERVING
    assert ticket.started_at == LATER
    assert ticket.counter_id == COUNTER
    assert recorded == [ev.ServiceStarted(HALL, LATER, TICKET_ID, "A023", 10, COUNTER)]


@pytest.mark.parametrize(
    ("outcome", "note"),
    [
        (Outcome.DONE, None),
        (Outcome.MISSING_DOCUMENTS, "bring the household register"),
        (Outcome.NEEDS_ESCALATION, None),
        (Outcome.OTHER, "visitor left to fetch the original ID card"),
    ],
)
def test_finish_records_the_outcome(outcome: Outcome, note: str | None) -> None:
    ticket = ticket_in(TicketState.SERVING)

    recorded = new_events(ticket, lambda: ticket.finish(COUNTER, outcome, note, LATER))

    assert ticket.state == TicketState.DONE
    assert ticket.outcome == outcome
    assert ticket.note == note
    assert ticket.finished_at == LATER
    assert recorded == [
        ev.ServiceFinished(HALL, LATER, TICKET_ID, "A023", 10, COUNTER, outcome.value)
    ]
    assert recorded[0].payload()["outcome"] == outcome.value


@pytest.mark.parametrize("note", [None, "", "   "])
def test_finish_with_other_needs_a_note(note: str | None) -> None:
    ticket = ticket_in(TicketState.SERVING)
    before = copy.deepcopy(ticket)

    with pytest.raises(DomainError, match="needs a note"):
        ticket.finish(COUNTER, Outcome.OTHER, note, LATER)

    assert ticket == before
    assert len(ticket.events) == len(before.events)


@pytest.mark.parametrize("state", [TicketState.CALLED, TicketState.SERVING])
def test_transfer_continues_the_visit_under_the_same_number(state: TicketState) -> None:
    ticket = ticket_in(state)

    recorded = new_events(
        ticket, lambda: ticket.transfer(COUNTER, RESIDENCE, "needs hukou first", LATER)
    )

    assert ticket.state == TicketState.TRANSFERRED
    assert ticket.finished_at == LATER
    assert ticket.note == "needs hukou first"
    assert recorded == [ev.TicketTransferred(HALL, LATER, TICKET_ID, "A023", 10, COUNTER, 11)]


def test_transfer_returns_the_visits_next_ticket() -> None:
    ticket = ticket_in(TicketState.SERVING)

    nxt = ticket.transfer(COUNTER, RESIDENCE, None, LATER)

    assert nxt.number == "A023"
    assert nxt.visit_id == ticket.visit_id
    assert nxt.kind == TicketKind.TRANSFER
    assert nxt.service_id == RESIDENCE.id
    assert nxt.hall_id == HALL
    assert nxt.state == TicketState.WAITING
    assert nxt.priority == "elderly"
    assert nxt.business_day == ticket.business_day
    assert (nxt.issued_at, nxt.queued_at) == (LATER, LATER)
    assert (nxt.counter_id, nxt.clerk_id, nxt.called_at, nxt.id) == (None, None, None, None)
    assert nxt.events == []


@pytest.mark.parametrize(
    ("target", "message"),
    [(PASSPORT, "different matter"), (ELSEWHERE, "same hall")],
    ids=["same-matter", "other-hall"],
)
def test_transfer_refuses_the_same_matter_or_another_halls(target: Service, message: str) -> None:
    ticket = ticket_in(TicketState.SERVING)
    before = copy.deepcopy(ticket)

    with pytest.raises(DomainError, match=message):
        ticket.transfer(COUNTER, target, None, LATER)

    assert ticket == before
    assert len(ticket.events) == len(before.events)


@pytest.mark.parametrize("state", [TicketState.WAITING, TicketState.CALLED])
def test_cancel_ends_a_waiting_or_called_ticket(state: TicketState) -> None:
    ticket = ticket_in(state)

    recorded = new_events(ticket, lambda: ticket.cancel(LATER))

    assert ticket.state == TicketState.CANCELLED
    assert ticket.finished_at == LATER
    assert recorded == [ev.TicketCancelled(HALL, LATER, TICKET_ID, "A023", 10)]


@pytest.mark.parametrize("state", [TicketState.WAITING, TicketState.CALLED])
def test_closing_the_day_records_who_was_not_served(state: TicketState) -> None:
    ticket = ticket_in(state)

    recorded = new_events(ticket, lambda: ticket.close_unserved(LATER))

    assert (ticket.state, ticket.outcome) == (TicketState.CANCELLED, Outcome.DAY_CLOSED)
    assert ticket.finished_at == LATER
    assert recorded == [ev.TicketCancelled(HALL, LATER, TICKET_ID, "A023", 10)]


# --- refusals -----------------------------------------------------------------------------

Action = Callable[[Ticket, int], object]

ACTIONS: dict[str, Action] = {
    "call": lambda t, c: t.call(c, CLERK, LATER, "longest wait 20 min"),
    "recall": lambda t, c: t.recall(c, LATER),
    "return_to_queue": lambda t, c: t.return_to_queue(c, LATER),
    "mark_no_show": lambda t, c: t.mark_no_show(c, LATER),
    "start": lambda t, c: t.start(c, LATER),
    "finish": lambda t, c: t.finish(c, Outcome.DONE, None, LATER),
    "transfer": lambda t, c: t.transfer(c, RESIDENCE, None, LATER),
    "cancel": lambda t, c: t.cancel(LATER),
    "close_unserved": lambda t, c: t.close_unserved(LATER),
}

# What the hall allows, written down independently of model.py.
ALLOWED: dict[TicketState, frozenset[str]] = {
    TicketState.WAITING: frozenset({"call", "cancel", "close_unserved"}),
    TicketState.CALLED: frozenset(
        {
            "recall",
            "return_to_queue",
            "mark_no_show",
            "start",
            "transfer",
            "cancel",
            "close_unserved",
        }
    ),
    TicketState.SERVING: frozenset({"finish", "transfer"}),
    TicketState.DONE: frozenset(),
    TicketState.NO_SHOW: frozenset(),
    TicketState.TRANSFERRED: frozenset(),
    TicketState.CANCELLED: frozenset(),
}
# Only the counter the ticket was called to may do these.
COUNTER_ONLY = frozenset(
    {"recall", "return_to_queue", "mark_no_show", "start", "finish", "transfer"}
)
NEXT_STATE: dict[str, TicketState] = {
    "call": TicketState.CALLED,
    "recall": TicketState.CALLED,
    "return_to_queue": TicketState.WAITING,
    "mark_no_show": TicketState.NO_SHOW,
    "start": TicketState.SERVING,
    "finish": TicketState.DONE,
    "transfer": TicketState.TRANSFERRED,
    "cancel": TicketState.CANCELLED,
    "close_unserved": TicketState.CANCELLED,
}

ILLEGAL = [
    (state, action) for state in TicketState for action in ACTIONS if action not in ALLOWED[state]
]
FROM_ELSEWHERE = [
    (state, action) for state in TicketState for action in ALLOWED[state] & COUNTER_ONLY
]


def test_the_table_covers_every_state() -> None:
    assert set(ALLOWED) == set(TicketState)
    assert {s for s, allowed in ALLOWED.items() if not allowed} == FINAL_STATES


@pytest.mark.parametrize(("state", "action"), ILLEGAL, ids=[f"{s}-{a}" for s, a in ILLEGAL])
def test_an_illegal_transition_is_refused_naming_the_state(state: TicketState, action: str) -> None:
    ticket = ticket_in(state)
    before = copy.deepcopy(ticket)

    with pytest.raises(IllegalTransition) as refused:
        ACTIONS[action](ticket, COUNTER)

    assert f"it is {state.value}" in str(refused.value)
    assert "A023" in str(refused.value)
    assert refused.value.state == state.value
    assert ticket == before
    assert len(ticket.events) == len(before.events)


@pytest.mark.parametrize(
    ("state", "action"), FROM_ELSEWHERE, ids=[f"{s}-{a}" for s, a in FROM_ELSEWHERE]
)
def test_another_counter_cannot_act_on_a_called_ticket(state: TicketState, action: str) -> None:
    ticket = ticket_in(state)
    before = copy.deepcopy(ticket)

    with pytest.raises(IllegalTransition) as refused:
        ACTIONS[action](ticket, OTHER_COUNTER)

    assert f"it is {state.value} at another counter" in str(refused.value)
    assert ticket == before
    assert len(ticket.events) == len(before.events)


@pytest.mark.parametrize("action", ["call", "cancel"])
def test_an_unstored_ticket_is_refused_without_changing(action: str) -> None:
    ticket = ticket_in(TicketState.SERVING).transfer(COUNTER, RESIDENCE, None, LATER)
    assert ticket.id is None

    with pytest.raises(DomainError, match="not been stored"):
        ACTIONS[action](ticket, OTHER_COUNTER)

    assert ticket.state == TicketState.WAITING
    assert ticket.events == []


# --- any sequence of actions --------------------------------------------------------------

COUNTERS = st.sampled_from([COUNTER, OTHER_COUNTER])
NOTES = st.sampled_from([None, "", "  ", "visitor will come back tomorrow"])
TARGETS = st.sampled_from([RESIDENCE, PASSPORT, ELSEWHERE])


class TicketMachine(RuleBasedStateMachine):
    """One ticket, two counters, random actions; a table predicts each answer.

    Once the ticket has ended (and has been tried for a while in its final state), the next
    visitor's ticket may take its place.
    """

    @initialize()
    def issue(self) -> None:
        self.ticket = waiting_ticket()
        self.transitions = 0
        self.ended_in: TicketState | None = None

    @precondition(lambda self: self.ended_in is not None)
    @rule()
    def next_visitor(self) -> None:
        """Most random runs end a ticket early; a fresh one explores the later states too."""
        self.issue()

    def attempt(
        self, action: str, counter_id: int, run: Callable[[], object], valid: bool = True
    ) -> None:
        ticket = self.ticket
        state_allows = action in ALLOWED[ticket.state]
        counter_allows = action not in COUNTER_ONLY or ticket.counter_id == counter_id
        before = copy.deepcopy(ticket)

        if state_allows and counter_allows and valid:
            run()
            self.transitions += 1
            assert ticket.state == NEXT_STATE[action]
            if ticket.state in FINAL_STATES:
                self.ended_in = ticket.state
            return

        expected = IllegalTransition if not (state_allows and counter_allows) else DomainError
        try:
            run()
        except DomainError as refused:
            # A refused state change is an IllegalTransition; a refused input (a missing
            # note, the same matter) another DomainError.
            assert isinstance(refused, IllegalTransition) == (expected is IllegalTransition)
            if not state_allows:
                assert f"it is {before.state.value}" in str(refused)
        else:
            raise AssertionError(f"{action} at counter {counter_id} in {before.state} passed")
        assert ticket == before
        assert len(ticket.events) == len(before.events)

    @rule(counter_id=COUNTERS)
    def call(self, counter_id: int) -> None:
        self.attempt("call", counter_id, lambda: self.ticket.call(counter_id, CLERK, LATER, "test"))

    @rule(counter_id=COUNTERS)
    def recall(self, counter_id: int) -> None:
        self.attempt("recall", counter_id, lambda: self.ticket.recall(counter_id, LATER))

    @rule(counter_id=COUNTERS)
    def return_to_queue(self, counter_id: int) -> None:
        self.attempt(
            "return_to_queue", counter_id, lambda: self.ticket.return_to_queue(counter_id, LATER)
        )

    @rule(counter_id=COUNTERS)
    def mark_no_show(self, counter_id: int) -> None:
        self.attempt(
            "mark_no_show", counter_id, lambda: self.ticket.mark_no_show(counter_id, LATER)
        )

    @rule(counter_id=COUNTERS)
    def start(self, counter_id: int) -> None:
        self.attempt("start", counter_id, lambda: self.ticket.start(counter_id, LATER))

    @rule(counter_id=COUNTERS, outcome=st.sampled_from(Outcome), note=NOTES)
    def finish(self, counter_id: int, outcome: Outcome, note: str | None) -> None:
        has_note = bool(note and note.strip())
        self.attempt(
            "finish",
            counter_id,
            lambda: self.ticket.finish(counter_id, outcome, note, LATER),
            # The matter here lists no documents: missing ones are said in the note.
            valid=outcome != Outcome.DAY_CLOSED
            and (outcome not in (Outcome.OTHER, Outcome.MISSING_DOCUMENTS) or has_note),
        )

    @rule(counter_id=COUNTERS, to_service=TARGETS)
    def transfer(self, counter_id: int, to_service: Service) -> None:
        self.attempt(
            "transfer",
            counter_id,
            lambda: self.ticket.transfer(counter_id, to_service, None, LATER),
            valid=to_service is RESIDENCE,
        )

    @rule(counter_id=COUNTERS)
    def cancel(self, counter_id: int) -> None:
        self.attempt("cancel", counter_id, lambda: self.ticket.cancel(LATER))

    @invariant()
    def a_final_state_never_changes(self) -> None:
        if self.ended_in is not None:
            assert self.ticket.state == self.ended_in

    @invariant()
    def a_called_ticket_has_a_counter_and_a_waiting_one_none(self) -> None:
        if self.ticket.state in (TicketState.CALLED, TicketState.SERVING):
            assert self.ticket.counter_id is not None
        if self.ticket.state == TicketState.WAITING:
            assert self.ticket.counter_id is None

    @invariant()
    def one_event_per_transition(self) -> None:
        assert len(self.ticket.events) == self.transitions


TicketMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=25)
TestTicketMachine = TicketMachine.TestCase


def test_transfer_refuses_an_inactive_matter() -> None:
    ticket = ticket_in(TicketState.SERVING)
    retired = Service(13, HALL, "旧事项", "Retired matter", "R", 5, active=False)

    with pytest.raises(DomainError, match="Retired matter is inactive"):
        ticket.transfer(COUNTER, retired, None, LATER)
    assert ticket.state == TicketState.SERVING
