"""The hall's shared projection extended with walk-ins (service/estimates.py), on both
databases: a walk-in the floor read whole already holds is counted once, and later
extensions add each walk-in once."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from msgspec import structs
from sqlalchemy import event, make_url, select, text

from queue_server.clock import FixedClock
from queue_server.db import repository
from queue_server.db.engine import create_engine
from queue_server.db.repository import hall_from_row, policy_config
from queue_server.db.tables import HallRow
from queue_server.domain.estimate import Told, Traced, project_traced, tell_traced
from queue_server.domain.floor import Candidate, Floor
from queue_server.domain.hours import business_day
from queue_server.domain.model import Hall
from queue_server.domain.policy import Chooser, chooser
from queue_server.service import commands, estimates, hall_config
from queue_server.service.bus import Bus
from queue_server.service.floor import hall_floor
from queue_server.service.unit_of_work import UnitOfWork
from tests.conftest import _admin_execute, _plain_dsn
from tests.integration.test_concurrency import issue, make_hall


async def _projected_whole(uow: UnitOfWork, hall_id: int) -> tuple[Traced, Chooser]:
    """The hall's floor read whole now, projected with its policy."""
    row = await uow.repo.hall_row(hall_id)
    assert row is not None
    hall = hall_from_row(row)
    now = uow.clock.now()
    floor = await hall_floor(uow, hall_id, business_day(now, hall.tz), now)
    choose = chooser(policy_config(hall), hall.tz, reasons=False)
    return project_traced(floor, choose), choose


async def _hall_now(bus: Bus, hall_id: int) -> tuple[Hall, int]:
    """The hall as it is now, and its latest event number."""

    async def read(uow: UnitOfWork) -> tuple[Hall, int]:
        found = await uow.repo.hall_row(hall_id)
        assert found is not None
        return hall_from_row(found), found.event_seq

    return await bus.run(read)


async def test_an_extended_projection_holds_each_walk_in_once(bus: Bus) -> None:
    hall_id, service_id, _ = await make_hall(bus, counters=1)
    for _ in range(3):
        await issue(bus, hall_id, service_id)

    async def event_seq(uow: UnitOfWork) -> int:
        found = await uow.session.scalar(select(HallRow.event_seq).where(HallRow.id == hall_id))
        return int(found or 0)

    seq_before = await bus.run(event_seq)
    await issue(bus, hall_id, service_id)

    # The race a floor read whole allows for: its event number read before the fourth
    # ticket committed, its floor after — the floor holds a walk-in logged after its number.
    async def read_whole(uow: UnitOfWork) -> estimates._Projection:
        traced, choose = await _projected_whole(uow, hall_id)
        return estimates._Projection(time.monotonic(), seq_before, traced, choose, whole=True)

    async def extended(uow: UnitOfWork, last: estimates._Projection) -> estimates._Projection:
        found = await estimates._extended(uow, hall_id, last)
        assert found is not None, "only walk-ins joined: the projection is extended"
        return found

    projection = await bus.run(read_whole)
    assert len(projection.floor.waiting) == 4
    for issued in (5, 6, 7):
        newest = await issue(bus, hall_id, service_id)
        projection = await bus.run(extended, projection)
        ids = [c.ticket_id for c in projection.floor.waiting]
        assert len(ids) == len(set(ids)) == issued, ids
        assert projection.traced.real == issued
        told = tell_traced(newest, projection.traced, projection.floor.now, projection.choose)
        assert told is not None and told.people_ahead == issued - 1


async def test_askers_whose_walk_ins_a_floor_read_whole_holds_are_each_counted_once(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same race for answers that know their own walk-in (``estimates.Joined``): a
    floor read whole at event number S holds walk-ins A (logged after S) and B (after A).
    A's answer must not extend it with A alone, without the log: the projection would
    then stop before B, and B's answer would add B a second time. Each walk-in is held
    once, and each told as a floor read whole tells."""
    monkeypatch.setattr(estimates, "KEEP_SECONDS", 3600.0)
    hall_id, service_id, _ = await make_hall(bus, counters=1)
    for _ in range(3):
        await issue(bus, hall_id, service_id)
    hall, seq_before = await _hall_now(bus, hall_id)
    a = await issue(bus, hall_id, service_id)
    _, need_a = await _hall_now(bus, hall_id)
    b = await issue(bus, hall_id, service_id)
    _, need_b = await _hall_now(bus, hall_id)

    async def read_whole(uow: UnitOfWork) -> tuple[estimates._Projection, dict[int, Candidate]]:
        traced, choose = await _projected_whole(uow, hall_id)
        made = estimates._Projection(time.monotonic(), seq_before, traced, choose, whole=True)
        return made, {c.ticket_id: c for c in traced.floor.waiting}

    whole, waiting = await bus.run(read_whole)
    assert len(waiting) == 5
    estimates._projections[hall_id] = whole

    async def told(uow: UnitOfWork, ticket: int, need: int, logged: int) -> Told | None:
        joined = estimates.Joined(waiting[ticket], logged)
        return await estimates.told_at(uow, hall, need, ticket, joined)

    told_a = await bus.read(told, a, need_a, need_a - seq_before)
    told_b = await bus.read(told, b, need_b, need_b - need_a)
    kept = estimates._projections[hall_id]
    ids = [c.ticket_id for c in kept.floor.waiting]
    assert len(ids) == len(set(ids)) == 5 and kept.traced.real == 5, ids
    assert told_a is not None and told_a.people_ahead == 3
    assert told_b is not None and told_b.people_ahead == 4
    assert told_b == await _fresh_told(bus, hall_id, b)


async def test_a_request_that_has_read_is_told_while_another_waits_to_begin(bus: Bus) -> None:
    """A follow-link read has read its ticket in its transaction (on SQLite that holds the
    database's write lock) when it needs the hall's projection; a follower's feed has
    begun one but cannot read until that lock is free. Neither may wait for the other:
    both are answered, and the shared projection costs nobody the busy timeout (30 s)."""
    hall_id, service_id, _ = await make_hall(bus, counters=1)
    ticket = await issue(bus, hall_id, service_id)
    hall, seq = await _hall_now(bus, hall_id)
    estimates.forget()
    has_read, feed_began = asyncio.Event(), asyncio.Event()
    tries: list[str] = []

    async def follow_link(uow: UnitOfWork) -> Told | None:
        tries.append("follow link")
        read = await uow.repo.hall_row(hall_id)  # the transaction has begun
        assert read is not None
        has_read.set()
        await feed_began.wait()
        # Every chance for the feed to get as far as it can before this read asks.
        for _ in range(50):
            if hall_id in estimates._making:
                break
            await asyncio.sleep(0)
        return await estimates.told(uow, read, ticket)

    async def feed(uow: UnitOfWork) -> Told | None:
        tries.append("feed")
        return await estimates.told_at(uow, hall, seq, ticket)

    reading = asyncio.ensure_future(bus.run(follow_link))
    await has_read.wait()
    feeding = asyncio.ensure_future(bus.run(feed))
    feed_began.set()
    told = await asyncio.gather(reading, feeding)
    assert [t.people_ahead if t else None for t in told] == [0, 0]
    # Each answered at its first try: none failed waiting for the other (a unit of work
    # busy past SQLite's timeout is tried again).
    assert sorted(tries) == ["feed", "follow link"]


async def test_a_kiosk_rush_extends_the_shared_projection_instead_of_making_it_anew(
    bus: Bus,
) -> None:
    """Each walk-in's estimate needs the projection to hold them: the one kept is extended
    with them (reading only the log since), not made again from the whole floor."""
    hall_id, service_id, _ = await make_hall(bus, counters=1)

    async def told_now(uow: UnitOfWork, ticket_id: int) -> Told | None:
        row = await uow.repo.hall_row(hall_id)
        assert row is not None
        return await estimates.told(uow, row, ticket_id)

    first = await issue(bus, hall_id, service_id)
    assert await bus.run(told_now, first) is not None
    assert estimates._projections[hall_id].whole
    for ahead in (1, 2, 3):
        ticket = await issue(bus, hall_id, service_id)
        told = await bus.run(told_now, ticket)
        assert told is not None and told.people_ahead == ahead
        kept = estimates._projections[hall_id]
        assert not kept.whole, "extended with the walk-in, not made again"
        assert kept.traced.real == ahead + 1


async def _fresh_told(bus: Bus, hall_id: int, ticket_id: int) -> Told | None:
    """What a projection of the floor read whole now tells ``ticket_id``."""

    async def read(uow: UnitOfWork) -> Told | None:
        traced, choose = await _projected_whole(uow, hall_id)
        return tell_traced(ticket_id, traced, uow.clock.now(), choose)

    return await bus.read(read)


async def _told_now(bus: Bus, hall_id: int, ticket_id: int) -> Told | None:
    async def told(uow: UnitOfWork) -> Told | None:
        row = await uow.repo.hall_row(hall_id)
        assert row is not None
        return await estimates.told(uow, row, ticket_id)

    return await bus.read(told)


async def _a_walk_in_told(bus: Bus) -> tuple[int, int, int, estimates._Projection]:
    """A hall of one counter and its one walk-in, told its wait: the hall, its matter, the
    ticket, and the projection it was told from (read whole)."""
    hall_id, service_id, _ = await make_hall(bus, counters=1)
    first = await issue(bus, hall_id, service_id)
    await _told_now(bus, hall_id, first)
    return hall_id, service_id, first, estimates._projections[hall_id]


WHO_PLAYS = pytest.mark.parametrize("beside", [True, False], ids=["beside", "by-the-asker"])
"""A projection due is played again (or read again) beside the answers, which meanwhile are
told from it as it was; past ``TOLD_PAST_DUE_AT_MOST`` (0 here) the asker does it itself."""


async def _told_when_due(
    bus: Bus, hall_id: int, ticket_id: int, beside: bool, monkeypatch: pytest.MonkeyPatch
) -> Told | None:
    """What the visitor of ``ticket_id`` is told once the hall's projection, due, has been
    made again: by the asker, or beside (the first answer told from the one kept)."""
    if not beside:
        monkeypatch.setattr(estimates, "TOLD_PAST_DUE_AT_MOST", 0.0)
        return await _told_now(bus, hall_id, ticket_id)
    kept = estimates._projections[hall_id]
    # Held until looked at: a play beside that ran at once could land before the answer
    # that started it is over (a loaded machine), and the test would see it done.
    held = _HeldPlay(monkeypatch)
    seen = await _told_now(bus, hall_id, ticket_id)  # starts the play beside
    assert hall_id in estimates._beside, "due: played again beside the answers"
    assert estimates._projections[hall_id].made == kept.made, "told from the one kept"
    held.go.set()
    await estimates.refreshed(hall_id)
    assert estimates._projections[hall_id].made > kept.made
    assert seen is not None, "an answer at once, from the one kept"
    told = await _told_now(bus, hall_id, ticket_id)
    # That answer found the new one due as well (``KEEP_SECONDS`` is 0 here) and started
    # another play beside: let it land. Still running when the test moved the clock, it
    # read the floor before the move and replaced what the next answer extends.
    await estimates.refreshed(hall_id)
    return told


@WHO_PLAYS
async def test_a_projection_past_its_seconds_is_played_again_from_its_floor(
    bus: Bus, clock: FixedClock, monkeypatch: pytest.MonkeyPatch, beside: bool
) -> None:
    """Nothing logged since the floor was read, or only walk-ins: past ``KEEP_SECONDS``
    the projection is played again from now with the waiting tickets it kept up, without
    reading everyone waiting again, and tells what a floor read whole now would (a busy
    counter's remaining service reckoned from now, not from when the floor was read)."""
    hall_id, service_id, desks = await make_hall(bus, counters=2)
    tickets = [await issue(bus, hall_id, service_id) for _ in range(4)]
    counter_id, clerk_id = desks[0]
    await bus.execute(commands.CallNext(counter_id, clerk_id))  # busy from now on
    last = tickets[-1]
    assert await _told_now(bus, hall_id, last) == await _fresh_told(bus, hall_id, last)
    read_whole = estimates._projections[hall_id]
    assert read_whole.whole

    monkeypatch.setattr(estimates, "KEEP_SECONDS", 0.0)  # every projection is past its time
    clock.advance(minutes=3)
    told = await _told_when_due(bus, hall_id, last, beside, monkeypatch)  # nothing logged since
    again = estimates._projections[hall_id]
    assert again.read == read_whole.read, "played again, not read whole"
    assert again.made > read_whole.made
    assert again.floor.now == clock.now()
    assert told == await _fresh_told(bus, hall_id, last)
    assert told is not None and told.minutes is not None

    clock.advance(minutes=2)
    newest = await issue(bus, hall_id, service_id)  # a walk-in logged since
    told = await _told_when_due(bus, hall_id, newest, beside, monkeypatch)
    kept = estimates._projections[hall_id]
    assert kept.read == read_whole.read and kept.floor.now == clock.now()
    assert told == await _fresh_told(bus, hall_id, newest)
    assert told is not None and told.people_ahead == len(tickets) - 1


@WHO_PLAYS
async def test_a_projection_played_again_reads_the_halls_setup_again(
    bus: Bus, clock: FixedClock, monkeypatch: pytest.MonkeyPatch, beside: bool
) -> None:
    """What changes without an event (a counter's matters, a matter switched off, the
    queue policy) is read again when a projection is played again: only the waiting
    tickets are kept up from the log."""
    hall_id, service_id, _ = await make_hall(bus, counters=1)
    ticket = await issue(bus, hall_id, service_id)
    told = await _told_now(bus, hall_id, ticket)
    assert told is not None and told.minutes is not None
    before = estimates._projections[hall_id]
    await bus.run(hall_config.update_service, hall_id, service_id, {"active": False})
    monkeypatch.setattr(estimates, "KEEP_SECONDS", 0.0)
    clock.advance(seconds=10)
    if beside:
        seen = await _told_now(bus, hall_id, ticket)
        assert seen == told, "told from the one kept while it is played again"
        await estimates.refreshed(hall_id)
    monkeypatch.setattr(estimates, "TOLD_PAST_DUE_AT_MOST", 0.0)  # now the asker plays
    told = await _told_now(bus, hall_id, ticket)
    assert estimates._projections[hall_id].read == before.read, "played again, not read whole"
    assert told == await _fresh_told(bus, hall_id, ticket)
    assert told is not None and told.minutes is None, "no open counter serves the matter now"


@WHO_PLAYS
async def test_the_floor_is_read_whole_again_after_its_half_minute(
    bus: Bus, clock: FixedClock, monkeypatch: pytest.MonkeyPatch, beside: bool
) -> None:
    """Everyone waiting is read again, past ``READ_AGAIN_SECONDS``, whatever the log says."""
    hall_id, service_id, _, before = await _a_walk_in_told(bus)
    monkeypatch.setattr(estimates, "KEEP_SECONDS", 3600.0)
    monkeypatch.setattr(estimates, "READ_AGAIN_SECONDS", 0.0)
    clock.advance(minutes=1)
    if not beside:
        monkeypatch.setattr(estimates, "TOLD_PAST_DUE_AT_MOST", 0.0)
    # The next walk-in's answer needs the log read: the projection is found due.
    second = await issue(bus, hall_id, service_id)
    told = await _told_now(bus, hall_id, second)
    assert told is not None and told.people_ahead == 1
    await estimates.refreshed(hall_id)
    after = estimates._projections[hall_id]
    assert after.whole and after.read > before.read
    assert await _told_now(bus, hall_id, second) == await _fresh_told(bus, hall_id, second)
    # Who waited before is read as before: the same candidates, not made again.
    earlier = {c.ticket_id: c for c in before.floor.waiting}
    assert earlier and all(
        c is earlier[c.ticket_id] for c in after.floor.waiting if c.ticket_id in earlier
    )


class _HeldPlay:
    """``project_traced`` as the estimates module calls it: a play off the event loop's
    thread (beside the answers) is held until let go; the threads of those are noted."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.loop_thread = threading.get_ident()
        self.started = threading.Event()
        self.go = threading.Event()
        self.threads: list[int] = []
        monkeypatch.setattr(estimates, "project_traced", self)

    def __call__(self, floor: Floor, choose: Chooser) -> Traced:
        if threading.get_ident() != self.loop_thread:
            self.threads.append(threading.get_ident())
            self.started.set()
            assert self.go.wait(30), "the test never let the play go"
        return project_traced(floor, choose)


async def _held_beside(
    bus: Bus, clock: FixedClock, monkeypatch: pytest.MonkeyPatch, waiting: int = 1
) -> tuple[int, int, list[tuple[int, int]], list[int], _HeldPlay]:
    """A hall of one counter with ``waiting`` walk-ins, whose projection, due, is being
    played again beside the answers, held in its thread: the hall, its matter, its desks,
    the tickets and the held play."""
    hall_id, service_id, desks = await make_hall(bus, counters=1)
    tickets = [await issue(bus, hall_id, service_id) for _ in range(waiting)]
    await _told_now(bus, hall_id, tickets[-1])
    monkeypatch.setattr(estimates, "KEEP_SECONDS", 0.0)
    # A play beside ends after this (the test holds it as long as a slow machine needs).
    monkeypatch.setattr(estimates, "TOLD_PAST_DUE_AT_MOST", 60.0)
    clock.advance(seconds=30)
    held = _HeldPlay(monkeypatch)
    await _told_now(bus, hall_id, tickets[-1])  # due: played again beside
    assert await asyncio.to_thread(held.started.wait, 30)
    return hall_id, service_id, desks, tickets, held


async def test_walk_ins_told_while_the_projection_is_played_again_beside(
    bus: Bus, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a hall's projection is played again beside the answers (in a thread: the event
    loop goes on), each walk-in is told at once from the one kept, extended with them; the
    projection played again then holds them too, and tells what a floor read whole does."""
    hall_id, service_id, _, (first,), held = await _held_beside(bus, clock, monkeypatch)
    joined = [await issue(bus, hall_id, service_id) for _ in range(3)]
    for ahead, ticket in enumerate(joined, start=1):
        told = await _told_now(bus, hall_id, ticket)  # answered while the play is held
        assert told is not None and told.people_ahead == ahead
    assert held.threads and threading.get_ident() not in held.threads, "played off the loop"
    assert hall_id in estimates._beside, "still held"
    held.go.set()
    await estimates.refreshed(hall_id)
    monkeypatch.setattr(estimates, "KEEP_SECONDS", 3600.0)
    for ahead, ticket in enumerate(joined, start=1):
        told = await _told_now(bus, hall_id, ticket)
        assert told == await _fresh_told(bus, hall_id, ticket)
        assert told is not None and told.people_ahead == ahead
    kept = estimates._projections[hall_id]
    assert sorted(c.ticket_id for c in kept.floor.waiting) == [first, *joined]


async def test_a_projection_made_anew_meanwhile_is_not_replaced_by_one_played_beside(
    bus: Bus, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call while the projection is played again beside: the next answer reads the floor
    whole (a call is no walk-in); the play beside, from before the call, then ends and is
    dropped, and the visitor is told who is left."""
    hall_id, _, desks, tickets, held = await _held_beside(bus, clock, monkeypatch, waiting=3)
    counter_id, clerk_id = desks[0]
    await bus.execute(commands.CallNext(counter_id, clerk_id))
    told = await _told_now(bus, hall_id, tickets[-1])  # read whole, played on the loop
    made_anew = estimates._projections[hall_id]
    assert made_anew.whole and told is not None and told.people_ahead == 1
    assert hall_id in estimates._beside, "still held"
    held.go.set()
    await estimates.refreshed(hall_id)
    assert estimates._projections[hall_id] is made_anew, "the play from before the call dropped"
    monkeypatch.setattr(estimates, "KEEP_SECONDS", 3600.0)
    told = await _told_now(bus, hall_id, tickets[-1])
    assert told == await _fresh_told(bus, hall_id, tickets[-1])
    assert told is not None and told.people_ahead == 1


class _CountedSessions:
    """The bus's read sessions, each one made counted (``made``)."""

    def __init__(self, sessions: Any) -> None:
        self._sessions = sessions
        self.kw = sessions.kw
        self.made: list[object] = []

    def __call__(self, **kw: Any) -> object:
        session = self._sessions(**kw)
        self.made.append(session)
        return session


async def test_an_answer_told_from_the_kept_projection_makes_no_session(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a kiosk rush most answers are told from a projection another request made: such
    an answer reads nothing, and its unit of work makes no session to roll back and close
    (``UnitOfWork.session`` is made when first used). One that has to make the projection
    makes one, reads, and closes it. One that extends the projection with the walk-ins
    since reads the hall's log: on PostgreSQL on the driver's connection, with no session
    (``UnitOfWork.connect``), and is told what a floor read whole tells."""
    # Kept for as long as the test takes, however slow the machine (5 s otherwise).
    monkeypatch.setattr(estimates, "KEEP_SECONDS", 3600.0)
    hall_id, service_id, _ = await make_hall(bus, counters=1)
    first = await issue(bus, hall_id, service_id)
    second = await issue(bus, hall_id, service_id)
    hall, seq = await _hall_now(bus, hall_id)
    reads = bus.reads
    counted = _CountedSessions(reads)
    monkeypatch.setattr(bus, "reads", counted)

    async def told(ticket_id: int, need: int) -> Told | None:
        return await bus.read(estimates.told_at, hall, need, ticket_id)

    told_second = await told(second, seq)
    assert len(counted.made) == 1, "the first answer makes the projection: it reads the floor"
    told_first = await told(first, seq)
    assert len(counted.made) == 1, "the second is told from the kept projection: no session"
    assert told_first is not None and told_first.people_ahead == 0
    assert told_second is not None and told_second.people_ahead == 1
    assert told_second.minutes is not None and told_first.minutes == 0

    third = await issue(bus, hall_id, service_id)
    _, seq = await _hall_now(bus, hall_id)
    told_third = await told(third, seq)
    kept = estimates._projections[hall_id]
    assert kept.seq == seq and not kept.whole, "extended with the walk-in from the log"
    postgres = reads.kw["bind"].dialect.name == "postgresql"
    assert len(counted.made) == (1 if postgres else 2), "on PostgreSQL no session to extend it"
    monkeypatch.setattr(bus, "reads", reads)
    assert told_third is not None and told_third.people_ahead == 2
    assert told_third == await _fresh_told(bus, hall_id, third)


async def test_a_read_past_the_log_goes_on_in_a_session_on_the_same_connection(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer that holds the driver's connection to extend the projection and then
    finds more than walk-ins in the log (a call) reads the floor whole: on PostgreSQL in
    a session made on that same connection, which goes back to the pool as the read
    ends (none is left checked out). Told what a floor read whole tells."""
    monkeypatch.setattr(estimates, "KEEP_SECONDS", 3600.0)
    hall_id, service_id, desks = await make_hall(bus, counters=1)
    tickets = [await issue(bus, hall_id, service_id) for _ in range(3)]
    hall, seq = await _hall_now(bus, hall_id)
    assert await bus.read(estimates.told_at, hall, seq, tickets[0]) is not None
    await bus.execute(commands.CallNext(*desks[0]))
    _, seq = await _hall_now(bus, hall_id)
    engine = bus.reads.kw["bind"]
    pool = engine.sync_engine.pool
    before = pool.checkedout()
    checkouts: list[object] = []

    def checked_out(*args: object) -> None:
        checkouts.append(args)

    event.listen(pool, "checkout", checked_out)
    try:
        told = await bus.read(estimates.told_at, hall, seq, tickets[2])
    finally:
        event.remove(pool, "checkout", checked_out)
    assert estimates._projections[hall_id].whole, "the call made it read the floor whole"
    assert len(checkouts) == 1, "the log and the floor read on one connection"
    assert pool.checkedout() == before, "the connection went back to the pool"
    assert told is not None and told.people_ahead == 1
    assert told == await _fresh_told(bus, hall_id, tickets[2])


async def test_a_long_queue_read_whole_is_made_into_candidates_off_the_loop(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``WAITING_ON_THE_LOOP`` rows (on PostgreSQL: ``WAITING_JSON_ON_THE_LOOP``
    characters of JSON), the waiting tickets a floor reads whole are made in a thread (the
    event loop serves meanwhile), and are the same tickets."""
    hall_id, service_id, _ = await make_hall(bus, counters=1)
    tickets = [await issue(bus, hall_id, service_id) for _ in range(5)]
    hall, _ = await _hall_now(bus, hall_id)

    async def read(uow: UnitOfWork) -> list[Candidate]:
        return await uow.repo.waiting(hall_id, business_day(uow.clock.now(), hall.tz))

    on_the_loop = await bus.read(read)
    made_on: list[int] = []
    for maker in ("candidates_reusing", "candidates_from_json"):
        make = getattr(repository, maker)

        def noted(read: Any, known: Iterable[Candidate], make: Any = make) -> list[Candidate]:
            made_on.append(threading.get_ident())
            return make(read, known)  # type: ignore[no-any-return]

        monkeypatch.setattr(repository, maker, noted)
    monkeypatch.setattr(repository, "WAITING_ON_THE_LOOP", 2)
    monkeypatch.setattr(repository, "WAITING_JSON_ON_THE_LOOP", 2)
    in_a_thread = await bus.read(read)
    assert sorted(c.ticket_id for c in on_the_loop) == tickets
    assert sorted(in_a_thread, key=lambda c: c.ticket_id) == sorted(
        on_the_loop, key=lambda c: c.ticket_id
    )
    assert made_on and threading.get_ident() not in made_on


async def test_a_long_queue_is_played_off_the_loop_by_whoever_makes_the_projection(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An asker who makes the hall's projection (none kept, or the kept one overdue) plays
    a floor of more than ``PLAYED_ON_THE_LOOP_AT_MOST`` waiting in a thread, the event
    loop serving everyone else meanwhile, and a short one on the loop; told the same."""
    hall_id, service_id, desks = await make_hall(bus, counters=1)
    tickets = [await issue(bus, hall_id, service_id) for _ in range(5)]
    played: list[tuple[bool, int]] = []
    play = estimates.project_traced
    loop_thread = threading.get_ident()

    def noted(floor: Floor, choose: Chooser) -> Traced:
        played.append((threading.get_ident() != loop_thread, len(floor.waiting)))
        return play(floor, choose)

    monkeypatch.setattr(estimates, "project_traced", noted)
    monkeypatch.setattr(estimates, "PLAYED_ON_THE_LOOP_AT_MOST", 4)

    async def told(ticket_id: int) -> Told | None:
        hall, seq = await _hall_now(bus, hall_id)
        return await bus.read(estimates.told_at, hall, seq, ticket_id)

    first = await told(tickets[4])  # none kept: the floor read whole, 5 waiting
    assert first is not None and first == await _fresh_told(bus, hall_id, tickets[4])
    monkeypatch.setattr(estimates, "KEEP_SECONDS", 0.0)
    monkeypatch.setattr(estimates, "TOLD_PAST_DUE_AT_MOST", 0.0)
    again = await told(tickets[4])  # the kept one overdue: played again by the asker
    assert again == await _fresh_told(bus, hall_id, tickets[4])
    await bus.execute(commands.CallNext(*desks[0]))  # 4 waiting: short enough
    short = await told(tickets[4])
    assert short is not None and short.people_ahead == 3
    assert short == await _fresh_told(bus, hall_id, tickets[4])
    assert played == [(True, 5), (True, 5), (False, 4)], "in a thread, in a thread, on the loop"


@pytest.mark.parametrize("in_a_thread", [False, True], ids=["on-the-loop", "in-a-thread"])
async def test_a_floor_read_again_keeps_the_candidates_still_as_they_were(
    bus: Bus, monkeypatch: pytest.MonkeyPatch, in_a_thread: bool
) -> None:
    """Waiting tickets read again with an earlier read's candidates known: each ticket
    still as it was keeps its candidate; one that reads otherwise now (here a stale copy)
    and one that joined since are made from the row; who left the queue is not read."""
    if in_a_thread:
        monkeypatch.setattr(repository, "WAITING_ON_THE_LOOP", 2)
        monkeypatch.setattr(repository, "WAITING_JSON_ON_THE_LOOP", 2)
    hall_id, service_id, desks = await make_hall(bus, counters=1)
    tickets = [await issue(bus, hall_id, service_id) for _ in range(4)]
    hall, _ = await _hall_now(bus, hall_id)

    def read(known: Iterable[Candidate] = ()) -> Any:
        async def waiting(uow: UnitOfWork) -> list[Candidate]:
            day = business_day(uow.clock.now(), hall.tz)
            return await uow.repo.waiting(hall_id, day, known=list(known))

        return bus.read(waiting)

    first = {c.ticket_id: c for c in await read()}
    counter_id, clerk_id = desks[0]
    await bus.execute(commands.CallNext(counter_id, clerk_id))  # the first one leaves
    newest = await issue(bus, hall_id, service_id)
    # As if read before a change: another priority, another time of the slot.
    stale = structs.replace(first[tickets[2]], priority="elderly")
    stale_due = structs.replace(first[tickets[3]], due_at=first[tickets[3]].queued_at)
    known = [first[tickets[1]], stale, stale_due, first[tickets[0]]]
    again = {c.ticket_id: c for c in await read(known)}
    assert sorted(again) == [*tickets[1:], newest]
    assert again[tickets[1]] is first[tickets[1]]
    assert again[tickets[2]] == first[tickets[2]] and again[tickets[2]] is not stale
    assert again[tickets[3]] == first[tickets[3]] and again[tickets[3]] is not stale_due
    assert again == {c.ticket_id: c for c in await read()}


async def test_everyone_waiting_read_at_once_is_read_as_by_matter(bus: Bus) -> None:
    """A hall's waiting tickets of every matter (on PostgreSQL one JSON text,
    ``PG_WAITING_JSON``) are those read matter by matter, field for field and as
    aware UTC times; a hall with nobody waiting reads none."""
    hall_id, service_id, _ = await make_hall(bus, counters=1)
    hall, _ = await _hall_now(bus, hall_id)
    other = await bus.run(
        hall_config.create_service,
        hall_id,
        {"name_zh": "其他", "name_en": "Other", "prefix": "Z", "typical_minutes": 5},
    )

    async def read(uow: UnitOfWork) -> tuple[list[Candidate], list[Candidate]]:
        day = business_day(uow.clock.now(), hall.tz)
        everyone = await uow.repo.waiting(hall_id, day)
        by_matter = await uow.repo.waiting(hall_id, day, [service_id, other.id])
        return everyone, by_matter

    assert await bus.read(read) == ([], [])
    for matter in (service_id, other.id, service_id):
        await issue(bus, hall_id, matter)
    everyone, by_matter = await bus.read(read)
    assert len(everyone) == 3
    assert sorted(everyone, key=lambda c: c.ticket_id) == sorted(
        by_matter, key=lambda c: c.ticket_id
    )
    assert all(c.queued_at.utcoffset() == timedelta(0) for c in everyone)


@pytest.mark.postgres
async def test_times_postgresql_renders_are_utc_whatever_the_servers_time_zone(
    postgres_url: str,
) -> None:
    """PostgreSQL hands a hall's waiting tickets over as JSON (``PG_WAITING_JSON``), their
    times rendered in the session's time zone: the server's engine keeps its sessions in
    UTC, as every time is stored and read, on a server whose own zone is Shanghai too."""
    name = f"{make_url(postgres_url).database}_zone"
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    await _admin_execute(f'CREATE DATABASE "{name}"')
    engine = create_engine(url)
    try:
        await _admin_execute(f"ALTER DATABASE \"{name}\" SET timezone TO 'Asia/Shanghai'")
        plain = await asyncpg.connect(_plain_dsn(url), timeout=5)
        try:
            assert await plain.fetchval("SHOW timezone") == "Asia/Shanghai"
        finally:
            await plain.close()
        async with engine.connect() as connection:
            rendered = await connection.scalar(text("SELECT json_build_array(now())::text"))
        assert rendered is not None and rendered.endswith('+00:00"]'), rendered
    finally:
        await engine.dispose()
        await _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_a_walk_in_logged_before_the_play_beside_reads_is_held_by_it(
    bus: Bus, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The play beside keeps the event number of the projection it starts from: a walk-in
    logged before it reads the floor (not among the waiting tickets it plays) is added by
    the next extension, not lost."""
    hall_id, service_id, first, _ = await _a_walk_in_told(bus)
    monkeypatch.setattr(estimates, "KEEP_SECONDS", 0.0)
    monkeypatch.setattr(estimates, "TOLD_PAST_DUE_AT_MOST", 60.0)  # held as long as need be
    clock.advance(seconds=30)
    let_read = asyncio.Event()
    read = estimates.hall_floor

    async def held_read(*args: Any, **kwargs: Any) -> Floor:
        beside = estimates._beside.get(hall_id)
        if beside is not None and asyncio.current_task() is beside[1]:
            await let_read.wait()
        return await read(*args, **kwargs)

    monkeypatch.setattr(estimates, "hall_floor", held_read)
    await _told_now(bus, hall_id, first)  # the play beside starts, held before its read
    walk_in = await issue(bus, hall_id, service_id)
    let_read.set()
    await estimates.refreshed(hall_id)
    monkeypatch.setattr(estimates, "KEEP_SECONDS", 3600.0)
    told = await _told_now(bus, hall_id, walk_in)
    assert told is not None and told.people_ahead == 1
    assert told == await _fresh_told(bus, hall_id, walk_in)


async def test_an_asker_reading_the_log_as_the_play_beside_lands_keeps_it(
    bus: Bus, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kiosk answer reading the log since the old projection when the one played beside
    is kept: its extension of the old one does not replace the new one, and it starts no
    second play from the old one."""
    hall_id, service_id, _, _, held = await _held_beside(bus, clock, monkeypatch)
    walk_in = await issue(bus, hall_id, service_id)
    let_extend, extending = asyncio.Event(), asyncio.Event()
    extend = estimates._extended

    async def held_extension(
        uow: UnitOfWork, hall: int, last: estimates._Projection
    ) -> estimates._Projection | None:
        extending.set()
        await let_extend.wait()
        return await extend(uow, hall, last)

    monkeypatch.setattr(estimates, "_extended", held_extension)
    asker = asyncio.ensure_future(_told_now(bus, hall_id, walk_in))
    await extending.wait()
    held.go.set()
    await estimates.refreshed(hall_id)
    played = estimates._projections[hall_id]
    let_extend.set()
    told = await asker
    assert told is not None and told.people_ahead == 1
    assert estimates._projections[hall_id] is played, "the older extension did not replace it"
    assert hall_id not in estimates._beside, "no second play from the old projection"
    assert len(held.threads) == 1


async def test_after_stop_the_asker_plays_a_due_projection_itself(
    bus: Bus, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the app stops (``estimates.stop``, before its engine goes), nothing is played
    beside any more: followers still connected are told as before, by whoever asks."""
    hall_id, _, first, before = await _a_walk_in_told(bus)
    await estimates.stop()
    monkeypatch.setattr(estimates, "KEEP_SECONDS", 0.0)
    clock.advance(seconds=30)
    told = await _told_now(bus, hall_id, first)
    assert hall_id not in estimates._beside
    assert estimates._projections[hall_id].made > before.made, "played again by the asker"
    assert told == await _fresh_told(bus, hall_id, first)


async def test_a_play_beside_that_takes_too_long_ends_and_the_asker_plays(
    bus: Bus, clock: FixedClock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A play beside stuck past ``TOLD_PAST_DUE_AT_MOST`` (a lock, a lost connection, a
    starved thread) ends with a warning, and holds the hall's next ones up no longer: the
    projection, overdue by then, is played again by the asker."""
    hall_id, _, first, before = await _a_walk_in_told(bus)
    monkeypatch.setattr(estimates, "KEEP_SECONDS", 0.0)
    monkeypatch.setattr(estimates, "TOLD_PAST_DUE_AT_MOST", 0.5)
    clock.advance(seconds=30)
    held = _HeldPlay(monkeypatch)
    await _told_now(bus, hall_id, first)  # the play beside starts, and is held
    _, task = estimates._beside[hall_id]
    await asyncio.wait([task], timeout=30)
    held.go.set()
    assert task.done() and isinstance(task.exception(), TimeoutError)
    assert hall_id not in estimates._beside
    assert "a projection played beside failed" in caplog.text
    told = await _told_now(bus, hall_id, first)
    assert estimates._projections[hall_id].made > before.made, "played again by the asker"
    assert told == await _fresh_told(bus, hall_id, first)
