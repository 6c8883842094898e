"""A clerk's answer is read with the lock the counter command takes, not by a statement of
its own: on SQLite and PostgreSQL it says what the ticket's view read from the database
after the commit says, for a walk-in and for a booked visitor, through every step. On
PostgreSQL the ticket's change is written by the statement that writes its events."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import event

from booking.checkin import CheckIn, check_in
from booking.service import BookSlot, book_slot
from queue_server.clock import FixedClock
from queue_server.domain.model import Outcome
from queue_server.service import accounts, commands, hall_config, views
from queue_server.service.bus import Bus
from queue_server.service.views import TicketView
from tests.support import bookable_matter

PHONE = "13800138000"


class Statements:
    """The SQL statements sent through the bus's engine (their text)."""

    def __init__(self, bus: Bus) -> None:
        self.sent: list[str] = []
        engine = bus.sessions.kw["bind"].sync_engine
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.sent.append(" ".join(statement.split()))

    def reading_a_view(self) -> list[str]:
        """Statements that read a ticket's view (its matter, visit and hall joined)."""
        return [s for s in self.sent if "JOIN visits" in s and "JOIN halls" in s]


async def answered(bus: Bus, command: object) -> tuple[int | None, TicketView | None]:
    result, view = await bus.execute_answered(command, views.settled_ticket_view)
    ticket_id = result if isinstance(result, int) else result.ticket_id
    return ticket_id, view


async def desk(bus: Bus, hall_id: int, matter_id: int) -> tuple[int, int]:
    counter = await bus.run(hall_config.create_counter, hall_id, 1, "c1", [(matter_id, "primary")])
    clerk = await bus.run(
        accounts.create_user, "clerk1", "clerk-password", accounts.Role.CLERK, hall_id
    )
    await bus.execute(commands.OpenCounter(counter.id, clerk.id))
    return counter.id, clerk.id


async def test_every_answer_says_what_the_view_read_after_the_commit_says(
    bus: Bus, clock: FixedClock, database_url: str
) -> None:
    hall_id, matter_id = await bookable_matter(bus, capacity=4)
    counter_id, clerk_id = await desk(bus, hall_id, matter_id)
    start = clock.now().replace(minute=30, second=0, microsecond=0) + timedelta(hours=1)
    booked = await bus.run(book_slot, BookSlot(hall_id, matter_id, start, "王小明", PHONE, "123X"))
    clock.set(start - timedelta(minutes=10))
    actor = commands.Actor(user_id=None)
    appointment = await bus.run(check_in, CheckIn(hall_id, actor, code=booked.code))
    walk_in = await bus.execute(commands.IssueTicket(hall_id, matter_id, actor=actor))
    statements = Statements(bus)

    # A clerk calling a given ticket out of turn (rare) has its answer read as before.
    await answered(bus, commands.CallTicket(counter_id, clerk_id, walk_in))
    steps: list[object] = [
        commands.Recall(counter_id, clerk_id),
        commands.MarkNoShow(counter_id, clerk_id),
        commands.CallNext(counter_id, clerk_id),  # the appointment, the only one waiting
        commands.ReturnToQueue(counter_id, clerk_id),
        commands.CallNext(counter_id, clerk_id),
        commands.StartService(counter_id, clerk_id),
        commands.FinishService(counter_id, clerk_id, Outcome.DONE, None, (), False, None),
    ]
    told_from_lock = 0
    for step in steps:
        statements.sent.clear()
        ticket_id, view = await answered(bus, step)
        assert ticket_id is not None
        view_reads = statements.reading_a_view()
        alone = [s for s in statements.sent if s.startswith("UPDATE tickets")]
        read = await bus.run(views.ticket_view, ticket_id)
        if view is None:  # back in the queue: its wait is told after the commit
            assert read.state == "waiting", step
            continue
        assert view == read, step
        assert view_reads == [], step
        if database_url.startswith("postgresql"):
            # The ticket's change went in the statement that writes its events.
            assert alone == [], step
            assert any(s.startswith("WITH changed AS (UPDATE tickets") for s in statements.sent)
        told_from_lock += 1
    assert told_from_lock == 6
    # The booked visitor's answers carried the booking, as the clerk must see it.
    assert read.id == appointment and read.state == "done" and read.booking is not None
    assert read.booking.code == booked.code and read.booking.phone == "138****8000"


async def test_a_not_done_outcome_is_answered_with_its_case_read_from_the_database(
    bus: Bus, clock: FixedClock
) -> None:
    hall_id, matter_id = await bookable_matter(bus, capacity=4)
    counter_id, clerk_id = await desk(bus, hall_id, matter_id)
    actor = commands.Actor(user_id=None)
    ticket = await bus.execute(commands.IssueTicket(hall_id, matter_id, actor=actor))
    await bus.execute(commands.CallNext(counter_id, clerk_id))
    await bus.execute(commands.StartService(counter_id, clerk_id))
    statements = Statements(bus)
    finish = commands.FinishService(
        counter_id, clerk_id, Outcome.OTHER, "the stamp is missing", (), False, None
    )
    ticket_id, view = await answered(bus, finish)
    # Not done: the view shows what was not done, read with the ticket's case.
    assert len(statements.reading_a_view()) == 1
    assert ticket_id == ticket and view is not None and view.outcome == "other"
    assert view == await bus.run(views.ticket_view, ticket)
