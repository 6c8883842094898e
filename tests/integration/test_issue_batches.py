"""On PostgreSQL a process sends a hall's issues one statement at a time, and the issues
that come while one is out go together in the next (``service/issue_batches.py``). Each
kiosk must still get what it would have got alone: its own ticket, number, print job,
key and events, in the order the issues came; nothing made twice or half; and nobody
left waiting when a statement is refused, fails or its sender hangs up."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from queue_server.clock import SystemClock
from queue_server.db.engine import session_factory
from queue_server.service import accounts, hall_config, issue_batches, queue
from queue_server.service.bus import Bus
from queue_server.service.commands import Actor, IssueTicket
from queue_server.service.views import NewTicket
from tests.conftest import _plain_dsn
from tests.integration.pooled import backend_waiting_on_a_lock, checked_out, engine
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


async def test_a_key_taken_before_refuses_the_statement_and_each_goes_on_alone(
    hall: Hall, pg_url: str
) -> None:
    kept = await hall.issue(hall.a, "double tap")
    sent = statements_sent(hall.engine)
    async with HeldRow(pg_url, hall.id) as held:
        taps = [(hall.a, key) for key in ("new-0", "double tap", "new-1", "new-2")]
        first, crowd = await out_and_behind(hall, held, taps)
        await held.release()
        await answered(first)
        answers = await answered(asyncio.gather(*crowd))
    assert answers[1].ticket_id == kept.ticket_id
    kinds = issuing(sent)
    assert kinds[:2] == ["checked issue", "together refused"]
    # Then each alone: the double tap's refused too, and answered by the read.
    assert sorted(kinds[2:]) == sorted(["checked issue"] * 3 + ["checked issue refused", "read"])
    numbers = sorted(number for number, _, _ in (await hall.whole()).values())
    assert numbers == ["A001", "A002", "A003", "A004", "A005"]
    assert [seq for seq, _, _ in await hall.log()] == list(range(1, 11))
    assert await visits_and_tickets(hall.bus, hall.id) == (5, 5)
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
        # Matter B renamed by another process while they wait: the process still knows
        # its old name.
        async with hall.engine.begin() as connection:
            await connection.execute(
                text("UPDATE services SET name_en = 'Taxes and fees' WHERE id = :m"),
                {"m": hall.b},
            )
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


def test_the_turn_passes_over_issues_that_hung_up() -> None:
    """Told to send and gone before it could: the next waiting issue sends instead."""

    async def scene() -> None:
        hall = issue_batches._Hall(out=True)
        first, second, third = (
            issue_batches._Issue(None, "")
            for _ in range(3)  # type: ignore[arg-type]
        )
        hall.waiting.extend([first, second, third])
        second.told.cancel()  # gone, not yet out of the queue
        issue_batches._hand_on(hall)
        assert first.told.result() == issue_batches._LEAD
        issue_batches._gone(hall, first)
        assert list(hall.waiting) == [third]
        assert third.told.result() == issue_batches._LEAD and hall.out
        hall.waiting.popleft()
        issue_batches._hand_on(hall)
        assert not hall.out

    asyncio.run(scene())


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
