"""What PostgreSQL holds afterwards: the bookings, the slots' counters and the holders, read
with asyncpg once the server has stopped."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from .. import postgres
from .options import MAX_SAMPLES


@dataclass(frozen=True)
class DbFacts:
    """What PostgreSQL holds after the rush, for the matter of the run."""

    places: int
    """Sum of ``slots.bookable`` over the offered slots."""
    made: int
    """Bookings in state 'booked'."""
    overbooked: int
    """Slots holding more bookings than they have bookable places."""
    mismatched: int
    """Slots whose ``booked`` counter differs from their bookings."""
    duplicate_holders: int
    """Phone numbers holding more than one active booking of the matter."""
    not_full: int
    """Offered slots with a place left (a shortfall of demand, or a lost booking)."""
    states: dict[str, int]
    stray_slots: int
    """Stored slots of the matter that the slot list did not offer."""
    examples: list[str]
    sessions: int
    """Connections the bench database has accepted since it was created (ours aside)."""
    active_s: float
    """Time its backends spent running statements (pg_stat_database.active_time)."""
    idle_in_transaction_s: float
    """Time its backends spent in a transaction waiting for the server's next statement."""


def database_dsn() -> str:
    """The bench database as a libpq-style URL for asyncpg."""
    url = postgres.bench_url().set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


async def _db_facts(service_id: int, offered: list[str]) -> DbFacts:
    offered_at = {datetime.fromisoformat(start) for start in offered}
    connection = await asyncpg.connect(database_dsn(), timeout=postgres.CONNECT_TIMEOUT_S)
    try:
        slots = await connection.fetch(
            "SELECT s.id, s.starts_at, s.bookable, s.booked, "
            "       count(b.id) FILTER (WHERE b.state = 'booked') AS active "
            "FROM slots s LEFT JOIN bookings b ON b.slot_id = s.id "
            "WHERE s.service_id = $1 GROUP BY s.id ORDER BY s.starts_at",
            service_id,
        )
        states = await connection.fetch(
            "SELECT state, count(*) AS n FROM bookings WHERE service_id = $1 GROUP BY state",
            service_id,
        )
        usage = await connection.fetchrow(
            "SELECT sessions, active_time, idle_in_transaction_time "
            "FROM pg_stat_database WHERE datname = current_database()"
        )
        duplicate_holders = await connection.fetchval(
            "SELECT count(*) FROM (SELECT phone FROM bookings "
            "  WHERE service_id = $1 AND state = 'booked' "
            "  GROUP BY phone HAVING count(*) > 1) AS holders",
            service_id,
        )
    finally:
        await connection.close()
    over = [s for s in slots if s["active"] > s["bookable"]]
    mismatched = [s for s in slots if s["active"] != s["booked"]]
    examples = [
        f"slot {s['id']} at {s['starts_at']:%Y-%m-%d %H:%M}Z: bookable {s['bookable']}, "
        f"booked counter {s['booked']}, bookings {s['active']}"
        for s in (over + mismatched)[:MAX_SAMPLES]
    ]
    by_state = {r["state"]: int(r["n"]) for r in states}
    return DbFacts(
        places=sum(s["bookable"] for s in slots if s["starts_at"] in offered_at),
        made=by_state.get("booked", 0),
        overbooked=len(over),
        mismatched=len(mismatched),
        duplicate_holders=int(duplicate_holders or 0),
        not_full=sum(
            1 for s in slots if s["starts_at"] in offered_at and s["active"] < s["bookable"]
        ),
        states=by_state,
        stray_slots=sum(1 for s in slots if s["starts_at"] not in offered_at),
        examples=examples,
        sessions=int(usage["sessions"]) - 1,
        active_s=float(usage["active_time"]) / 1000,
        idle_in_transaction_s=float(usage["idle_in_transaction_time"]) / 1000,
    )


def db_facts(service_id: int, offered: list[str]) -> DbFacts:
    return asyncio.run(_db_facts(service_id, offered))
