"""A clerk's answer is read with the lock the counter command takes, not by a statement of
its own: on SQLite and PostgreSQL it says what the ticket's view read from the database
after the commit says, for a walk-in and for a booked visitor, through every step. On
PostgreSQL the ticket's change is written by the statement that writes its events."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event

from booking.checkin import CheckIn, check_in
from booking.service import BookSlot, book_slot
from queue_server.clock import FixedClock
from queue_server.domain.errors import DomainError, IllegalTransition
from queue_server.domain.model import Outcome
from queue_server.service import accounts, commands, hall_config, views
from queue_server.service.bus import Bus
from queue_server.service.errors import NotFound
from queue_server.service.views import TicketView
from tests.support import bookable_matter

PHONE = "13800138000"


ASYNCPG_OWN = (
    "SELECT current_setting('jit')",
    "WITH RECURSIVE typeinfo_tree",
    "SELECT set_config('jit'",
)
"""How asyncpg's own statements begin: it learns a type it has not met on a connection."""


class Statements:
    """The SQL statements sent through the bus's engine (their text, but BEGIN, COMMIT and
    ROLLBACK): SQLAlchemy's, and those sent on the driver's own connection (``db.driven``)."""

    def __init__(self, bus: Bus) -> None:
        self.sent: list[str] = []
        engine = bus.sessions.kw["bind"].sync_engine
        event.listen(engine, "before_cursor_execute", self._seen)
        event.listen(engine, "checkout", self._checked_out)

    def _seen(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.sent.append(" ".join(statement.split()))

    def _checked_out(self, dbapi_connection: Any, *args: Any) -> None:
        # asyncpg logs the statements sent on its connection by its own calls (the driver
        # path's), and SQLAlchemy's BEGIN and COMMIT, not SQLAlchemy's prepared ones.
        driver = getattr(dbapi_connection, "driver_connection", None)
        if hasattr(driver, "add_query_logger"):
            driver.add_query_logger(self._logged)

    def _logged(self, record: Any) -> None:
        text = " ".join(record.query.split())
        if text.upper() in ("BEGIN", "COMMIT", "ROLLBACK") or text.startswith(ASYNCPG_OWN):
            return
        self.sent.append(text)

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


async def test_a_call_and_a_no_show_read_the_counter_with_what_they_need_in_one_statement(
    bus: Bus, database_url: str
) -> None:
    """On PostgreSQL a call reads the counter's queue and whether it is busy in one
    statement, and an action on the current ticket reads the counter with its ticket in
    one and writes the change with its events in another: a call takes 4 statements, a
    no-show 2. On SQLite (no round trips) the checks
    stay statements of their own. Either way a busy counter refuses a call, and a counter
    with no current ticket refuses a no-show, with the same words."""
    hall_id, matter_id = await bookable_matter(bus, capacity=4)
    counter_id, clerk_id = await desk(bus, hall_id, matter_id)
    actor = commands.Actor(user_id=None)
    first = await bus.execute(commands.IssueTicket(hall_id, matter_id, actor=actor))
    await bus.execute(commands.IssueTicket(hall_id, matter_id, actor=actor))
    statements = Statements(bus)
    postgres = database_url.startswith("postgresql")

    called = await bus.execute(commands.CallNext(counter_id, clerk_id))
    assert called.ticket_id == first
    busy_checks = [s for s in statements.sent if "state IN ('called', 'serving')" in s]
    if postgres:
        assert len(statements.sent) == 4, statements.sent
        assert len(busy_checks) == 1 and "UNION ALL" in busy_checks[0]
    else:
        assert len(busy_checks) == 1 and "UNION ALL" not in busy_checks[0]
    with pytest.raises(IllegalTransition, match=r"busy with [A-Z]\d+ \(called\)"):
        await bus.execute(commands.CallNext(counter_id, clerk_id))

    statements.sent.clear()
    assert await bus.execute(commands.MarkNoShow(counter_id, clerk_id)) == first
    read = [s for s in statements.sent if s.startswith("SELECT")]
    if postgres:
        # Read without a lock; written only if the ticket is as it was read.
        assert len(statements.sent) == 2, statements.sent
        assert len(read) == 1 and "FOR UPDATE" not in read[0] and "JOIN tickets" in read[0]
        assert "state IS NOT DISTINCT FROM" in statements.sent[1]
    else:
        assert len(read) == 2  # the counter, then its ticket
    with pytest.raises(DomainError, match="has no current ticket; call one first"):
        await bus.execute(commands.MarkNoShow(counter_id, clerk_id))
    finish = commands.FinishService(counter_id, clerk_id, Outcome.DONE, None, (), False, None)
    with pytest.raises(DomainError, match="has no current ticket; call one first"):
        await bus.execute(finish)  # in a transaction, with locks: the same answer
    with pytest.raises(NotFound, match="no counter with id"):
        await bus.execute(commands.MarkNoShow(counter_id + 1000, clerk_id))


@pytest.mark.postgres
async def test_the_ticket_a_counter_is_busy_with_is_read_from_the_few_called_or_served(
    pg_url: str, clock: FixedClock
) -> None:
    """Which ticket a counter is busy with is asked by every call and every action on a
    ticket. PostgreSQL reads it from the partial index of tickets called or being served,
    not from every ticket the counter ever handled (tens of thousands a year), also under
    the generic plan a prepared statement ends up with."""
    import asyncpg
    from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect

    from queue_server.db import statements as sql
    from queue_server.db.engine import create_engine, session_factory

    engine = create_engine(pg_url, pool_size=2)
    try:
        bus = Bus(session_factory(engine), clock)
        hall_id, matter_id = await bookable_matter(bus, capacity=4)
        counter_id, clerk_id = await desk(bus, hall_id, matter_id)
        actor = commands.Actor(user_id=None)
        for _ in range(3):
            await bus.execute(commands.IssueTicket(hall_id, matter_id, actor=actor))
            await bus.execute(commands.CallNext(counter_id, clerk_id))
            await bus.execute(commands.MarkNoShow(counter_id, clerk_id))
    finally:
        await engine.dispose()
    dsn = pg_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        # Its plan, as a prepared statement's after its first runs, with the table read
        # by index (a table this small would be scanned whole otherwise).
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute("SET enable_seqscan = off")
        values = {"counter": str(counter_id), "hall": str(hall_id), "per_kind": "16",
                  "day": "CURRENT_DATE", "services": f"ARRAY[{matter_id}]::bigint[]"}  # fmt: skip
        plans = {}
        for name, statement in {
            "active_at": sql.ACTIVE_AT,  # SQLite's path, and the fallbacks
            "counter_and_active": sql.PG_COUNTER_AND_ACTIVE,  # a clerk's action
            "heads_unless_busy": sql.PG_WAITING_HEADS_UNLESS_BUSY,  # a call
        }.items():
            compiled = statement.compile(dialect=asyncpg_dialect.dialect())
            await conn.execute(f"PREPARE {name} AS {compiled}")
            arguments = ", ".join(values[key] for key in compiled.positiontup or ())
            rows = await conn.fetch(f"EXPLAIN EXECUTE {name}({arguments})")
            plans[name] = "\n".join(row[0] for row in rows)
    finally:
        await conn.close()
    for name, plan in plans.items():
        assert "ix_tickets_active_at_counter" in plan, (name, plan)
