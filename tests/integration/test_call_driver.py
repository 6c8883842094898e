"""On PostgreSQL a counter's call-next runs in one transaction on the driver's own
connection, and a clerk's no-show, recall, start or return as two statements committed
alone there (``queue._call_next_driven``, ``queue._on_current_driven``, ``db.driven``).
What the clerks rely on must hold as on the session's path: a crowd of counters never
calls one ticket twice, a call that fails or is interrupted leaves no lock, no half-made
change and no connection in a transaction, the policy's look-ahead reads inside the
call's own transaction, and a database that ended its sessions costs one request."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from queue_server.api.errors import _database_away
from queue_server.clock import SystemClock
from queue_server.db import driven
from queue_server.db.engine import create_engine, session_factory
from queue_server.db.tables import CounterRow, HallEventRow, TicketRow
from queue_server.domain.errors import IllegalTransition
from queue_server.service import commands
from queue_server.service.bus import Bus
from queue_server.service.unit_of_work import UnitOfWork
from tests.conftest import _plain_dsn
from tests.integration.pooled import (
    backend_waiting_on_a_lock,
    backend_where,
    checked_out,
    engine,
    session_ended,
)
from tests.integration.test_concurrency import event_seqs, issue, make_hall, ticket_states

pytestmark = pytest.mark.postgres
__all__ = ["engine"]  # the fixture, from tests.integration.pooled


async def idle_in_transaction(watcher: asyncpg.Connection) -> int:
    return int(
        await watcher.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state LIKE 'idle in transaction%'"
        )
    )


async def called_by(bus: Bus, hall_id: int) -> list[tuple[int, int]]:
    """(ticket, counter) of every ticket called or served, as the database has them."""

    async def read(uow: UnitOfWork) -> list[tuple[int, int]]:
        rows = await uow.session.execute(
            select(TicketRow.id, TicketRow.counter_id).where(
                TicketRow.hall_id == hall_id, TicketRow.counter_id.is_not(None)
            )
        )
        return [(int(t), int(c)) for t, c in rows]

    return await bus.run(read)


async def logged(bus: Bus, hall_id: int, name: str) -> int:
    """How many events ``name`` the hall's log holds."""

    async def read(uow: UnitOfWork) -> int:
        found = await uow.session.scalar(
            select(func.count()).where(HallEventRow.hall_id == hall_id, HallEventRow.name == name)
        )
        return int(found or 0)

    return await bus.run(read)


async def test_a_crowd_of_counters_calling_and_marking_no_shows_never_shares_a_ticket(
    engine: AsyncEngine, pg_url: str
) -> None:
    """12 counters, each calling and marking a no-show as fast as answers come, until
    the queue is empty: every ticket is called once, by one counter, each call and
    no-show logged once in gapless order, and nothing is left in a transaction."""
    bus = Bus(session_factory(engine), SystemClock())
    hall_id, service_id, desks = await make_hall(bus, counters=12)
    tickets = [await issue(bus, hall_id, service_id) for _ in range(60)]
    called: list[int] = []

    async def clerk(counter_id: int, clerk_id: int) -> None:
        while True:
            result = await bus.execute(commands.CallNext(counter_id, clerk_id))
            if result.ticket_id is None:
                return
            called.append(result.ticket_id)
            assert await bus.execute(commands.MarkNoShow(counter_id, clerk_id)) == result.ticket_id

    await asyncio.gather(*(clerk(c, k) for c, k in desks))
    assert sorted(called) == sorted(tickets)  # each once, none left waiting
    assert len({counter for _, counter in await called_by(bus, hall_id)}) > 1
    assert await ticket_states(bus, hall_id) == {"no_show": len(tickets)}
    # Each ticket called once and marked a no-show once, the hall's log without a gap.
    assert await logged(bus, hall_id, "TicketCalled") == len(tickets)
    assert await logged(bus, hall_id, "TicketMarkedNoShow") == len(tickets)
    seqs = await event_seqs(bus, hall_id)
    assert seqs == list(range(1, len(seqs) + 1))
    assert checked_out(engine) == 0
    watcher = await asyncpg.connect(_plain_dsn(pg_url))
    try:
        assert await idle_in_transaction(watcher) == 0
    finally:
        await watcher.close()


async def test_a_refused_call_rolls_back_and_holds_the_counter_no_longer(
    engine: AsyncEngine, pg_url: str
) -> None:
    """A call the counter refuses (busy with a ticket) has begun its transaction and
    locked the counter: it is rolled back as the unit ends, so the counter's next
    command does not wait and the connection goes back to the pool out of any
    transaction."""
    bus = Bus(session_factory(engine), SystemClock())
    hall_id, service_id, desks = await make_hall(bus, counters=1)
    counter_id, clerk_id = desks[0]
    first = await issue(bus, hall_id, service_id)
    await issue(bus, hall_id, service_id)
    assert (await bus.execute(commands.CallNext(counter_id, clerk_id))).ticket_id == first
    with pytest.raises(IllegalTransition, match="busy with A001"):
        await bus.execute(commands.CallNext(counter_id, clerk_id))
    assert checked_out(engine) == 0
    watcher = await asyncpg.connect(_plain_dsn(pg_url))
    try:
        assert await idle_in_transaction(watcher) == 0
        # The counter's row is free: another transaction takes its lock at once.
        async with watcher.transaction():
            await watcher.execute("SET LOCAL lock_timeout = '2s'")
            await watcher.execute("SELECT 1 FROM counters WHERE id = $1 FOR UPDATE", counter_id)
    finally:
        await watcher.close()
    async with asyncio.timeout(10):
        assert await bus.execute(commands.MarkNoShow(counter_id, clerk_id)) == first
        assert (await bus.execute(commands.CallNext(counter_id, clerk_id))).ticket_id != first


async def test_a_call_cancelled_while_it_waits_for_the_counter_leaves_nothing_half_done(
    engine: AsyncEngine, pg_url: str
) -> None:
    """A clerk's request that hangs up while its call waits for the counter's lock (held
    by another transaction): nothing is called, the interrupted connection is dropped
    (its session ends, so its transaction with it), and the counter calls as usual."""
    bus = Bus(session_factory(engine), SystemClock())
    hall_id, service_id, desks = await make_hall(bus, counters=1)
    counter_id, clerk_id = desks[0]
    first = await issue(bus, hall_id, service_id)
    holder = await asyncpg.connect(_plain_dsn(pg_url))
    watcher = await asyncpg.connect(_plain_dsn(pg_url))
    try:
        holding = holder.transaction()
        await holding.start()
        await holder.execute("SELECT 1 FROM counters WHERE id = $1 FOR UPDATE", counter_id)
        hung_up = asyncio.create_task(bus.execute(commands.CallNext(counter_id, clerk_id)))
        waiter = await backend_waiting_on_a_lock(watcher)
        hung_up.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hung_up
        await holding.rollback()
        assert checked_out(engine) == 0
        await session_ended(watcher, waiter)
        assert await ticket_states(bus, hall_id) == {"waiting": 1}
        assert (await bus.execute(commands.CallNext(counter_id, clerk_id))).ticket_id == first
        assert await logged(bus, hall_id, "TicketCalled") == 1
    finally:
        await holder.close()
        await watcher.close()


async def test_sqlalchemy_statements_of_a_driver_unit_run_in_its_transaction(
    engine: AsyncEngine,
) -> None:
    """``UnitOfWork.execute`` in a unit on the driver's connection (the policy's
    look-ahead reads so during a call): it sees what the unit's transaction changed and
    not yet committed, and it commits nothing of its own: a unit that fails leaves the
    database as it was."""
    bus = Bus(session_factory(engine), SystemClock())
    *_, desks = await make_hall(bus, counters=1)
    counter_id = desks[0][0]
    seen: list[str] = []

    async def change_then_fail(uow: UnitOfWork) -> None:
        db = await uow.begin_on_driver()
        await db.execute("UPDATE counters SET state = 'paused' WHERE id = $1", counter_id)
        state = await uow.execute(select(CounterRow.state).where(CounterRow.id == counter_id))
        seen.append(state.scalar_one())
        await uow.execute(text("SELECT 1"))  # SQLAlchemy began nothing of its own either
        raise RuntimeError("fails before its commit")

    with pytest.raises(RuntimeError, match="before its commit"):
        await bus.run(change_then_fail)
    assert seen == ["paused"]

    async def state(uow: UnitOfWork) -> str:
        found = await uow.session.scalar(
            select(CounterRow.state).where(CounterRow.id == counter_id)
        )
        return str(found)

    assert await bus.run(state) == "open"
    assert checked_out(engine) == 0


async def test_sessions_the_database_ended_cost_a_counter_one_request(
    engine: AsyncEngine, pg_url: str
) -> None:
    bus = Bus(session_factory(engine), SystemClock())
    hall_id, service_id, desks = await make_hall(bus, counters=4)
    for _ in range(8):
        await issue(bus, hall_id, service_id)
    # A few calls at once leave the pool several idle connections.
    await asyncio.gather(*(bus.execute(commands.CallNext(c, k)) for c, k in desks))
    assert engine.sync_engine.pool.checkedin() >= 2  # type: ignore[attr-defined]
    admin = await asyncpg.connect(_plain_dsn(pg_url))
    try:
        await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    (counter_id, clerk_id), *_ = desks
    with pytest.raises(Exception) as failed:
        await bus.execute(commands.MarkNoShow(counter_id, clerk_id))
    assert _database_away(failed.value), repr(failed.value)
    assert isinstance(failed.value, driven.ConnectionLost)
    # The pool's other connections were dropped with it: the next commands connect afresh.
    assert await bus.execute(commands.MarkNoShow(counter_id, clerk_id)) is not None
    assert (await bus.execute(commands.CallNext(counter_id, clerk_id))).ticket_id is not None
    assert checked_out(engine) == 0


async def test_a_look_ahead_cancelled_or_lost_drops_its_connection_alone(
    engine: AsyncEngine, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A call's look-ahead reads through SQLAlchemy (``UnitOfWork.execute``), which drops
    the connection itself when its statement is interrupted or the connection lost: the
    unit then gives it back as it is, without a warning and without marking the rest of
    the pool stale for one clerk who hung up. A lost one is still told as "database
    away" (503), and the next unit is served."""
    bus = Bus(session_factory(engine), SystemClock())
    await make_hall(bus, counters=0)
    started = asyncio.Event()

    async def slow_look_ahead(uow: UnitOfWork) -> None:
        await uow.begin_on_driver()
        started.set()
        await uow.execute(text("SELECT pg_sleep(30)"))

    watcher = await asyncpg.connect(_plain_dsn(pg_url))
    try:
        for ending in ("cancelled", "lost"):
            started.clear()
            caplog.clear()
            work = asyncio.create_task(bus.run(slow_look_ahead))
            await started.wait()
            condition = "query LIKE 'SELECT pg_sleep%' AND state = 'active'"
            sleeper = await backend_where(watcher, condition)
            if ending == "cancelled":
                work.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await work
            else:
                await watcher.execute("SELECT pg_terminate_backend($1)", sleeper)
                with pytest.raises(Exception) as failed:
                    await work
                assert _database_away(failed.value), repr(failed.value)
            await session_ended(watcher, sleeper)
            assert checked_out(engine) == 0
            warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
            assert warned == [], [r.getMessage() for r in warned]
            assert await bus.run(lambda uow: uow.execute(text("SELECT 1"))) is not None
    finally:
        await watcher.close()


async def test_a_session_after_a_driver_unit_on_the_same_connection_has_its_transaction(
    pg_url: str,
) -> None:
    """A driver unit that read through SQLAlchemy set its connection to AUTOCOMMIT at
    SQLAlchemy's level: the session that gets the connection next from the pool (a pool
    of one) is in its own transaction again, so a unit that fails leaves nothing."""
    engine = create_engine(pg_url, pool_size=1)
    try:
        bus = Bus(session_factory(engine), SystemClock())
        *_, desks = await make_hall(bus, counters=1)
        counter_id = desks[0][0]
        pids = []

        async def driver_unit(uow: UnitOfWork) -> None:
            await uow.begin_on_driver()
            pids.append((await uow.execute(text("SELECT pg_backend_pid()"))).scalar_one())
            await uow.commit()

        async def pause_then_fail(uow: UnitOfWork) -> None:
            pids.append(await uow.session.scalar(text("SELECT pg_backend_pid()")))
            await uow.session.execute(
                text("UPDATE counters SET state = 'paused' WHERE id = :c"), {"c": counter_id}
            )
            raise RuntimeError("fails before its commit")

        await bus.run(driver_unit)
        with pytest.raises(RuntimeError, match="before its commit"):
            await bus.run(pause_then_fail)
        assert len(set(pids)) == 1, pids  # the same connection both times
        state = await bus.run(
            lambda uow: uow.session.scalar(
                select(CounterRow.state).where(CounterRow.id == counter_id)
            )
        )
        assert state == "open"
    finally:
        await engine.dispose()


async def test_the_relay_is_told_each_call_and_action_once_after_its_commit(
    engine: AsyncEngine,
) -> None:
    """What the outbox relay is woken with (``Bus.on_events``): the events of each call
    and action once, after they committed; nothing for a call the counter refused."""
    told: list[list[str]] = []
    bus = Bus(
        session_factory(engine),
        SystemClock(),
        on_events=lambda events: told.append([type(e).__name__ for e in events]),
    )
    hall_id, service_id, desks = await make_hall(bus, counters=1)
    counter_id, clerk_id = desks[0]
    await issue(bus, hall_id, service_id)
    told.clear()
    await bus.execute(commands.CallNext(counter_id, clerk_id))
    with pytest.raises(IllegalTransition):
        await bus.execute(commands.CallNext(counter_id, clerk_id))
    await bus.execute(commands.Recall(counter_id, clerk_id))
    await bus.execute(commands.MarkNoShow(counter_id, clerk_id))
    assert told == [["TicketCalled"], ["TicketRecalled"], ["TicketMarkedNoShow"]]
    assert await logged(bus, hall_id, "TicketCalled") == 1
