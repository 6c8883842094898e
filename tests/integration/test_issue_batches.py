"""On PostgreSQL a process sends a hall's issues one statement at a time, and the issues
that come while one is out go together in the next (``service/issue_batches.py``). Each
kiosk must still get what it would have got alone: its own ticket, number, print job,
key and events, in the order the issues came; nothing made twice or half; and nobody
left waiting when a statement is refused, fails or its sender hangs up."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from queue_server.clock import SystemClock
from queue_server.db import driven
from queue_server.db.engine import session_factory
from queue_server.db.repository import NewVisit
from queue_server.domain.model import TicketKind
from queue_server.service import accounts, hall_config, issue_batches, queue
from queue_server.service.bus import Bus
from queue_server.service.commands import Actor, IssueTicket
from queue_server.service.views import NewTicket
from tests.conftest import _plain_dsn
from tests.integration.pooled import backend_waiting_on_a_lock, backend_where, checked_out, engine
from tests.integration.test_concurrency import KIOSKS, event_seqs, make_hall
from tests.integration.test_issue_driver import issuing, statements_sent, visits_and_tickets

pytestmark = pytest.mark.postgres
__all__ = ["engine"]  # the fixture, from tests.integration.pooled


class Hall:
    """A hall with two matters (A, B) and a kiosk with its printer, on one bus."""

    def __init__(self, bus: Bus, engine: AsyncEngine) -> None:
        self.bus, self.engine = bus, engine

    async def make(self) -> Hall:
        self.id, self.a, _ = await make_hall(self.bus, counters=0)
        matter = await self.bus.run(
            hall_config.create_service,
            self.id,
            {"name_zh": "税务", "name_en": "Tax", "prefix": "B", "typical_minutes": 5},
        )
        self.b = matter.id
        await self.bus.run(
            accounts.create_device, self.id, accounts.DeviceKind.PRINTER, "p", KIOSKS[self.id]
        )
        return self

    def issue(self, matter: int, key: str | None = None) -> Awaitable[NewTicket]:
        command = IssueTicket(
            self.id, matter, actor=Actor(device_id=KIOSKS[self.id]), idempotency_key=key
        )
        return self.bus.run(queue.issue_new, command)

    async def rows(self, statement: str) -> list[Any]:
        async with self.engine.connect() as connection:
            return list((await connection.execute(text(statement), {"h": self.id})).all())

    async def whole(self) -> dict[int, tuple[str, str, str | None]]:
        """Each ticket: its number, its print job's number and matter, its key's."""
        rows = await self.rows(
            "SELECT t.id, t.number, CAST(j.payload AS text), k.key FROM tickets t "
            "JOIN print_jobs j ON j.ticket_id = t.id "
            "LEFT JOIN idempotency_keys k ON k.ticket_id = t.id WHERE t.hall_id = :h"
        )
        whole = {}
        for ticket_id, number, payload, key in rows:
            printed = json.loads(payload)
            assert printed["number"] == number
            whole[ticket_id] = (number, printed["matter_en"], key)
        return whole

    async def log(self) -> list[tuple[int, str, int]]:
        """The hall's events: number, name, ticket."""
        rows = await self.rows(
            "SELECT seq, name, CAST(CAST(payload AS jsonb) ->> 'ticket_id' AS bigint) "
            "FROM hall_events WHERE hall_id = :h ORDER BY seq"
        )
        return [tuple(row) for row in rows]


@pytest.fixture
async def hall(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> Hall:
    monkeypatch.setattr(queue, "_known_facts", {})
    return await Hall(Bus(session_factory(engine), SystemClock()), engine).make()


async def answered(task: Awaitable[Any]) -> Any:
    """``task``'s outcome; a hall left waiting fails the test instead of hanging it."""
    return await asyncio.wait_for(task, 20)


async def waiting(hall_id: int, count: int) -> None:
    """Return once ``count`` issues wait in this process for the hall's next statement."""
    async with asyncio.timeout(20):
        while len(issue_batches._hall(hall_id).waiting) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.005)


class HeldRow:
    """The hall row held by another session, so that the process's statement stays out."""

    def __init__(self, pg_url: str, hall_id: int) -> None:
        self.url, self.hall_id = _plain_dsn(pg_url), hall_id

    async def __aenter__(self) -> HeldRow:
        self.holder = await asyncpg.connect(self.url)
        self.watcher = await asyncpg.connect(self.url)
        self.held = self.holder.transaction()
        await self.held.start()
        await self.holder.execute("SELECT 1 FROM halls WHERE id = $1 FOR UPDATE", self.hall_id)
        return self

    async def statement_waits(self) -> None:
        await backend_waiting_on_a_lock(self.watcher)

    async def release(self) -> None:
        await self.held.rollback()

    async def __aexit__(self, *exc: object) -> None:
        await self.holder.close()
        await self.watcher.close()


Issuing = asyncio.Task[NewTicket]


async def out_and_behind(
    hall: Hall, held: HeldRow, crowd: list[tuple[int, str | None]], first_key: str = "first"
) -> tuple[Issuing, list[Issuing]]:
    """A first issue (matter A, key ``first_key``) whose statement waits on the held hall
    row, then each of ``crowd`` (matter, key) waiting in the process behind it, in order."""
    first = asyncio.create_task(hall.issue(hall.a, first_key))
    await held.statement_waits()
    behind = []
    for matter, key in crowd:
        behind.append(asyncio.create_task(hall.issue(matter, key)))
        await waiting(hall.id, len(behind))
    return first, behind


async def test_a_crowd_is_issued_together_each_ticket_its_own_in_the_order_they_came(
    hall: Hall, pg_url: str
) -> None:
    await hall.issue(hall.a, "known-a")  # the process reads each matter once
    await hall.issue(hall.b, "known-b")
    sent = statements_sent(hall.engine)
    async with HeldRow(pg_url, hall.id) as held:
        # Twelve kiosks tap while the first one's statement waits for the hall row.
        taps = [((hall.a, hall.b)[n % 2], f"crowd-{n}") for n in range(12)]
        first, crowd = await out_and_behind(hall, held, taps)
        await held.release()
        answers = [await answered(first), *await answered(asyncio.gather(*crowd))]
    assert issuing(sent) == ["checked issue", "together"]
    # In the order they came: A002 (first), then A003, B002, A004, B003, ...
    expected = ["A002"] + [
        ("A", "B")[n % 2] + f"{n // 2 + 2 + (n % 2 == 0):03d}" for n in range(12)
    ]
    assert [answer.view.number for answer in answers if answer.view] == expected
    whole = await hall.whole()
    keys = ["first"] + [f"crowd-{n}" for n in range(12)]
    for answer, key in zip(answers, keys, strict=True):
        assert answer.view is not None and answer.view.printing.state == "pending"
        number = answer.view.number
        assert whole[answer.ticket_id] == (number, "Social" if number[0] == "A" else "Tax", key)
    # The log: each ticket's issue and then its print job, in the order they came,
    # numbered without a gap after the two known ones; each answer names its own last.
    log = await hall.log()
    assert [seq for seq, _, _ in log] == list(range(1, 2 * 15 + 1))
    assert [(name, ticket) for _, name, ticket in log[4:]] == [
        (name, answer.ticket_id)
        for answer in answers
        for name in ("TicketIssued", "PrintJobQueued")
    ]
    assert [answer.event_seq for answer in answers] == list(range(6, 31, 2))
    # A key sent again is answered with its ticket, as alone.
    again = await hall.issue(hall.b, "crowd-5")
    assert again.ticket_id == answers[6].ticket_id
    assert await visits_and_tickets(hall.bus, hall.id) == (15, 15)
    assert checked_out(hall.engine) == 0


async def test_a_key_stored_before_or_twice_in_the_crowd_leaves_only_its_tap_out(
    hall: Hall, pg_url: str
) -> None:
    """A tap again (its key stored by a ticket made before, or sent twice in one crowd)
    makes no second ticket and does not hold up the others: the statement leaves it out,
    and its request reads the key's ticket."""
    kept = await hall.issue(hall.a, "double tap")
    sent = statements_sent(hall.engine)
    keys = ("new-0", "double tap", "new-1", "twice", "twice", "new-2")
    async with HeldRow(pg_url, hall.id) as held:
        first, crowd = await out_and_behind(hall, held, [(hall.a, key) for key in keys])
        await held.release()
        await answered(first)
        answers = await answered(asyncio.gather(*crowd))
    assert answers[1].ticket_id == kept.ticket_id
    assert answers[3].ticket_id == answers[4].ticket_id
    assert issuing(sent) == ["checked issue", "together", "read", "read"]
    whole = await hall.whole()
    assert [whole[answer.ticket_id][0] for answer in answers] == [
        "A003", "A001", "A004", "A005", "A005", "A006"
    ]  # fmt: skip
    assert sorted(key or "" for _, _, key in whole.values()) == sorted({"first", *keys})
    assert [seq for seq, _, _ in await hall.log()] == list(range(1, 13))
    assert await visits_and_tickets(hall.bus, hall.id) == (6, 6)
    assert checked_out(hall.engine) == 0


async def test_a_key_taken_meanwhile_refuses_the_statement_and_each_goes_on_alone(
    hall: Hall, pg_url: str
) -> None:
    """A key another process's statement stores while the crowd's statement is out (a
    retry that reached the other worker): the statement fails whole, nothing of it is
    written, and each issue is sent again on its own."""
    await hall.issue(hall.a)
    taken = await hall.issue(hall.b)
    sent = statements_sent(hall.engine)
    other = await asyncpg.connect(_plain_dsn(pg_url))
    try:
        holding_b = other.transaction()
        await holding_b.start()  # matter B's day counter held: the statement waits on it
        await other.execute(
            "SELECT 1 FROM number_sequences WHERE hall_id = $1 AND prefix = 'B' FOR UPDATE",
            hall.id,
        )
        async with HeldRow(pg_url, hall.id) as held:
            taps = [(hall.b, "retried"), (hall.a, "x"), (hall.b, "y")]
            first, crowd = await out_and_behind(hall, held, taps)
            await held.release()
            await answered(first)
            await held.statement_waits()  # the crowd's, on B's counter
            async with hall.engine.begin() as connection:
                await connection.execute(
                    text(
                        "INSERT INTO idempotency_keys (scope, key, ticket_id, created_at,"
                        " fingerprint) VALUES (:scope, 'retried', :ticket, now(), '')"
                    ),
                    {"scope": f"device:{KIOSKS[hall.id]}", "ticket": taken.ticket_id},
                )
            await holding_b.rollback()
            answers = await answered(asyncio.gather(*crowd))
    finally:
        await other.close()
    assert answers[0].ticket_id == taken.ticket_id
    kinds = issuing(sent)
    assert kinds[:2] == ["checked issue", "together refused"]
    assert sorted(kinds[2:]) == ["checked issue", "checked issue", "checked issue refused", "read"]
    whole = await hall.whole()
    assert (whole[answers[1].ticket_id][0], whole[answers[2].ticket_id][0]) == ("A003", "B002")
    assert [seq for seq, _, _ in await hall.log()] == list(range(1, 11))
    assert await visits_and_tickets(hall.bus, hall.id) == (5, 5)
    assert not issue_batches._hall(hall.id).out
    assert checked_out(hall.engine) == 0


async def test_a_matter_changed_meanwhile_refuses_the_statement_and_each_reads_again(
    hall: Hall, pg_url: str
) -> None:
    await hall.issue(hall.a)
    await hall.issue(hall.b)
    sent = statements_sent(hall.engine)
    async with HeldRow(pg_url, hall.id) as held:
        taps = [((hall.b, hall.a)[n % 2], None) for n in range(4)]
        first, crowd = await out_and_behind(hall, held, taps)
        await rename_matter_b(hall)  # while they wait
        await held.release()
        made = await answered(first)
        answers = await answered(asyncio.gather(*crowd))
    kinds = issuing(sent)
    assert kinds[:2] == ["checked issue", "together"]
    whole = await hall.whole()
    assert whole[made.ticket_id][:2] == ("A002", "Social")
    # The first's statement began before the change; the others' after it, refused
    # whole (no number used), then each read again.
    assert kinds[1:].count("together") == 1 and "read" in kinds
    printed = {whole[answer.ticket_id][:2] for answer in answers}
    assert printed == {("B002", "Taxes and fees"), ("B003", "Taxes and fees"),
                       ("A003", "Social"), ("A004", "Social")}  # fmt: skip
    assert [seq for seq, _, _ in await hall.log()] == list(range(1, 15))
    assert await visits_and_tickets(hall.bus, hall.id) == (7, 7)
    assert checked_out(hall.engine) == 0


async def test_a_sender_or_a_waiter_that_hangs_up_leaves_nobody_waiting(
    hall: Hall, pg_url: str
) -> None:
    await hall.issue(hall.a)
    async with HeldRow(pg_url, hall.id) as held:
        taps = [(hall.a, "gone"), (hall.a, "stays")]
        sender, (gone, stays) = await out_and_behind(hall, held, taps, first_key="sender")
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert len(issue_batches._hall(hall.id).waiting) == 1
        # The sender hangs up while its statement is out: it is seen to its end.
        sender.cancel()
        await held.release()
        with pytest.raises(asyncio.CancelledError):
            await answered(sender)
        stayed = await answered(stays)
    assert stayed.view is not None and stayed.view.number == "A003"
    whole = await hall.whole()
    assert sorted(key or "" for _, _, key in whole.values()) == ["", "sender", "stays"]
    # The sender's ticket was made whole: its key gives it.
    made = await hall.issue(hall.a, "sender")
    assert whole[made.ticket_id][0] == "A002"
    after = await hall.issue(hall.a)
    assert after.view is not None and after.view.number == "A004"
    assert await event_seqs(hall.bus, hall.id) == list(range(1, 9))
    assert not issue_batches._hall(hall.id).out
    assert checked_out(hall.engine) == 0


async def test_a_sender_that_hangs_up_with_others_in_its_statement_leaves_them_answered(
    hall: Hall, pg_url: str
) -> None:
    await hall.issue(hall.a)
    await hall.issue(hall.b)
    counter = await asyncpg.connect(_plain_dsn(pg_url))
    try:
        # Matter B's day counter held too: the statement that carries B's issue waits
        # on it after the hall row is let go.
        holding_b = counter.transaction()
        await holding_b.start()
        await counter.execute(
            "SELECT 1 FROM number_sequences WHERE hall_id = $1 AND prefix = 'B' FOR UPDATE",
            hall.id,
        )
        async with HeldRow(pg_url, hall.id) as held:
            taps = [(hall.a, "sender"), (hall.b, "carried")]
            first, (sender, carried) = await out_and_behind(hall, held, taps)
            await held.release()
            await answered(first)
            await backend_waiting_on_a_lock(held.watcher)  # the two, on B's counter
            sender.cancel()
            await holding_b.rollback()
            with pytest.raises(asyncio.CancelledError):
                await answered(sender)
            answer = await answered(carried)
    finally:
        await counter.close()
    assert answer.view is not None and answer.view.number == "B002"
    whole = await hall.whole()
    assert whole[answer.ticket_id] == ("B002", "Tax", "carried")
    assert sorted(number for number, _, key in whole.values() if key == "sender") == ["A003"]
    assert [seq for seq, _, _ in await hall.log()] == list(range(1, 11))
    assert not issue_batches._hall(hall.id).out
    assert checked_out(hall.engine) == 0


async def test_an_issue_gone_as_its_refusal_came_stays_gone(
    hall: Hall, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A waiting issue told that the statement was refused (facts changed) and cancelled
    before it resumes (a timeout, a client gone) is cancelled: it makes no ticket."""
    await hall.issue(hall.a)
    await hall.issue(hall.b)
    tasks: dict[str, asyncio.Task[NewTicket]] = {}
    tell = issue_batches._tell

    def told_then_gone(issue: Any, *, result: Any = None, exception: Any = None) -> None:
        tell(issue, result=result, exception=exception)
        if exception is not None and issue.visit.idempotency[1] == "gone":
            tasks["gone"].cancel()

    monkeypatch.setattr(issue_batches, "_tell", told_then_gone)
    async with HeldRow(pg_url, hall.id) as held:
        taps = [(hall.b, "sender"), (hall.b, "gone")]
        first, (sender, tasks["gone"]) = await out_and_behind(hall, held, taps)
        await rename_matter_b(hall)
        await held.release()
        await answered(first)
        made = await answered(sender)
        with pytest.raises(asyncio.CancelledError):
            await answered(tasks["gone"])
    whole = await hall.whole()
    assert whole[made.ticket_id] == ("B002", "Taxes and fees", "sender")
    assert "gone" not in {key for _, _, key in whole.values()}
    assert await visits_and_tickets(hall.bus, hall.id) == (4, 4)
    assert not issue_batches._hall(hall.id).out


async def test_a_sender_gone_while_its_statement_is_refused_stays_gone(
    hall: Hall, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sender cancelled while its statement is out, and the statement refused (facts
    changed): the others go on as alone, the sender is cancelled and makes nothing."""
    await hall.issue(hall.a)
    await hall.issue(hall.b)
    sent = statements_sent(hall.engine)
    tasks: dict[str, asyncio.Task[NewTicket]] = {}
    statement = issue_batches._statement

    async def sender_gone_meanwhile(uow: Any, batch: Any) -> Any:
        if batch[0].visit.idempotency[1] == "sender":
            tasks["sender"].cancel()
        return await statement(uow, batch)

    monkeypatch.setattr(issue_batches, "_statement", sender_gone_meanwhile)
    async with HeldRow(pg_url, hall.id) as held:
        taps = [(hall.b, "sender"), (hall.b, "other")]
        first, (tasks["sender"], other) = await out_and_behind(hall, held, taps)
        await rename_matter_b(hall)
        await held.release()
        await answered(first)
        with pytest.raises(asyncio.CancelledError):
            await answered(tasks["sender"])
        made = await answered(other)
    assert issuing(sent)[:2] == ["checked issue", "together"]
    whole = await hall.whole()
    assert whole[made.ticket_id] == ("B002", "Taxes and fees", "other")
    assert await visits_and_tickets(hall.bus, hall.id) == (4, 4)
    assert not issue_batches._hall(hall.id).out


async def test_a_failed_statement_reaches_every_issue_of_it(
    hall: Hall, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await hall.issue(hall.a)

    async def lost(db: Any, sent: Any) -> Any:
        raise driven.ConnectionLost("the database connection failed")

    monkeypatch.setattr(driven, "enqueue_many", lost)
    async with HeldRow(pg_url, hall.id) as held:
        taps = [(hall.a, key) for key in ("p", "q", "r")]
        first, crowd = await out_and_behind(hall, held, taps)
        await held.release()
        await answered(first)
        failed = await answered(asyncio.gather(*crowd, return_exceptions=True))
    assert [type(outcome) for outcome in failed] == [driven.ConnectionLost] * 3
    assert not issue_batches._hall(hall.id).out
    assert (await hall.issue(hall.a, "after")).view is not None


async def test_keys_are_written_before_the_hall_row_in_both_statements(
    hall: Hall, pg_url: str
) -> None:
    """The same key in a crowd's statement and in one issue's statement of another
    process, under different day counters (a retry across the business day's change, or
    a key reused across matters): both write the key before they take the hall row, so
    one waits for the other, and neither is refused for a deadlock."""
    await hall.issue(hall.a)
    await hall.issue(hall.b)
    url = _plain_dsn(pg_url)
    crowd_db, single_db = await asyncpg.connect(url), await asyncpg.connect(url)
    try:
        digests = {}
        for matter in (hall.a, hall.b):
            read = await driven.issue_read(
                crowd_db, hall_id=hall.id, service_id=matter, scope="-", key=None
            )
            assert read is not None
            digests[matter] = read["facts"]
        day = (await hall.rows("SELECT business_day FROM tickets WHERE hall_id = :h"))[0][0]

        def visit(matter: int, prefix: str, n: int, key: str | None) -> NewVisit:
            scope = (f"device:{KIOSKS[hall.id]}", key, "") if key else None
            return NewVisit(
                hall_id=hall.id, day=day, prefix=prefix, service_id=matter,
                kind=TicketKind.WALK_IN, priority="none", now=datetime.now(UTC),
                follow_token=f"token-{n}", device_id=KIOSKS[hall.id], user_id=None,
                job_payload={"n": n}, idempotency=scope,
            )  # fmt: skip

        async with HeldRow(pg_url, hall.id) as held:
            crowd = [
                (visit(hall.a, "A", 1, "K"), digests[hall.a]),
                (visit(hall.a, "A", 2, None), digests[hall.a]),
            ]
            together = asyncio.create_task(driven.enqueue_many(crowd_db, crowd))
            await held.statement_waits()
            single = asyncio.create_task(
                driven.enqueue(single_db, visit(hall.b, "B", 3, "K"), digests[hall.b])
            )
            await backend_where(held.watcher, "wait_event_type = 'Lock' AND pid <> "
                                f"{crowd_db.get_server_pid()}")  # fmt: skip
            await held.release()
            made, alone = await answered(asyncio.gather(together, single))
    finally:
        await crowd_db.close()
        await single_db.close()
    assert made is not None and [told.number for told in made if told] == ["A002", "A003"]
    assert alone is None  # its key was the crowd's: that request reads the crowd's ticket
    assert await visits_and_tickets(hall.bus, hall.id) == (4, 4)


async def rename_matter_b(hall: Hall) -> None:
    """Matter B renamed by another process: this one still knows its old name."""
    async with hall.engine.begin() as connection:
        await connection.execute(
            text("UPDATE services SET name_en = 'Taxes and fees' WHERE id = :m"), {"m": hall.b}
        )
