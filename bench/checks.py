"""Correctness after a phase, read from the database itself (asyncpg for PostgreSQL, sqlite3
for SQLite) while the server is idle between phases."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from . import postgres
from .stats import Verdict, _listed

TICKET_ID = {
    "postgresql": "(payload->>'ticket_id')::bigint",
    "sqlite": "json_extract(payload, '$.ticket_id')",
}
PLACEHOLDER = re.compile(r"\$\d+")


@dataclass(frozen=True)
class Database:
    """The bench database: PostgreSQL at ``url``, or the SQLite file ``path``."""

    url: URL | None = None
    path: Path | None = None

    @property
    def dialect(self) -> str:
        return "postgresql" if self.url is not None else "sqlite"

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """``sql`` (PostgreSQL placeholders ``$1``…, each used once and in order) run once."""
        sql = sql.format(ticket_id=TICKET_ID[self.dialect])
        if self.url is not None:
            return asyncio.run(self._pg_rows(self.url, sql, args))
        assert self.path is not None
        with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30) as connection:
            return connection.execute(PLACEHOLDER.sub("?", sql), args).fetchall()

    def stand_in_for_autovacuum(self) -> bool:
        """On a PostgreSQL whose autovacuum is off (this machine's, and CI's, are), refresh
        the planner's statistics as autovacuum would have by now: a bench database grows
        from empty to thousands of tickets in seconds, and plans made for an empty table
        (no statistics at all) read the whole queue. True if it did."""
        if not self.autovacuum_off():
            return False
        self.rows("ANALYZE")
        return True

    def sessions_opened(self) -> int | None:
        """PostgreSQL: the sessions opened on the bench database so far (its statistics'
        count, this reading's own included; None on SQLite). Between two readings: the
        connections the server made, plus one."""
        if self.url is None:
            return None
        ((count,),) = self.rows(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        )
        return int(count)

    def autovacuum_off(self) -> bool:
        return self.url is not None and self.rows("SHOW autovacuum") == [("off",)]

    @staticmethod
    async def _pg_rows(url: URL, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        connection = await postgres.connect(url)
        try:
            return [tuple(record) for record in await connection.fetch(sql, *args)]
        finally:
            await connection.close()


@dataclass(frozen=True)
class Mark:
    """Where the hall stood before a phase."""

    last_ticket_id: int
    called_events: int
    no_show_events: int
    waiting: int


def mark(db: Database, hall_id: int) -> Mark:
    ((last_id,),) = db.rows("SELECT coalesce(max(id), 0) FROM tickets WHERE hall_id = $1", hall_id)
    events = dict(
        db.rows(
            "SELECT name, count(*) FROM hall_events WHERE hall_id = $1 "
            "AND name IN ('TicketCalled', 'TicketMarkedNoShow') GROUP BY name",
            hall_id,
        )
    )
    ((waiting,),) = db.rows(
        "SELECT count(*) FROM tickets WHERE hall_id = $1 AND state = 'waiting'", hall_id
    )
    return Mark(
        int(last_id),
        int(events.get("TicketCalled", 0)),
        int(events.get("TicketMarkedNoShow", 0)),
        int(waiting),
    )


def busy_counters(db: Database, hall_id: int) -> set[int]:
    """Counters that hold a called or serving ticket."""
    return {
        int(row[0])
        for row in db.rows(
            "SELECT DISTINCT counter_id FROM tickets WHERE hall_id = $1 "
            "AND state IN ('called', 'serving') AND counter_id IS NOT NULL",
            hall_id,
        )
    }


FOLLOWED = 64
"""Follow links the follow phase reads (one per connection)."""


def follow_tokens(db: Database, hall_id: int) -> list[str]:
    """The follow links of the first ``FOLLOWED`` tickets waiting: visitors who follow
    their turn from the front of the queue to far back."""
    rows = db.rows(
        "SELECT v.follow_token FROM tickets t JOIN visits v ON v.id = t.visit_id"
        " WHERE t.hall_id = $1 AND t.state = 'waiting' ORDER BY t.id LIMIT $2",
        hall_id,
        FOLLOWED,
    )
    return [token for (token,) in rows]


def numbers(db: Database, hall_id: int) -> list[str]:
    """Problems with the hall's ticket numbers: per (prefix, business day) they must be
    unique and gapless 1..n (transfers, which keep their visit's number, have no seq)."""
    problems = []
    for prefix, day, n, distinct, low, high in db.rows(
        "SELECT prefix, business_day, count(*), count(DISTINCT seq), min(seq), max(seq) "
        "FROM tickets WHERE hall_id = $1 AND seq IS NOT NULL GROUP BY prefix, business_day",
        hall_id,
    ):
        if not n == distinct == high or low != 1:
            problems.append(
                f"{prefix} on {day}: {n} tickets, {distinct} distinct numbers, {low}..{high}"
            )
    return problems


def issued(db: Database, hall_id: int, before: Mark, answered_ids: list[int]) -> Verdict:
    """Numbers gapless, and every 2xx issue answer of the phase names a ticket of its own that
    the database holds (tickets the phase made that nobody saw answered are only counted:
    wrk stops with requests in flight)."""
    problems = numbers(db, hall_id)
    made = {
        int(row[0])
        for row in db.rows(
            "SELECT id FROM tickets WHERE hall_id = $1 AND id > $2", hall_id, before.last_ticket_id
        )
    }
    doubled = sorted(i for i, n in Counter(answered_ids).items() if n > 1)
    missing = sorted(set(answered_ids) - made)
    if doubled:
        problems.append(f"the same ticket answered twice: ids {_listed(doubled)}")
    if missing:
        problems.append(f"answered but not in the database: ids {_listed(missing)}")
    if problems:
        return Verdict(False, "; ".join(problems))
    unseen = len(made - set(answered_ids))
    return Verdict(
        True,
        f"{len(answered_ids)} answers = rows, numbers gapless; {unseen} made, not answered in time",
    )


def calls_doubled(db: Database, hall_id: int) -> tuple[int, list[str]]:
    """How many tickets were called twice (TicketCalled events; recalls are TicketRecalled)
    plus counters holding two tickets, and those in words."""
    problems = []
    twice = db.rows(
        "SELECT {ticket_id}, count(*) FROM hall_events WHERE hall_id = $1 "
        "AND name = 'TicketCalled' GROUP BY 1 HAVING count(*) > 1",
        hall_id,
    )
    if twice:
        problems.append(f"called twice: ticket ids {_listed(sorted(t for t, _ in twice))}")
    busy = db.rows(
        "SELECT counter_id, count(*) FROM tickets WHERE hall_id = $1 "
        "AND state IN ('called', 'serving') GROUP BY counter_id HAVING count(*) > 1",
        hall_id,
    )
    if busy:
        problems.append(f"counters with two tickets: ids {_listed(sorted(c for c, _ in busy))}")
    return len(twice) + len(busy), problems


def called(db: Database, hall_id: int, before: Mark, counts: dict[str, int]) -> Verdict:
    """No ticket was ever called twice (TicketCalled events per ticket; recalls are
    TicketRecalled), no counter holds two tickets, each call-next answer that named a ticket
    has its event and each no-show answered has its event."""
    problems = numbers(db, hall_id) + calls_doubled(db, hall_id)[1]
    after = mark(db, hall_id)
    calls = after.called_events - before.called_events
    no_shows = after.no_show_events - before.no_show_events
    if calls < counts.get("called", 0):
        problems.append(f"{counts.get('called', 0)} calls answered, {calls} TicketCalled events")
    if no_shows < counts.get("resolved", 0):
        problems.append(f"{counts.get('resolved', 0)} no-shows answered, {no_shows} events")
    if problems:
        return Verdict(False, "; ".join(problems))
    return Verdict(True, f"{calls} called once each, {no_shows} no-shows; numbers gapless")
