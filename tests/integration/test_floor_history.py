"""What the wait estimate and the policy's look-ahead read of a hall's history: each
matter's latest service times. They are read the same way in a hall's first week and in
its third year: per matter its newest services, from the index of done tickets, and at
most every few seconds, however often counters call."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event

from booking.checkin import CheckIn, check_in
from booking.service import BookSlot, book_slot
from queue_server.clock import FixedClock
from queue_server.db.engine import create_engine, session_factory
from queue_server.db.tables import TicketRow, VisitRow
from queue_server.domain.hours import business_day
from queue_server.domain.model import TicketKind, TicketState
from queue_server.service import accounts, commands, floor, hall_config
from queue_server.service.bus import Bus
from queue_server.service.unit_of_work import UnitOfWork
from tests.support import bookable_matter, hall_with_matter

TZ = "Asia/Shanghai"
NEWEST = "tickets.finished_at DESC"
"""What the statement reading a matter's latest services says (and no other)."""


async def served(
    bus: Bus,
    hall_id: int,
    service_id: int,
    ended: list[tuple[datetime, float]],
    state: TicketState = TicketState.DONE,
) -> None:
    """Tickets of ``service_id`` served for the given minutes, each ending at the given
    time, as the hall's history holds them (in ``state``)."""

    async def write(uow: UnitOfWork) -> None:
        for n, (end, minutes) in enumerate(ended):
            start = end - timedelta(minutes=minutes)
            day = business_day(start, uow.clock.now().tzinfo)  # type: ignore[arg-type]
            visit = VisitRow(
                hall_id=hall_id, business_day=day, follow_token=secrets.token_hex(8),
                created_at=start - timedelta(minutes=20),
            )  # fmt: skip
            uow.session.add(visit)
            await uow.session.flush()
            uow.session.add(
                TicketRow(
                    hall_id=hall_id, visit_id=visit.id, service_id=service_id,
                    number=f"H{n}", prefix="H", seq=None, business_day=day,
                    kind=TicketKind.WALK_IN, priority="normal", state=state,
                    issued_at=start - timedelta(minutes=20),
                    queued_at=start - timedelta(minutes=20),
                    called_at=start - timedelta(minutes=1), call_count=1,
                    started_at=start, finished_at=end,
                )
            )  # fmt: skip
        await uow.commit()

    await bus.run(write)


async def test_each_matters_service_times_are_its_newest_fifty_of_four_weeks(
    bus: Bus, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    hall_id, busy = await hall_with_matter(bus)  # typical 5 minutes
    few, gone = [
        (
            await bus.run(
                hall_config.create_service,
                hall_id,
                {"name_zh": zh, "name_en": en, "prefix": prefix, "typical_minutes": minutes},
            )
        ).id
        for zh, en, prefix, minutes in (("户籍", "Registry", "B", 12), ("税务", "Tax", "C", 8))
    ]
    now = clock.now()
    # Sixty services of the busy matter over the last days, the newest the longest.
    await served(bus, hall_id, busy, [(now - timedelta(hours=60 - i), 1 + i) for i in range(60)])
    # The newest ticket of all ended without being done: not a service time.
    await served(bus, hall_id, busy, [(now - timedelta(minutes=5), 99)], TicketState.NO_SHOW)
    await served(bus, hall_id, few, [(now - timedelta(days=d), 10 + d) for d in (3, 1, 2)])
    # Services of five weeks ago are past the four weeks the estimate reads.
    await served(bus, hall_id, gone, [(now - timedelta(days=35, hours=h), 40) for h in range(5)])

    day = business_day(now, clock.now().tzinfo)  # type: ignore[arg-type]
    read = await bus.read(lambda uow: floor.hall_floor(uow, hall_id, day, now))

    assert read.stats[busy].recent == tuple(float(1 + i) for i in range(59, 9, -1))
    assert read.stats[busy].typical_minutes == 5.0
    assert read.stats[busy].mean() == sum(range(11, 61)) / 50
    assert read.stats[few].recent == (11.0, 12.0, 13.0)  # newest first
    assert read.stats[few].mean() == 12.0  # too few to measure: the configured time
    assert read.stats[gone].recent == ()
    # A hall with many matters reads them in parts (SQLite takes 500 parts a statement).
    floor.forget()
    monkeypatch.setattr(floor, "MATTERS_PER_STATEMENT", 1)
    in_parts = await bus.read(lambda uow: floor.hall_floor(uow, hall_id, day, now))
    assert in_parts.stats == read.stats


async def test_the_latest_services_are_read_from_each_matters_done_tickets(
    pg_url: str, clock: FixedClock
) -> None:
    """PostgreSQL reads each matter's newest services from the partial index of done
    tickets by matter and end, stopping at fifty: not every ticket of the hall's four
    weeks (at 2,000 a day, 56,000 rows read and sorted), also under the generic plan a
    prepared statement ends up with."""
    import asyncpg

    engine = create_engine(pg_url, pool_size=2)
    sent: list[tuple[str, Any]] = []

    def seen(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if NEWEST in statement:
            sent.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        bus = Bus(session_factory(engine), clock)
        hall_id, matter = await hall_with_matter(bus)
        now = clock.now()
        await served(bus, hall_id, matter, [(now - timedelta(hours=h), 7) for h in range(3)])
        # A matter served rarely: its services of months ago must not be read each time.
        await served(bus, hall_id, matter, [(now - timedelta(days=40 + d), 9) for d in range(30)])
        day = business_day(now, now.tzinfo)  # type: ignore[arg-type]
        stats = await bus.read(lambda uow: floor.service_stats(uow, hall_id, day))
        assert stats[matter].recent == (7.0, 7.0, 7.0)
    finally:
        await engine.dispose()
    assert len(sent) == 1
    statement, parameters = sent[0]
    conn = await asyncpg.connect(pg_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute("SET enable_seqscan = off")  # a table this small is scanned else
        await conn.execute(f"PREPARE newest AS {statement}")
        arguments = ", ".join(
            f"'{value.isoformat()}'" if hasattr(value, "isoformat") else repr(value)
            for value in parameters
        )
        explain = f"EXPLAIN (ANALYZE, COSTS OFF) EXECUTE newest({arguments})"
        plan = "\n".join(r[0] for r in await conn.fetch(explain))
        index = await conn.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_tickets_done_by_matter'"
        )
    finally:
        await conn.close()
    assert index.endswith("(service_id, finished_at) WHERE ((state)::text = 'done'::text)")
    # Newest first by the index itself, stopping at the limit: no sort of the matter's
    # tickets (only of the fifty a matter at most gives), no other index of tickets.
    assert "Index Scan Backward using ix_tickets_done_by_matter" in plan, plan
    assert "Limit" in plan, plan
    assert "uq_tickets_number" not in plan and "ix_tickets_queue" not in plan, plan
    # The read stops at the window's edge: the services of months ago are not read.
    assert "finished_at >=" in plan.split("Index Cond:")[1].splitlines()[0], plan
    assert "rows=3 " in plan and "Rows Removed by Filter" not in plan, plan


async def test_calls_with_appointments_waiting_read_service_times_once_in_a_while(
    bus: Bus, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an appointment waiting, each call weighs it against the counters' coming free
    (the policy's look-ahead), which needs the matters' service times. A counter calling
    every few seconds reads them once, not on each call."""
    monkeypatch.setattr(floor, "CACHE_SECONDS", 3600.0)  # however slow this machine is
    hall_id, matter = await bookable_matter(bus, capacity=4)
    counter = await bus.run(hall_config.create_counter, hall_id, 1, "c1", [(matter, "primary")])
    clerk = await bus.run(
        accounts.create_user, "clerk1", "pw-clerk-1", accounts.Role.CLERK, hall_id
    )
    await bus.execute(commands.OpenCounter(counter.id, clerk.id))
    start = clock.now().replace(minute=30, second=0, microsecond=0) + timedelta(hours=1)
    actor = commands.Actor(user_id=None)
    for n, phone in enumerate(("13800138000", "13900139000", "13700137000")):
        booked = await bus.run(
            book_slot, BookSlot(hall_id, matter, start, f"王{n}", phone, f"12{n}X")
        )
        clock.set(start - timedelta(minutes=10))
        await bus.run(check_in, CheckIn(hall_id, actor, code=booked.code))
    reads: list[str] = []
    engine = bus.sessions.kw["bind"].sync_engine

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if NEWEST in statement:
            reads.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    called = []
    for _ in range(3):
        result = await bus.execute(commands.CallNext(counter.id, clerk.id))
        called.append(result.ticket_id)
        await bus.execute(commands.MarkNoShow(counter.id, clerk.id))
    assert None not in called and len(set(called)) == 3
    assert len(reads) == 1
