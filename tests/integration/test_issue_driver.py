"""On PostgreSQL a walk-in is issued by two statements on the driver's own connection
(``db.driven``, ``UnitOfWork.driver``), outside the ORM session: what a kiosk and the
hall rely on must hold there as on the session's path. Numbers gapless under a crowd, a
double tap answered with one ticket, nothing half-written when a request is cancelled,
every connection back in the pool, and a database that ended its sessions (a restart, a
failover) costs one request, not one per dead connection in the pool."""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from queue_server.api.errors import _database_away
from queue_server.clock import FixedClock, SystemClock
from queue_server.db import driven
from queue_server.db.engine import create_engine, session_factory
from queue_server.db.repository import NewVisit
from queue_server.domain.errors import HallClosed, IllegalTransition
from queue_server.domain.model import TicketKind
from queue_server.service import accounts, estimates, kiosk_prints, queue
from queue_server.service.bus import Bus
from queue_server.service.commands import Actor, IssueTicket
from queue_server.service.unit_of_work import UnitOfWork, is_transient
from queue_server.service.views import NewTicket, TicketView
from tests.conftest import _plain_dsn
from tests.integration.pooled import (
    backend_waiting_on_a_lock,
    checked_out,
    engine,
    session_ended,
)
from tests.integration.test_concurrency import KIOSKS, event_seqs, issue, make_hall, numbers
from tests.integration.test_projection_extension import _fresh_told
from tests.support import ALL_DAY

pytestmark = pytest.mark.postgres
__all__ = ["engine"]  # the fixture, from tests.integration.pooled


async def visits_and_tickets(bus: Bus, hall_id: int) -> tuple[int, int]:
    async def read(uow: UnitOfWork) -> tuple[int, int]:
        row = (
            await uow.session.execute(
                text(
                    "SELECT (SELECT count(*) FROM visits WHERE hall_id = :h),"
                    " (SELECT count(*) FROM tickets WHERE hall_id = :h)"
                ),
                {"h": hall_id},
            )
        ).one()
        return int(row[0]), int(row[1])

    return await bus.run(read)


async def test_a_crowd_with_double_taps_gets_one_gapless_ticket_per_key(
    engine: AsyncEngine,
) -> None:
    bus = Bus(session_factory(engine), SystemClock())
    hall_id, service_id, _ = await make_hall(bus, counters=0)
    keys = [f"tap-{n}" for n in range(20)]
    # Every key sent twice at once, as a kiosk's double tap or a retry after a timeout.
    taps = [issue(bus, hall_id, service_id, key) for key in keys for _ in range(2)]
    ids = await asyncio.gather(*taps)
    by_key = {key: {ids[2 * n], ids[2 * n + 1]} for n, key in enumerate(keys)}
    assert all(len(ticket) == 1 for ticket in by_key.values()), by_key
    assert len({next(iter(t)) for t in by_key.values()}) == len(keys)
    assert await numbers(bus, hall_id) == [f"A{n:03d}" for n in range(1, len(keys) + 1)]
    assert await event_seqs(bus, hall_id) == list(range(1, len(keys) + 1))
    assert await visits_and_tickets(bus, hall_id) == (len(keys), len(keys))
    assert checked_out(engine) == 0


async def test_an_issue_cancelled_while_it_waits_leaves_one_whole_ticket_or_none(
    engine: AsyncEngine, pg_url: str
) -> None:
    """A kiosk that hangs up while its issue waits for the hall's row: its ticket is made
    whole or not at all, its key then gives that one ticket, and the connection it held
    does not go back to the pool mid-statement."""
    bus = Bus(session_factory(engine), SystemClock())
    hall_id, service_id, _ = await make_hall(bus, counters=0)
    holder = await asyncpg.connect(_plain_dsn(pg_url))
    watcher = await asyncpg.connect(_plain_dsn(pg_url))
    try:
        holding = holder.transaction()
        await holding.start()
        await holder.execute("SELECT 1 FROM halls WHERE id = $1 FOR UPDATE", hall_id)
        hung_up = asyncio.create_task(issue(bus, hall_id, service_id, "hung-up"))
        waiter = await backend_waiting_on_a_lock(watcher)
        hung_up.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hung_up
        await holding.rollback()
        assert checked_out(engine) == 0
        again = await issue(bus, hall_id, service_id, "hung-up")
        assert await issue(bus, hall_id, service_id, "hung-up") == again
        later = await issue(bus, hall_id, service_id, "next visitor")
        assert later != again
        assert await numbers(bus, hall_id) == ["A001", "A002"]
        assert await event_seqs(bus, hall_id) == [1, 2]
        assert await visits_and_tickets(bus, hall_id) == (2, 2)
        # The interrupted connection was dropped, not reused: its session ends.
        await session_ended(watcher, waiter)
    finally:
        await holder.close()
        await watcher.close()


async def test_sessions_the_database_ended_cost_one_request_not_one_per_connection(
    engine: AsyncEngine, pg_url: str
) -> None:
    bus = Bus(session_factory(engine), SystemClock())
    hall_id, service_id, _ = await make_hall(bus, counters=0)
    # A few issues at once leave the pool several idle connections.
    await asyncio.gather(*(issue(bus, hall_id, service_id, f"warm-{n}") for n in range(6)))
    idle = engine.sync_engine.pool.checkedin()  # type: ignore[attr-defined]
    assert idle >= 2, idle
    admin = await asyncpg.connect(_plain_dsn(pg_url))
    try:
        ended = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    assert ended >= idle
    with pytest.raises(Exception) as failed:
        await issue(bus, hall_id, service_id, "met a dead connection")
    assert _database_away(failed.value), repr(failed.value)
    # The pool's other connections were dropped with it: the next issue connects afresh.
    await issue(bus, hall_id, service_id, "after the restart")
    assert await numbers(bus, hall_id) == [f"A{n:03d}" for n in range(1, 8)]
    assert checked_out(engine) == 0


async def test_what_the_database_refuses_on_the_driver_is_told_as_on_the_session(
    engine: AsyncEngine,
) -> None:
    """A constraint the statement breaks is an ``IntegrityError`` (the API's 409), a key
    another request stored is "run again", and a lost race the database reports
    (deadlock, serialization) is run again, as SQLAlchemy's errors are."""
    bus = Bus(session_factory(engine), SystemClock())
    hall_id, service_id, _ = await make_hall(bus, counters=0)
    now = datetime.now(UTC)

    async def enqueue(driver: asyncpg.Connection, service: int, key: str) -> object:
        visit = NewVisit(
            hall_id=hall_id, day=now.date(), prefix="A", service_id=service,
            kind=TicketKind.WALK_IN, priority="normal", now=now,
            follow_token=secrets.token_hex(8), device_id=None, user_id=None, job_payload={},
            idempotency=("test", key, "fingerprint"),
        )  # fmt: skip
        return await driven.enqueue(driver, visit)

    async with engine.connect() as connection:
        driver = (await connection.get_raw_connection()).driver_connection
        assert isinstance(driver, asyncpg.Connection)
        with pytest.raises(IntegrityError):  # no such matter: the ticket's foreign key
            await enqueue(driver, service_id + 1000, "first")
        assert await enqueue(driver, service_id, "second") is not None
        assert await enqueue(driver, service_id, "second") is None
    assert await numbers(bus, hall_id) == ["A001"]
    assert is_transient(asyncpg.exceptions.DeadlockDetectedError("deadlock detected"))
    assert is_transient(asyncpg.exceptions.SerializationError("could not serialize"))
    assert not is_transient(asyncpg.exceptions.UniqueViolationError("duplicate key"))


async def test_a_failure_dropping_a_lost_connection_leaves_the_works_own_error(
    engine: AsyncEngine, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Giving a lost connection back never raises over the issue's own error (the one the
    API answers 503 for), and the connection is not left checked out."""
    bus = Bus(session_factory(engine), SystemClock())
    hall_id, service_id, _ = await make_hall(bus, counters=0)
    await issue(bus, hall_id, service_id, "warm")

    def refuse(*_: object) -> None:
        raise RuntimeError("the pool refused to mark its connections stale")

    monkeypatch.setattr(engine.sync_engine.pool, "_invalidate", refuse)
    admin = await asyncpg.connect(_plain_dsn(pg_url))
    try:
        await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    with pytest.raises(Exception) as failed:
        await issue(bus, hall_id, service_id, "met a dead connection")
    assert not isinstance(failed.value, RuntimeError), repr(failed.value)
    assert _database_away(failed.value), repr(failed.value)
    assert checked_out(engine) == 0


async def test_only_a_closed_connection_is_taken_for_a_lost_one(pg_url: str) -> None:
    """A misuse of the driver on a live connection is a bug (a 500, logged), not the
    database away (a 503 that makes every connection reconnect)."""
    connection = await asyncpg.connect(_plain_dsn(pg_url))
    try:
        assert not driven._lost(connection, asyncpg.InterfaceError("wrong number of arguments"))
        assert driven._lost(connection, asyncpg.InternalClientError("another operation"))
        assert driven._lost(connection, ConnectionResetError())
    finally:
        await connection.close()
    assert driven._lost(connection, asyncpg.InterfaceError("connection is closed"))
    assert driven._lost(connection, asyncpg.InterfaceError("anything at all"))


async def test_a_walk_in_next_to_the_kept_projection_is_answered_without_a_connection(
    engine: AsyncEngine, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kiosks issuing one after another: an answer often finds the hall's kept projection
    stopping just before its own walk-in's events. It is extended with that walk-in from
    what the issue told, without reading the log or taking a connection, and the visitor
    is told what a floor read whole tells. With another walk-in logged in between, the
    answer reads the log since (one connection more) and is told as a fresh read too."""
    # Kept, and not read again, however slow the machine.
    monkeypatch.setattr(estimates, "KEEP_SECONDS", 3600.0)
    monkeypatch.setattr(estimates, "READ_AGAIN_SECONDS", 3600.0)
    # One moment throughout: an extended projection starts when its floor was read, and a
    # fresh one now; told from the same moment, they tell the same.
    bus = Bus(session_factory(engine), clock)
    hall_id, service_id, _ = await make_hall(bus, counters=1)

    async def kiosk() -> tuple[NewTicket, TicketView]:
        command = IssueTicket(hall_id, service_id, actor=Actor(device_id=KIOSKS[hall_id]))
        new = await bus.run(queue.issue_new, command)
        return new, await bus.read(kiosk_prints.new_ticket_answer, new)

    def told(answer: TicketView) -> tuple[object, ...]:
        return (answer.people_ahead, answer.estimate_minutes, answer.estimate_low,
                answer.estimate_high)  # fmt: skip

    await kiosk()  # the first answer reads the floor whole
    pool = engine.sync_engine.pool
    checkouts: list[object] = []
    event.listen(pool, "checkout", lambda *args: checkouts.append(args))
    second, answer = await kiosk()
    # The first extension of a floor read whole reads the log: that floor may hold
    # walk-ins logged after its number already.
    assert len(checkouts) == 2, "the issue's, and the answer's to read the log since"
    assert estimates._projections[hall_id].seq == second.event_seq
    checkouts.clear()
    third, answer = await kiosk()
    assert len(checkouts) == 1, "the issue's connection only: the answer took none"
    kept = estimates._projections[hall_id]
    assert kept.seq == third.event_seq and not kept.whole and kept.traced.real == 3
    expected = await _fresh_told(bus, hall_id, third.ticket_id)
    assert expected is not None and told(answer) == (
        2, expected.minutes, expected.low, expected.high
    )  # fmt: skip

    await issue(bus, hall_id, service_id)  # a walk-in whose answer never came
    checkouts.clear()
    fifth, answer = await kiosk()
    assert len(checkouts) == 2, "the issue's, and the answer's to read the log since"
    assert estimates._projections[hall_id].traced.real == 5
    expected = await _fresh_told(bus, hall_id, fifth.ticket_id)
    assert expected is not None and told(answer) == (
        4, expected.minutes, expected.low, expected.high
    )  # fmt: skip
    assert checked_out(engine) == 0


async def test_a_failed_checkout_is_told_as_the_engine_tells_it(pg_url: str) -> None:
    """A unit of work that cannot connect fails as ``AsyncEngine.connect`` fails (a
    ``DBAPIError`` around the driver's error): the API's answer to a database away or
    refusing depends on it."""
    url = make_url(pg_url).set(database="onedoor_no_such_database")
    engine = create_engine(url.render_as_string(hide_password=False), pool_size=1)
    try:
        with pytest.raises(DBAPIError) as by_engine:
            async with engine.connect():
                pass
        async with UnitOfWork(session_factory(engine), SystemClock()) as uow:
            with pytest.raises(DBAPIError) as by_unit:
                await uow.driver()
        assert type(by_unit.value) is type(by_engine.value)
        assert type(by_unit.value.orig) is type(by_engine.value.orig)
        assert checked_out(engine) == 0
    finally:
        await engine.dispose()


def statements_sent(engine: AsyncEngine) -> list[tuple[str, bool]]:
    """What the pool's connections send to the database from now on, as it is sent: each
    statement's text and whether the database refused it (asyncpg's query loggers)."""
    sent: list[tuple[str, bool]] = []
    watched: list[asyncpg.Connection] = []

    def log(query: asyncpg.connection.LoggedQuery) -> None:
        sent.append((query.query, query.exception is not None))

    def on_checkout(dbapi_connection: object, record: object, proxy: object) -> None:
        driver = dbapi_connection.driver_connection  # type: ignore[attr-defined]
        if all(driver is not seen for seen in watched):
            watched.append(driver)
            driver.add_query_logger(log)

    event.listen(engine.sync_engine.pool, "checkout", on_checkout)
    return sent


def issuing(sent: list[tuple[str, bool]]) -> list[str]:
    """The issuing statements among ``sent``, in order: the read of the hall, the matter and
    the key; the issue checked against what was read before; the issue alone; several
    issues together (``statements.PG_ENQUEUE_MANY``)."""
    told = []
    for query, refused in sent:
        if "kept_ticket" in query:
            kind = "read"
        elif "WITH ORDINALITY AS g(" in query:
            kind = "together"
        elif "INSERT INTO number_sequences" in query:
            kind = "checked issue" if "facts AS (" in query else "issue"
        else:
            continue
        told.append(kind + (" refused" if refused else ""))
    return told


async def test_an_issue_where_the_process_knows_the_hall_is_one_statement(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first issue of a (hall, matter) reads them before issuing; every later one in
    the process sends one statement, checked against what was read. A key sent again is
    refused whole by that statement, and the read then answers with the key's ticket."""
    monkeypatch.setattr(queue, "_known_facts", {})
    bus = Bus(session_factory(engine), SystemClock())
    hall_id, service_id, _ = await make_hall(bus, counters=0)
    sent = statements_sent(engine)
    await issue(bus, hall_id, service_id, "first")
    assert issuing(sent) == ["read", "issue"]
    sent.clear()
    second = await issue(bus, hall_id, service_id, "second")
    third = await issue(bus, hall_id, service_id)
    assert issuing(sent) == ["checked issue", "checked issue"]
    sent.clear()
    assert await issue(bus, hall_id, service_id, "second") == second != third
    assert issuing(sent) == ["checked issue refused", "read"]
    assert await numbers(bus, hall_id) == ["A001", "A002", "A003"]
    assert await event_seqs(bus, hall_id) == [1, 2, 3]
    assert await visits_and_tickets(bus, hall_id) == (3, 3)
    assert checked_out(engine) == 0


async def test_a_hall_changed_behind_the_process_is_issued_as_it_is_now(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a process knows of a hall and its matter may be old: another process, or SQL
    typed by hand, changed them. The issue's statement then writes nothing (no number
    used), the issue reads them again and goes on as the hall now says: a renamed hall's
    ticket prints its new name and notice, a matter switched off or a hall closed
    refuses."""
    monkeypatch.setattr(queue, "_known_facts", {})
    bus = Bus(session_factory(engine), SystemClock())
    hall_id, service_id, _ = await make_hall(bus, counters=0)
    await bus.run(
        accounts.create_device, hall_id, accounts.DeviceKind.PRINTER, "p", KIOSKS[hall_id]
    )
    await issue(bus, hall_id, service_id)
    sent = statements_sent(engine)

    async def behind_the_back(statement: str, **values: object) -> None:
        async with engine.begin() as connection:
            await connection.execute(
                text(statement), {"hall": hall_id, "matter": service_id, **values}
            )

    async def printed(ticket_id: int) -> tuple[str, str, str]:
        async with engine.connect() as connection:
            payload = (
                await connection.execute(
                    text("SELECT CAST(payload AS text) FROM print_jobs WHERE ticket_id = :t"),
                    {"t": ticket_id},
                )
            ).scalar_one()
        fields = json.loads(payload)
        return fields["hall_en"], fields["notice"], fields["number"]

    # Renamed, with a notice for the tickets: the process still knows the old names.
    await behind_the_back(
        "UPDATE halls SET name_en = 'Renamed hall', notice = 'Bring your ID card' WHERE id = :hall"
    )
    renamed = await issue(bus, hall_id, service_id)
    assert issuing(sent) == ["checked issue", "read", "issue"]
    assert await printed(renamed) == ("Renamed hall", "Bring your ID card", "A002")

    await behind_the_back("UPDATE services SET active = false WHERE id = :matter")
    sent.clear()
    with pytest.raises(IllegalTransition, match="inactive"):
        await issue(bus, hall_id, service_id)
    assert issuing(sent) == ["checked issue", "read"]
    await behind_the_back("UPDATE services SET active = true WHERE id = :matter")
    await issue(bus, hall_id, service_id)  # known again
    await behind_the_back("UPDATE halls SET opening_hours = CAST('{}' AS json) WHERE id = :hall")
    sent.clear()
    with pytest.raises(HallClosed):
        await issue(bus, hall_id, service_id)
    assert issuing(sent) == ["checked issue", "read"]
    await behind_the_back(
        "UPDATE halls SET opening_hours = CAST(:hours AS json) WHERE id = :hall",
        hours=json.dumps(ALL_DAY),
    )
    sent.clear()
    last = await issue(bus, hall_id, service_id)
    assert issuing(sent) == ["read", "issue"]
    assert await printed(last) == ("Renamed hall", "Bring your ID card", "A004")
    assert await numbers(bus, hall_id) == ["A001", "A002", "A003", "A004"]
    assert await event_seqs(bus, hall_id) == list(range(1, 9))  # each issue, and its print job
    assert await visits_and_tickets(bus, hall_id) == (4, 4)
    assert checked_out(engine) == 0
