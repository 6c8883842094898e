"""Under real concurrency, on SQLite and PostgreSQL: no number issued twice or skipped, no
ticket called twice, and the hall's event log numbered without gaps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, func, select, text

from queue_server.clock import FixedClock
from queue_server.db.tables import HallEventRow, TicketRow, VisitRow
from queue_server.domain.errors import DomainError
from queue_server.service import accounts, commands, hall_config
from queue_server.service.bus import Bus
from queue_server.service.queue import CallResult
from queue_server.service.unit_of_work import UnitOfWork
from tests.support import ALL_DAY


async def make_hall(bus: Bus, counters: int) -> tuple[int, int, list[tuple[int, int]]]:
    """A hall with matter A, a kiosk, ``counters`` open counters serving A, each with its clerk."""
    hall = await bus.run(
        hall_config.create_hall,
        {"name_zh": "并发大厅", "name_en": "Race hall", "timezone": "Asia/Shanghai",
         "opening_hours": ALL_DAY, "priority_boosts": {"elderly": 15}},
    )  # fmt: skip
    service = await bus.run(
        hall_config.create_service,
        hall.id,
        {"name_zh": "社保", "name_en": "Social", "prefix": "A", "typical_minutes": 5},
    )
    kiosk = await bus.run(accounts.create_device, hall.id, accounts.DeviceKind.KIOSK, "kiosk")
    KIOSKS[hall.id] = kiosk.id
    desks = []
    for number in range(1, counters + 1):
        counter = await bus.run(
            hall_config.create_counter, hall.id, number, f"c{number}", [(service.id, "primary")]
        )
        clerk = await bus.run(
            accounts.create_user, f"clerk{number}", "clerk-password", accounts.Role.CLERK, hall.id
        )
        await bus.execute(commands.OpenCounter(counter.id, clerk.id))
        desks.append((counter.id, clerk.id))
    return hall.id, service.id, desks


KIOSKS: dict[int, int] = {}


async def event_seqs(bus: Bus, hall_id: int) -> list[int]:
    async def read(uow: UnitOfWork) -> list[int]:
        rows = await uow.session.execute(
            select(HallEventRow.seq)
            .where(HallEventRow.hall_id == hall_id)
            .order_by(HallEventRow.seq)
        )
        return list(rows.scalars())

    return await bus.run(read)


async def issue(bus: Bus, hall_id: int, service_id: int, key: str | None = None) -> int:
    return await bus.execute(
        commands.IssueTicket(
            hall_id,
            service_id,
            actor=commands.Actor(device_id=KIOSKS[hall_id]),
            idempotency_key=key,
        )
    )


async def ticket_states(bus: Bus, hall_id: int) -> dict[str, int]:
    """How many of the hall's tickets are in each state."""

    async def read(uow: UnitOfWork) -> dict[str, int]:
        rows = await uow.session.execute(
            select(TicketRow.state, func.count())
            .where(TicketRow.hall_id == hall_id)
            .group_by(TicketRow.state)
        )
        return dict(rows.all())

    return await bus.run(read)


async def numbers(bus: Bus, hall_id: int) -> list[str]:
    async def read(uow: UnitOfWork) -> list[str]:
        rows = await uow.session.execute(
            select(TicketRow.number).where(TicketRow.hall_id == hall_id).order_by(TicketRow.number)
        )
        return list(rows.scalars())

    return await bus.run(read)


@pytest.mark.slow
async def test_200_concurrent_issues_get_200_consecutive_numbers(bus: Bus) -> None:
    hall_id, service_id, _ = await make_hall(bus, counters=0)
    ids = await asyncio.gather(*(issue(bus, hall_id, service_id) for _ in range(200)))
    assert len(set(ids)) == 200
    assert await numbers(bus, hall_id) == [f"A{n:03d}" for n in range(1, 201)]
    assert await event_seqs(bus, hall_id) == list(range(1, 201))


async def test_a_rolled_back_issue_leaves_no_gap(bus: Bus) -> None:
    hall_id, service_id, _ = await make_hall(bus, counters=0)

    async def allocate_then_fail(uow: UnitOfWork) -> None:
        from datetime import date

        assert await uow.repo.allocate_seq(hall_id, date(2026, 3, 2), "A") == 1
        raise RuntimeError("printer exploded mid-issue")

    with pytest.raises(RuntimeError):
        await bus.run(allocate_then_fail)
    await issue(bus, hall_id, service_id)
    assert await numbers(bus, hall_id) == ["A001"]


async def test_racing_double_taps_yield_one_ticket(bus: Bus) -> None:
    hall_id, service_id, _ = await make_hall(bus, counters=0)
    ids = await asyncio.gather(*(issue(bus, hall_id, service_id, key="tap-1") for _ in range(10)))
    assert len(set(ids)) == 1
    await issue(bus, hall_id, service_id)
    # The nine losers rolled back their numbers: the next ticket is A002.
    assert await numbers(bus, hall_id) == ["A001", "A002"]
    # Nor did they leave a visit or an event behind (on PostgreSQL each issue is one
    # statement committed alone: a loser's fails whole).
    assert await event_seqs(bus, hall_id) == [1, 2]

    async def visits(uow: UnitOfWork) -> int:
        count = select(func.count()).select_from(VisitRow).where(VisitRow.hall_id == hall_id)
        return int(await uow.session.scalar(count) or 0)

    assert await bus.run(visits) == 2


@pytest.mark.slow
async def test_20_counters_calling_at_once_never_share_a_ticket(bus: Bus) -> None:
    hall_id, service_id, desks = await make_hall(bus, counters=20)
    issued = [await issue(bus, hall_id, service_id) for _ in range(100)]
    called: list[int] = []

    async def work_counter(counter_id: int, clerk_id: int) -> None:
        while True:
            result = await bus.execute(commands.CallNext(counter_id, clerk_id))
            if result.ticket_id is None:
                return
            called.append(result.ticket_id)
            await bus.execute(commands.MarkNoShow(counter_id, clerk_id))

    await asyncio.gather(*(work_counter(c, k) for c, k in desks))
    assert sorted(called) == sorted(issued), "every ticket called exactly once"

    assert await ticket_states(bus, hall_id) == {"no_show": 100}
    seqs = await event_seqs(bus, hall_id)
    # 20 counters opened, 100 issued, 100 called, 100 no-shows: one gapless sequence.
    assert seqs == list(range(1, 321))


async def test_two_counters_racing_for_the_last_ticket_get_it_once_and_no_error(bus: Bus) -> None:
    hall_id, service_id, desks = await make_hall(bus, counters=2)
    for _ in range(15):
        ticket = await issue(bus, hall_id, service_id)
        results = await asyncio.gather(
            *(bus.execute(commands.CallNext(c, k)) for c, k in desks), return_exceptions=True
        )
        assert not [r for r in results if isinstance(r, BaseException)], results
        winners = [(r, d) for r, d in zip(results, desks, strict=True) if r.ticket_id is not None]
        assert [r.ticket_id for r, _ in winners] == [ticket]
        losers = [r for r in results if r.ticket_id is None]
        assert [r.reason for r in losers] == ["nobody is waiting for this counter's matters"]
        counter_id, clerk_id = winners[0][1]
        await bus.execute(commands.MarkNoShow(counter_id, clerk_id))


async def test_a_clerks_double_clicks_call_once_and_act_once(bus: Bus) -> None:
    """A clerk's button pressed twice at once (or two buttons at once) at each of 4
    counters: a counter never has two tickets called, a ticket is never called twice or
    marked twice, and the press that lost is told why (busy, or no current ticket), as
    when pressed one after the other. Calling reads the counter's queue and whether it is
    busy in one statement, and acting reads the counter with its ticket in one, on
    PostgreSQL: each must see what the press that won committed."""
    hall_id, service_id, desks = await make_hall(bus, counters=4)
    issued = [await issue(bus, hall_id, service_id) for _ in range(40)]
    called: list[int] = []
    told: list[str] = []

    async def press(command: object) -> object:
        try:
            return await bus.execute(command)
        except DomainError as refused:
            told.append(str(refused))
            return refused

    async def clerk(counter_id: int, clerk_id: int) -> None:
        for round_ in range(5):
            calls = await asyncio.gather(
                press(commands.CallNext(counter_id, clerk_id)),
                press(commands.CallNext(counter_id, clerk_id)),
            )
            made = [r.ticket_id for r in calls if isinstance(r, CallResult)]
            assert len(made) == 1 and made[0] is not None, calls
            called.extend(made)
            busy = [r for r in calls if isinstance(r, DomainError)]
            assert len(busy) == 1 and "busy with" in str(busy[0]), calls
            second = (
                commands.MarkNoShow(counter_id, clerk_id)
                if round_ % 2
                else commands.Recall(counter_id, clerk_id)
            )
            acts = await asyncio.gather(
                press(commands.MarkNoShow(counter_id, clerk_id)), press(second)
            )
            refused = [r for r in acts if isinstance(r, DomainError)]
            # Two no-shows: one marks it, the other finds nothing current; a no-show and a
            # recall: the recall after the no-show finds nothing current either.
            if round_ % 2 or refused:
                assert len(refused) == 1 and "no current ticket" in str(refused[0]), acts
            else:  # the recall came first, then the no-show
                assert acts[0] == made[0] and acts[1] == made[0], acts

    await asyncio.gather(*(clerk(c, k) for c, k in desks))
    assert len(called) == len(set(called)) == 20
    assert set(called) <= set(issued)

    assert await ticket_states(bus, hall_id) == {"no_show": 20, "waiting": 20}
    seqs = await event_seqs(bus, hall_id)
    assert seqs == list(range(1, len(seqs) + 1))
    # Each ticket's events, in the log's order, are moves its state allowed: nothing was
    # recalled or marked after its no-show, nothing called twice.
    moves = {"TicketCalled": ("waiting", "called"), "TicketRecalled": ("called", "called"),
             "TicketMarkedNoShow": ("called", "no_show")}  # fmt: skip

    async def log(uow: UnitOfWork) -> list[tuple[str, Any]]:
        rows = await uow.session.execute(
            select(HallEventRow.name, HallEventRow.payload)
            .where(HallEventRow.hall_id == hall_id)
            .order_by(HallEventRow.seq)
        )
        return [(name, payload) for name, payload in rows if name in moves]

    state = dict.fromkeys(issued, "waiting")
    for name, payload in await bus.run(log):
        before, after = moves[name]
        assert state[payload["ticket_id"]] == before, (name, payload)
        state[payload["ticket_id"]] = after
    assert sorted(state.values()) == ["no_show"] * 20 + ["waiting"] * 20


async def test_a_rush_of_kiosks_tells_every_visitor_their_true_place(bus: Bus) -> None:
    """60 tickets issued at once, each answer read right after its commit (as the kiosk
    route does): projections are shared between the answers, yet every visitor is told
    their own place — 0, 1, 2 … 59 people ahead, each once — and a wait that grows with it."""
    from queue_server.service import views

    hall_id, service_id, _ = await make_hall(bus, counters=1)

    async def issue_and_read() -> views.TicketView:
        return await bus.run(views.ticket_view, await issue(bus, hall_id, service_id))

    answers = await asyncio.gather(*(issue_and_read() for _ in range(60)))
    by_number = sorted(answers, key=lambda view: view.number)
    assert [view.people_ahead for view in by_number] == list(range(60))
    waits = [view.estimate_minutes for view in by_number]
    assert all(w is not None for w in waits)
    assert waits == sorted(waits) and waits[-1] > waits[0]


async def test_call_next_ranks_from_the_heads_of_a_long_queue_as_from_all_of_it(
    bus: Bus, clock: FixedClock
) -> None:
    """A queue of 300 (ordinary, elderly and transfers, joined over three hours): the few
    dozen rows call-next reads rank first exactly as the whole queue would, and the calls
    follow that order."""
    import random
    from datetime import timedelta

    from queue_server.db.repository import hall_from_row, policy_config
    from queue_server.db.tables import HallRow
    from queue_server.domain.hours import business_day
    from queue_server.domain.model import ServiceLevel, TicketKind
    from queue_server.domain.policy import rank
    from queue_server.service.queue import CLAIM_TRIES

    hall_id, service_id, desks = await make_hall(bus, counters=1)
    dice = random.Random(7)
    start = clock.now()
    for minute in range(300):
        clock.set(start + timedelta(seconds=36 * minute))
        await bus.execute(
            commands.IssueTicket(
                hall_id, service_id, actor=commands.Actor(device_id=KIOSKS[hall_id]),
                priority=dice.choice(["none", "none", "none", "elderly"]),
                kind=dice.choice([TicketKind.WALK_IN] * 9 + [TicketKind.TRANSFER]),
            )
        )  # fmt: skip
    clock.set(start + timedelta(hours=3))
    profile = {service_id: ServiceLevel.PRIMARY}

    async def both(uow: UnitOfWork) -> tuple[list[int], list[int], int]:
        row = await uow.session.get(HallRow, hall_id)
        assert row is not None
        hall = hall_from_row(row)
        day = business_day(clock.now(), hall.tz)
        every = await uow.repo.waiting(hall_id, day, [service_id])
        heads = await uow.repo.waiting_heads(hall_id, day, [service_id], CLAIM_TRIES)
        config = policy_config(hall)
        whole = rank(profile, every, clock.now(), config, hall.tz)[:CLAIM_TRIES]
        few = rank(profile, heads, clock.now(), config, hall.tz)[:CLAIM_TRIES]
        ids = [c.candidate.ticket_id for c in whole], [c.candidate.ticket_id for c in few]
        return ids[0], ids[1], len(heads)

    whole, few, read = await bus.run(both)
    assert few == whole and len(whole) == CLAIM_TRIES
    assert read < 300 / 2
    counter_id, clerk_id = desks[0]
    called = []
    for _ in range(5):
        result = await bus.execute(commands.CallNext(counter_id, clerk_id))
        called.append(result.ticket_id)
        await bus.execute(commands.MarkNoShow(counter_id, clerk_id))
    assert called == whole[:5]


async def test_the_heads_read_are_every_appointment_and_the_first_of_each_group(
    bus: Bus, clock: FixedClock
) -> None:
    """waiting_heads (on PostgreSQL an index skip-scan, on SQLite a window) returns exactly
    every waiting appointment with its time, and of each matter, kind and priority the
    ``per_kind`` that joined first — checked against the whole queue read plainly, for
    each subset of three matters, with groups shorter and longer than the limit, tickets
    called, and a day before."""
    import itertools
    import random
    from datetime import timedelta

    from sqlalchemy import update

    from queue_server.db.repository import hall_from_row
    from queue_server.db.tables import HallRow
    from queue_server.domain.hours import business_day
    from queue_server.domain.model import TicketKind

    hall_id, first, desks = await make_hall(bus, counters=1)
    others = [
        (await bus.run(hall_config.create_service, hall_id,
                       {"name_zh": name, "name_en": name, "prefix": prefix,
                        "typical_minutes": 5})).id
        for name, prefix in (("B", "B"), ("C", "C"))
    ]  # fmt: skip
    services = [first, *others]
    dice = random.Random(12)
    start = clock.now()
    kinds = [TicketKind.WALK_IN] * 6 + [TicketKind.TRANSFER, TicketKind.APPOINTMENT]
    for minute in range(240):
        clock.set(start + timedelta(seconds=20 * minute))
        await bus.execute(
            commands.IssueTicket(
                hall_id, dice.choice(services[:2] if minute < 40 else services),
                actor=commands.Actor(device_id=KIOSKS[hall_id]),
                priority=dice.choice(["none", "none", "elderly"]), kind=dice.choice(kinds),
            )
        )  # fmt: skip
    counter_id, clerk_id = desks[0]
    for _ in range(7):  # called tickets are no longer waiting
        await bus.execute(commands.CallNext(counter_id, clerk_id))
        await bus.execute(commands.MarkNoShow(counter_id, clerk_id))

    async def check(uow: UnitOfWork) -> int:
        row = await uow.session.get(HallRow, hall_id)
        assert row is not None
        day = business_day(clock.now(), hall_from_row(row).tz)
        # Half of the appointments have their slot's time, as a checked-in booking does.
        await uow.session.execute(
            update(TicketRow)
            .where(TicketRow.kind == TicketKind.APPOINTMENT, TicketRow.id % 2 == 0)
            .values(due_at=clock.now() + timedelta(minutes=30))
        )
        checked = 0
        for size in (1, 2, 3):
            for chosen in itertools.combinations(services, size):
                every = await uow.repo.waiting(hall_id, day, list(chosen))
                for per_kind in (1, 4, 50):
                    heads = await uow.repo.waiting_heads(hall_id, day, chosen, per_kind)
                    expected = {c.ticket_id for c in every
                                if c.kind == TicketKind.APPOINTMENT and c.due_at is not None}  # fmt: skip
                    groups: dict[tuple[int, str, str], list[Any]] = {}
                    for c in every:
                        groups.setdefault((c.service_id, c.kind, c.priority), []).append(c)
                    for members in groups.values():
                        members.sort(key=lambda c: (c.queued_at, c.ticket_id))
                        expected |= {c.ticket_id for c in members[:per_kind]}
                    assert sorted(c.ticket_id for c in heads) == sorted(expected)
                    assert {c.ticket_id: c for c in heads}.items() <= {
                        c.ticket_id: c for c in every
                    }.items()  # the same fields as the plain read
                    checked += 1
        assert await uow.repo.waiting_heads(hall_id, day - timedelta(days=1), services, 50) == []
        return checked

    assert await bus.run(check) == 7 * 3


class Transactions:
    """Counts the transactions begun on the bus's engine: by SQLAlchemy, and on the
    driver's own connection (``driven.begin``, the one statement "BEGIN" asyncpg logs:
    its own transactions, SQLAlchemy's, begin with "BEGIN;" or "BEGIN ISOLATION ...")."""

    def __init__(self, bus: Bus) -> None:
        self.count = 0
        engine = bus.sessions.kw["bind"].sync_engine
        event.listen(engine, "begin", self._begun)
        event.listen(engine, "checkout", self._checked_out)

    def _begun(self, *args: object) -> None:
        self.count += 1

    def _checked_out(self, dbapi_connection: Any, *args: object) -> None:
        driver = getattr(dbapi_connection, "driver_connection", None)
        if hasattr(driver, "add_query_logger"):
            driver.add_query_logger(self._logged)

    def _logged(self, record: Any) -> None:
        if record.query == "BEGIN":
            self.count += 1


async def test_counters_calling_at_once_are_each_answered_from_their_own_transaction(
    bus: Bus, database_url: str
) -> None:
    """The clerk's answer (the ticket called, at which counter) is read in the command's
    own transaction, before it commits: 8 counters calling at once are each answered with
    a different ticket, called at their own counter, as the database has it after; a call
    and a no-show take one transaction each with their answers (on PostgreSQL the no-show
    none: its statements commit alone); a ticket returned to the queue is answered after
    the commit (its wait is told from the committed log)."""
    from queue_server.service import views

    hall_id, service_id, desks = await make_hall(bus, counters=8)
    for _ in range(10):
        await issue(bus, hall_id, service_id)
    numbers_of = {counter_id: n + 1 for n, (counter_id, _) in enumerate(desks)}
    answers = await asyncio.gather(
        *(
            bus.execute_answered(commands.CallNext(c, k), views.settled_ticket_view)
            for c, k in desks
        )
    )
    called = [view for _, view in answers]
    assert all(view is not None for view in called)
    assert len({view.id for view in called if view}) == 8
    for (counter_id, _), (result, view) in zip(desks, answers, strict=True):
        assert view is not None and result.ticket_id == view.id
        assert (view.state, view.counter_number) == ("called", numbers_of[counter_id])
        assert view == await bus.run(views.ticket_view, view.id)

    (counter_id, clerk_id), *_ = desks
    transactions = Transactions(bus)
    ticket_id, view = await bus.execute_answered(
        commands.MarkNoShow(counter_id, clerk_id), views.settled_ticket_view
    )
    assert view is not None and (view.id, view.state) == (ticket_id, "no_show")
    result, view = await bus.execute_answered(
        commands.CallNext(counter_id, clerk_id), views.settled_ticket_view
    )
    assert view is not None and view.state == "called" and result.ticket_id == view.id
    assert transactions.count == (1 if database_url.startswith("postgresql") else 2)
    ticket_id, view = await bus.execute_answered(
        commands.ReturnToQueue(counter_id, clerk_id), views.settled_ticket_view
    )
    assert view is None  # waiting again: read after the commit, with its estimate
    back = await bus.run(views.ticket_view, ticket_id)
    assert back.state == "waiting" and back.people_ahead is not None


@pytest.fixture
async def pg_bus(pg_url: str, clock: FixedClock) -> AsyncIterator[Bus]:
    """A bus on PostgreSQL only: row locks another transaction holds (SQLite has none)."""
    from queue_server.db.engine import create_engine, session_factory

    engine = create_engine(pg_url, pool_size=5)
    try:
        yield Bus(session_factory(engine), clock)
    finally:
        await engine.dispose()


async def queue_of(bus: Bus, clock: FixedClock, hall_id: int, service_id: int, n: int) -> list[int]:
    """``n`` walk-ins a minute apart: the policy calls them in this order."""
    from datetime import timedelta

    start, ids = clock.now(), []
    for minute in range(n):
        clock.set(start + timedelta(minutes=minute))
        ids.append(await issue(bus, hall_id, service_id))
    clock.set(start + timedelta(minutes=n))
    return ids


async def test_a_clerks_action_on_a_ticket_that_moved_since_it_was_read_is_run_again(
    pg_bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A no-show, recall, start or return reads the ticket without a lock and writes its
    change only if the ticket has not moved since (PostgreSQL). Another action committed
    in between: the change is not written over it, and the action runs again on the
    ticket as it is then — two recalls count two, and a no-show after the ticket went
    back to the queue is refused, with no event of it."""
    from queue_server.db import driven

    bus = pg_bus
    hall_id, service_id, desks = await make_hall(bus, counters=1)
    counter_id, clerk_id = desks[0]
    ticket = await issue(bus, hall_id, service_id)
    await bus.execute(commands.CallNext(counter_id, clerk_id))
    read = driven.counter_and_active
    meanwhile: list[object] = []
    reads = 0

    async def with_a_change_in_between(*args: Any) -> Any:
        nonlocal reads
        reads += 1
        found = await read(*args)
        if meanwhile:  # committed by another transaction after this read
            await bus.execute(meanwhile.pop())
        return found

    # PostgreSQL reads on the driver's connection (queue._on_current_driven).
    monkeypatch.setattr(driven, "counter_and_active", with_a_change_in_between)
    meanwhile.append(commands.Recall(counter_id, clerk_id))
    assert await bus.execute(commands.Recall(counter_id, clerk_id)) == ticket
    assert reads == 3  # the recall, the one in between, the recall again

    async def ticket_and_log(uow: UnitOfWork) -> tuple[Any, list[Any]]:
        row = await uow.session.get(TicketRow, ticket)
        log = await uow.session.execute(
            select(HallEventRow.name, HallEventRow.payload)
            .where(HallEventRow.hall_id == hall_id, HallEventRow.name == "TicketRecalled")
            .order_by(HallEventRow.seq)
        )
        return (row.state, row.call_count), [p["call_count"] for _, p in log]

    assert await bus.run(ticket_and_log) == (("called", 3), [2, 3])

    meanwhile.append(commands.ReturnToQueue(counter_id, clerk_id))
    with pytest.raises(DomainError, match="has no current ticket"):
        await bus.execute(commands.MarkNoShow(counter_id, clerk_id))
    assert (await bus.run(ticket_and_log))[0] == ("waiting", 0)
    names = await bus.run(
        lambda uow: uow.session.scalars(
            select(HallEventRow.name).where(HallEventRow.hall_id == hall_id)
        )
    )
    assert "TicketMarkedNoShow" not in list(names)
    seqs = await event_seqs(bus, hall_id)
    assert seqs == list(range(1, len(seqs) + 1))


async def test_a_clerks_action_committed_alone_is_never_run_twice_for_its_answer(
    pg_bus: Bus,
) -> None:
    """On PostgreSQL a recall is committed by its one statement before the clerk's answer
    is made. An answer that fails then (even with an error that would run a transaction
    again) leaves the recall as it is, counted once and logged once, and the clerk's
    screen reads the ticket after."""
    from queue_server.service.errors import RetryTransaction

    bus = pg_bus
    hall_id, service_id, desks = await make_hall(bus, counters=1)
    counter_id, clerk_id = desks[0]
    ticket = await issue(bus, hall_id, service_id)
    await bus.execute(commands.CallNext(counter_id, clerk_id))
    answers = 0

    async def failing(uow: UnitOfWork, ticket_id: int) -> object:
        nonlocal answers
        answers += 1
        raise RetryTransaction("the answer's read lost a race")

    result, view = await bus.execute_answered(commands.Recall(counter_id, clerk_id), failing)
    assert (result, view, answers) == (ticket, None, 1)

    async def recalls(uow: UnitOfWork) -> tuple[int, int]:
        row = await uow.session.get(TicketRow, ticket)
        logged = await uow.session.scalar(
            select(func.count()).where(
                HallEventRow.hall_id == hall_id, HallEventRow.name == "TicketRecalled"
            )
        )
        return row.call_count, int(logged or 0)

    assert await bus.run(recalls) == (2, 1)


async def test_call_next_reads_deeper_when_other_counters_hold_its_first_choices(
    pg_bus: Bus, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Call-next first reads and ranks the heads of the queue (FIRST_TRIES each); when
    other transactions hold every one of them, it reads deeper (CLAIM_TRIES) and calls the
    first ticket nobody holds — not 'nobody is waiting' — and once they let go, the first
    in line is called next, from the first read alone."""
    from queue_server.db import driven
    from queue_server.service.queue import CLAIM_TRIES, FIRST_TRIES

    bus = pg_bus
    hall_id, service_id, desks = await make_hall(bus, counters=1)
    ids = await queue_of(bus, clock, hall_id, service_id, FIRST_TRIES + 6)
    held = ids[: FIRST_TRIES + 2]
    counter_id, clerk_id = desks[0]
    depths: list[int] = []
    heads, first_heads = driven.waiting_heads, driven.waiting_heads_unless_busy

    async def counted(*args: Any) -> Any:
        depths.append(args[4])  # the driver's connection, hall, day, matters, per_kind
        return await heads(*args)

    async def counted_first(*args: Any) -> Any:
        depths.append(args[4])
        return await first_heads(*args)

    # PostgreSQL's call-next reads on the driver's connection (queue._call_next_driven).
    monkeypatch.setattr(driven, "waiting_heads", counted)
    monkeypatch.setattr(driven, "waiting_heads_unless_busy", counted_first)
    async with bus.sessions() as other, other.begin():
        locked = await other.execute(
            select(TicketRow.id).where(TicketRow.id.in_(held)).with_for_update()
        )
        assert len(locked.all()) == len(held)
        async with asyncio.timeout(30):  # a claim that waited on them would never return
            result = await bus.execute(commands.CallNext(counter_id, clerk_id))
        assert result.ticket_id == ids[len(held)], result
        assert depths == [FIRST_TRIES, CLAIM_TRIES]
    await bus.execute(commands.MarkNoShow(counter_id, clerk_id))
    depths.clear()
    result = await bus.execute(commands.CallNext(counter_id, clerk_id))
    assert result.ticket_id == ids[0]
    assert depths == [FIRST_TRIES]


@pytest.mark.parametrize("queued", [3, 20], ids=["within the first read", "read deeper"])
async def test_call_next_waits_for_a_claim_that_comes_to_nothing(
    pg_bus: Bus, clock: FixedClock, queued: int
) -> None:
    """A queue every ticket of which another counter's claim holds (shorter than the first
    read, or found whole only by the deeper one): call-next waits for the claims to settle
    instead of answering 'nobody is waiting', and calls the first in line when the other
    transaction lets it go without calling it."""
    from queue_server.service.queue import CLAIM_TRIES, FIRST_TRIES

    assert queued < FIRST_TRIES or FIRST_TRIES < queued < CLAIM_TRIES
    bus = pg_bus
    hall_id, service_id, desks = await make_hall(bus, counters=1)
    ids = await queue_of(bus, clock, hall_id, service_id, queued)
    counter_id, clerk_id = desks[0]
    async with bus.sessions() as other:
        async with other.begin():
            await other.execute(select(TicketRow.id).where(TicketRow.id.in_(ids)).with_for_update())
            calling = asyncio.ensure_future(bus.execute(commands.CallNext(counter_id, clerk_id)))
            # Wait for the call to wait on those locks (PostgreSQL shows it), then let go.
            # (Bounded: a call stuck on anything else fails the test, not the suite.)
            async with asyncio.timeout(30):
                await wait_until_blocked_by(other, calling)
            assert not calling.done(), await calling
            await other.rollback()
        async with asyncio.timeout(30):
            result = await calling
    assert result.ticket_id == ids[0], result


async def wait_until_blocked_by(other: Any, calling: asyncio.Future[Any]) -> None:
    """Until some session waits for a lock ``other`` holds (or ``calling`` ended)."""
    while not calling.done():
        # Read live (pg_stat_activity would be kept for the transaction).
        waiting = await other.scalar(
            text(
                "SELECT count(*) FROM pg_locks WHERE NOT granted"
                " AND pg_backend_pid() = ANY(pg_blocking_pids(pid))"
            )
        )
        if waiting:
            return
        await asyncio.sleep(0.01)


@pytest.mark.postgres
async def test_a_crowd_of_issues_waits_its_turn_in_the_process_not_on_the_halls_rows(
    pg_url: str,
) -> None:
    """On PostgreSQL at most ``queue.ISSUING_AT_ONCE`` of a process's issues in a hall wait
    in the database for the hall's rows at once (a crowd of backends waiting on one row
    costs the database more than it gives); the others wait their turn in the process,
    holding no connection, and another hall's kiosks are not held up. Once the rows are free, every one is issued,
    numbered without gaps."""
    import asyncpg

    from queue_server.clock import SystemClock
    from queue_server.db.engine import create_engine, session_factory
    from queue_server.service import queue
    from tests.conftest import _plain_dsn

    engine = create_engine(pg_url, pool_size=25)
    holder = await asyncpg.connect(_plain_dsn(pg_url))
    # Outside a transaction: one keeps its first look at pg_stat_activity to its end.
    watcher = await asyncpg.connect(_plain_dsn(pg_url))
    try:
        bus = Bus(session_factory(engine), SystemClock())
        hall_id, service_id, _ = await make_hall(bus, counters=0)
        crowd = 3 * queue.ISSUING_AT_ONCE
        holding = holder.transaction()
        await holding.start()
        await holder.execute("SELECT 1 FROM halls WHERE id = $1 FOR UPDATE", hall_id)
        issues = [asyncio.create_task(issue(bus, hall_id, service_id)) for _ in range(crowd)]
        gate = queue._issuing_turn(hall_id)  # this event loop's (the tasks share it)

        def in_the_process() -> int:
            return len(gate._waiters or ())  # type: ignore[attr-defined]

        async def in_the_database() -> int:
            return int(
                await watcher.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'"
                )
            )

        try:
            async with asyncio.timeout(20):  # until every issue waits somewhere
                while (  # noqa: ASYNC110 - the database's side has no event to wait on
                    in_the_process() + (waiting := await in_the_database()) < crowd
                    or in_the_process() != crowd - queue.ISSUING_AT_ONCE
                ):
                    await asyncio.sleep(0.01)
            assert waiting == queue.ISSUING_AT_ONCE
            # Those waiting in the process hold none of the pool's connections either.
            assert engine.sync_engine.pool.checkedout() == queue.ISSUING_AT_ONCE  # type: ignore[attr-defined]
            # Another hall's kiosks are not held up by this hall's crowd.
            other_hall, other_service, _ = await make_hall(bus, counters=0)
            async with asyncio.timeout(10):
                await issue(bus, other_hall, other_service)
            assert await numbers(bus, other_hall) == ["A001"]
        finally:
            await holding.rollback()
        ids = await asyncio.gather(*issues)
        assert len(set(ids)) == crowd
        assert await numbers(bus, hall_id) == [f"A{n:03d}" for n in range(1, crowd + 1)]
        assert await event_seqs(bus, hall_id) == list(range(1, crowd + 1))
    finally:
        await holder.close()
        await watcher.close()
        await engine.dispose()
