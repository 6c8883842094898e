"""The hottest commands' statements on the PostgreSQL driver's own connection (asyncpg),
with no ORM session or SQLAlchemy execution around them: issuing a walk-in, and a
counter's call-next.

Issuing a ticket is the hall's hottest write: every kiosk tap. Its statements (the hall,
the matter and the Idempotency-Key read at once, where the process does not know them
yet; then ``statements.PG_ENQUEUE``, the whole change, or ``PG_ENQUEUE_IF_FACTS``, the
same checked against what the process knows) each commit alone, so they need no
transaction and nothing the ORM keeps.
Through an ``AsyncSession`` they cost 0.77 ms of the process's CPU a pair, on the driver's
connection 0.27 ms (docs/performance.md, "2026-12-06, morning"). The statements are the
same text, compiled once at import for asyncpg (numbered parameters) and bound by name.
The connection comes from the engine's pool and goes back to it
(``UnitOfWork.driver``); asyncpg's JSON codecs there are those SQLAlchemy installed when
it connected (``types.JSON_CODEC``), so the values are those the session path sees.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg
from sqlalchemy import bindparam, literal_column, select
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from queue_server.domain import events as ev
from queue_server.domain.floor import Candidate
from queue_server.domain.model import Counter

from . import statements as sql
from .repository import (
    Busy,
    Enqueued,
    NewVisit,
    ViewParts,
    candidates,
    counter_from_rows,
    enqueued,
    events_values,
    heads_or_busy,
)
from .tables import BookingRow, HallRow, IdempotencyKeyRow, ServiceRow, TicketRow, VisitRow


@dataclass(frozen=True)
class DriverStatement:
    """A statement as asyncpg runs it: its SQL with numbered parameters, and the names
    bound to them in order."""

    sql: str
    names: tuple[str, ...]
    given: Mapping[str, Any]
    """The values the statement was built with (a literal in a comparison, a LIMIT)."""

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        given = self.given
        return [values[name] if name in values else given[name] for name in self.names]


def for_driver(statement: ClauseElement) -> DriverStatement:
    """``statement`` compiled once for asyncpg (its ``:name`` parameters numbered)."""
    compiled = statement.compile(dialect=asyncpg_dialect.dialect())  # type: ignore[no-untyped-call]
    assert isinstance(compiled, SQLCompiler)
    given = {name: value for name, value in compiled.params.items() if value is not None}
    return DriverStatement(compiled.string, tuple(compiled.positiontup or ()), given)


class ConnectionLost(ConnectionError):
    """The driver's connection failed under a statement (not the statement: the database
    refused nothing). The API answers 503 with Retry-After (``api/errors.py``); the unit of
    work drops the pool's connections (``UnitOfWork.driver``)."""


MATTER = "matter_"
"""The prefix of the matter's columns in ``ISSUE_READ``'s rows."""
_HALL_COLUMNS = sql.ISSUE_HALL_COLUMNS
ISSUE_READ = for_driver(
    sql.HALL_AND_MATTER.with_only_columns(
        *(getattr(HallRow, column) for column in _HALL_COLUMNS),
        *(
            getattr(ServiceRow, column).label(MATTER + column)
            for column in sql.ISSUE_MATTER_COLUMNS
        ),
        IdempotencyKeyRow.ticket_id.label("kept_ticket"),
        IdempotencyKeyRow.fingerprint.label("kept_fingerprint"),
        literal_column(sql.ISSUE_FACTS).label("facts"),
    )
)
"""``statements.HALL_AND_MATTER`` with only the columns issuing uses: the hall's (those of
``repository.hall_from_row`` and of the print payload), the matter's (prefixed
``matter_``; NULL when the hall has no such matter), what the Idempotency-Key was
stored with (``kept_ticket``, ``kept_fingerprint``) and the digest of the hall's and the
matter's columns read (``facts``, ``statements.ISSUE_FACTS``)."""
ENQUEUE = for_driver(sql.PG_ENQUEUE)
ENQUEUE_IF_FACTS = for_driver(sql.PG_ENQUEUE_IF_FACTS)
ENQUEUE_MANY = for_driver(sql.PG_ENQUEUE_MANY)
ENQUEUE_MANY_ARRAYS = {
    "services": "service", "prefixes": "prefix", "days": "day", "tokens": "token",
    "nows": "now", "kinds": "kind", "priorities": "priority", "dues": "due",
    "devices": "device", "users": "user", "job_payloads": "job_payload", "scopes": "scope",
    "keys": "key", "fingerprints": "fingerprint", "events": "event", "job_events": "job_event",
}  # fmt: skip
"""``ENQUEUE_MANY``'s arrays, each of one of ``NewVisit.values``."""


class FactsChanged(LookupError):
    """The hall or the matter is no longer as the digest given to ``enqueue`` says (or is
    gone): nothing was written; read them again."""


class RecordFields:
    """A driver's row read by attribute, as the ORM row of the same columns is read
    (``prefix``: the columns of one table in a joined row, e.g. ``matter_``)."""

    __slots__ = ("_prefix", "_record")

    def __init__(self, record: asyncpg.Record, prefix: str = "") -> None:
        self._record = record
        self._prefix = prefix

    def __getattr__(self, name: str) -> Any:
        try:
            return self._record[self._prefix + name]
        except KeyError:
            raise AttributeError(name) from None


@contextlib.contextmanager
def _told_as_the_session_tells(driver: asyncpg.Connection, sql_text: str) -> Iterator[None]:
    """A statement's failure told as the session path tells it: a broken constraint as
    SQLAlchemy's ``IntegrityError`` (a 409 in the API unless the caller handles it), a
    failed connection as ``ConnectionLost`` (a 503); what the database (or the driver,
    for a value) refused otherwise as it is."""
    try:
        yield
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise IntegrityError(sql_text, None, exc) from exc
    except Exception as exc:
        if _lost(driver, exc):
            raise ConnectionLost(f"the database connection failed: {exc!r}") from exc
        raise


async def _fetch_one(
    driver: asyncpg.Connection, statement: DriverStatement, values: Mapping[str, Any]
) -> asyncpg.Record | None:
    with _told_as_the_session_tells(driver, statement.sql):
        return await driver.fetchrow(statement.sql, *statement.args(values))


async def fetch(
    driver: asyncpg.Connection, statement: DriverStatement, values: Mapping[str, Any]
) -> list[asyncpg.Record]:
    """``statement``'s rows, a failure told as the session path tells it."""
    with _told_as_the_session_tells(driver, statement.sql):
        found: list[asyncpg.Record] = await driver.fetch(statement.sql, *statement.args(values))
        return found


def _lost(driver: asyncpg.Connection, exc: Exception) -> bool:
    """Whether ``exc`` says the connection failed, not the statement. A connection the
    database ended fails in more ways than one: closed under the statement, or (its
    notice read as the statement began) an operation "in progress" (asyncpg's
    InternalClientError). The session path tells them apart by whether the connection is
    closed; so does this. Any other misuse of the driver is a bug, not an outage."""
    if driver.is_closed() or isinstance(exc, OSError | asyncpg.InternalClientError):
        return True
    return isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc)


async def issue_read(
    driver: asyncpg.Connection, *, hall_id: int, service_id: int, scope: str, key: str | None
) -> asyncpg.Record | None:
    """``ISSUE_READ``'s row: None when there is no hall ``hall_id``."""
    values = {"hall": hall_id, "service": service_id, "scope": scope, "key": key}
    return await _fetch_one(driver, ISSUE_READ, values)


async def enqueue(
    driver: asyncpg.Connection, visit: NewVisit, facts: str | None = None
) -> Enqueued | None:
    """``Repository.enqueue`` on the driver's connection: one statement committed alone.
    None when the Idempotency-Key was taken by a request that committed first (the
    statement failed whole; the issue is to be run again). With ``facts`` (``ISSUE_READ``'s
    digest of the hall and the matter the visit was made from) only if they are still so
    (``statements.PG_ENQUEUE_IF_FACTS``): ``FactsChanged`` when not, nothing written."""
    values = visit.values()
    statement = ENQUEUE
    if facts is not None:
        values["facts"] = facts
        statement = ENQUEUE_IF_FACTS
    try:
        found = await _fetch_one(driver, statement, values)
    except IntegrityError as exc:
        taken = getattr(exc.orig, "constraint_name", None) == "pk_idempotency_keys"
        if visit.idempotency is not None and taken:
            return None
        raise
    if found is None:
        if facts is not None:
            raise FactsChanged(f"hall {visit.hall_id} or its matter {visit.service_id} changed")
        raise LookupError(f"no hall {visit.hall_id} or matter {visit.service_id} to issue for")
    return enqueued(tuple(found), visit)


async def enqueue_many(
    driver: asyncpg.Connection, sent: Sequence[tuple[NewVisit, str]]
) -> list[Enqueued | None] | None:
    """Several walk-ins of one hall, each with the digest of the facts its visit was made
    from, in one statement committed alone (``statements.PG_ENQUEUE_MANY``): each as
    ``enqueue`` would have made it, in the order given. An issue whose Idempotency-Key is
    stored already, or came earlier in ``sent``, is not made (None in its place: its
    request reads the key's ticket). None for all when a key was taken meanwhile by a
    statement that committed first (the statement failed whole: nothing written);
    ``FactsChanged`` when a hall or matter is no longer as a digest says (nothing
    written)."""
    hall_id = sent[0][0].hall_id
    if any(visit.hall_id != hall_id for visit, _ in sent):
        raise ValueError("issues sent together must be of one hall")
    places: list[int] = []  # of those sent: a key repeated in ``sent`` goes once
    keys: set[tuple[str, str]] = set()
    for place, (visit, _) in enumerate(sent):
        key = visit.idempotency[:2] if visit.idempotency else None
        if key is None or key not in keys:
            places.append(place)
        if key is not None:
            keys.add(key)
    each = [sent[place][0].values() for place in places]
    values: dict[str, Any] = {
        name: [one[field] for one in each] for name, field in ENQUEUE_MANY_ARRAYS.items()
    }
    values["hall"] = hall_id
    values["facts"] = [sent[place][1] for place in places]
    try:
        rows = await fetch(driver, ENQUEUE_MANY, values)
    except IntegrityError as exc:
        if getattr(exc.orig, "constraint_name", None) == "pk_idempotency_keys" and keys:
            return None
        raise
    if not rows:
        raise FactsChanged(f"hall {hall_id} or one of its matters changed")
    made = [sent[place][0] for place, row in zip(places, rows, strict=False) if row[1]]
    logged = sum(row[5] for row in rows)
    keyed = sum(visit.idempotency is not None for visit in made)
    if len(rows) != len(places) or rows[0][10] != keyed or rows[0][11] != logged:
        raise AssertionError(
            f"{len(places)} issues sent together gave {len(rows)} rows, "
            f"{rows[0][10]} of {keyed} keys and {rows[0][11]} of {logged} events"
        )
    told: list[Enqueued | None] = [None] * len(sent)
    for place, row in zip(places, rows, strict=True):
        _, ticket_id, number, visit_id, job_id, events, seq, connected, seen, problem = row[:10]
        if ticket_id is None:
            continue  # its key is stored already
        visit = sent[place][0]
        keyed_here = int(visit.idempotency is not None)
        found = (ticket_id, number, visit_id, job_id, keyed_here, events, seq, connected, seen,
                 problem)  # fmt: skip
        told[place] = enqueued(found, visit)
    return told


# A counter's call-next: the counter locked with its hall and profile, the waiting heads
# unless the counter is busy, the chosen ticket claimed with what the clerk's answer shows,
# and the change written with its events; in one transaction (``begin``, ``commit``).

HALL = "h_"
"""The prefix of the hall's columns in ``CALL_AT``'s rows."""
CALL_AT = for_driver(
    select(
        *(getattr(HallRow, column).label(HALL + column) for column in _HALL_COLUMNS),
        *sql.COUNTER_READ_LOCKED.selected_columns,
    )
    .select_from(
        sql.COUNTERS.join(HallRow, HallRow.id == sql.COUNTERS.c.hall_id).outerjoin(
            sql.COUNTER_SERVICES, sql.COUNTER_SERVICES.c.counter_id == sql.COUNTERS.c.id
        )
    )
    .where(sql.COUNTERS.c.id == bindparam("counter"))
    .with_for_update(of=sql.COUNTERS)
)
"""``statements.COUNTER_AND_HALL_READ_LOCKED`` with the hall's columns ``hall_from_row``
reads (prefixed ``h_``), then the counter's and its profile's, as ``COUNTER_READ``."""
HEADS_UNLESS_BUSY = for_driver(sql.PG_WAITING_HEADS_UNLESS_BUSY)
HEADS = for_driver(sql.PG_WAITING_HEADS)

_BOOKING = "b_"
_BOOKING_COLUMNS = ("id", "code", "name", "phone", "id_tail", "slot_start", "channel",
                    "checked_in_at", "state")  # fmt: skip
_TICKET_COLUMNS = tuple(column.name for column in sql.TICKETS.columns)


_TICKET_AND_PARTS = (
    *sql.TICKETS.columns,
    ServiceRow.name_zh.label("s_name_zh"),
    ServiceRow.name_en.label("s_name_en"),
    ServiceRow.desk.label("s_desk"),
    VisitRow.follow_token.label("v_follow_token"),
    *(getattr(BookingRow, column).label(_BOOKING + column) for column in _BOOKING_COLUMNS),
)
"""A ticket's columns, then what its view shows besides (``statements.VIEW_PARTS``: the
matter's names and desk flag prefixed ``s_``, the visit's follow token
``v_follow_token``, the booking's columns ``b_``); read by ``_parts``."""


def _claim(*, skip_locked: bool) -> DriverStatement:
    return for_driver(
        select(*_TICKET_AND_PARTS)
        .select_from(sql.TICKETS)
        .join(ServiceRow, ServiceRow.id == sql.TICKETS.c.service_id)
        .join(VisitRow, VisitRow.id == sql.TICKETS.c.visit_id)
        .outerjoin(BookingRow, BookingRow.ticket_id == sql.TICKETS.c.id)
        .where(sql.TICKETS.c.id == bindparam("ticket"), sql.TICKETS.c.state == "waiting")
        .limit(1)
        .with_for_update(of=sql.TICKETS, skip_locked=skip_locked)
    )


CLAIM_SKIP_LOCKED = _claim(skip_locked=True)
CLAIM_LOCKED = _claim(skip_locked=False)
"""``statements.CLAIM_SKIP_LOCKED`` / ``CLAIM_LOCKED``, as ``_TICKET_AND_PARTS``."""
_COUNTER = "c_"
COUNTER_AND_ACTIVE = for_driver(
    sql.PG_COUNTER_AND_ACTIVE.with_only_columns(
        *_TICKET_AND_PARTS,
        *(column.label(_COUNTER + column.name) for column in sql.COUNTER_READ.selected_columns),
        maintain_column_froms=False,
    )
)
"""``statements.PG_COUNTER_AND_ACTIVE`` (no lock): ``_TICKET_AND_PARTS``, then the
counter's columns and its profile's (prefixed ``c_``)."""
COUNTER = for_driver(sql.COUNTER_READ)


@functools.cache
def _record_with_ticket(columns: tuple[str, ...]) -> DriverStatement:
    return for_driver(sql.pg_record_events_with_ticket(columns))


async def _run(driver: asyncpg.Connection, command: str) -> None:
    with _told_as_the_session_tells(driver, command):
        await driver.execute(command)


async def begin(driver: asyncpg.Connection) -> None:
    """Begin a transaction at the database's default isolation (READ COMMITTED unless
    configured otherwise), as the session path's begin."""
    await _run(driver, "BEGIN")


async def commit(driver: asyncpg.Connection) -> None:
    await _run(driver, "COMMIT")


async def counter_to_call_at(
    driver: asyncpg.Connection, counter_id: int
) -> tuple[Counter, RecordFields] | None:
    """``Repository.counter_to_call_at``: the counter, locked, with its profile, and its
    hall's row (read by attribute, as ``hall_from_row`` reads it). None: no such counter."""
    found = await fetch(driver, CALL_AT, {"counter": counter_id})
    if not found:
        return None
    return counter_from_rows(found, first=len(_HALL_COLUMNS)), RecordFields(found[0], HALL)


async def waiting_heads_unless_busy(
    driver: asyncpg.Connection,
    hall_id: int,
    day: date,
    service_ids: Sequence[int],
    per_kind: int,
    counter_id: int,
) -> list[Candidate] | Busy:
    """``Repository.waiting_heads_unless_busy`` (a counter serving matters)."""
    values = {
        "hall": hall_id, "day": day, "services": list(service_ids), "per_kind": per_kind,
        "counter": counter_id,
    }  # fmt: skip
    return heads_or_busy(await fetch(driver, HEADS_UNLESS_BUSY, values))


async def waiting_heads(
    driver: asyncpg.Connection, hall_id: int, day: date, service_ids: Sequence[int], per_kind: int
) -> list[Candidate]:
    """``Repository.waiting_heads``."""
    values = {"hall": hall_id, "day": day, "services": list(service_ids), "per_kind": per_kind}
    return candidates(await fetch(driver, HEADS, values))


async def claim_waiting(
    driver: asyncpg.Connection, ticket_id: int, *, skip_locked: bool = True
) -> ViewParts | None:
    """``Repository.claim_waiting``: the ticket locked if it still waits (and, with
    ``skip_locked``, no other transaction holds it), as a row the session holds none of,
    with what its view shows besides."""
    statement = CLAIM_SKIP_LOCKED if skip_locked else CLAIM_LOCKED
    found = await _fetch_one(driver, statement, {"ticket": ticket_id})
    return _parts(found) if found is not None else None


def _parts(found: asyncpg.Record) -> ViewParts:
    """A ticket read with ``_TICKET_AND_PARTS``: a row no session holds, with what its
    view shows besides."""
    row = TicketRow(**{column: found[column] for column in _TICKET_COLUMNS})
    booking = None
    if found[_BOOKING + "id"] is not None:
        booking = BookingRow(**{c: found[_BOOKING + c] for c in _BOOKING_COLUMNS})
    desk = found["s_desk"]
    return ViewParts(
        row, found["s_name_zh"], found["s_name_en"], desk, found["v_follow_token"], booking
    )


async def counter_and_active(
    driver: asyncpg.Connection, counter_id: int
) -> tuple[Counter | None, ViewParts | None]:
    """``Repository.counter_and_active_ticket(lock=False)``: the counter and the ticket
    called or served there, with what its view shows, read without a lock (None for
    either that is not there)."""
    values = {"counter": counter_id}
    found = await fetch(driver, COUNTER_AND_ACTIVE, values)
    if found:
        mine = [f for f in found if f["id"] == found[0]["id"]]  # one ticket's rows
        return counter_from_rows(mine, first=len(_TICKET_AND_PARTS)), _parts(mine[0])
    # No ticket there: the counter alone, to say why.
    found = await fetch(driver, COUNTER, values)
    return (counter_from_rows(found) if found else None), None


async def record_with_ticket(
    driver: asyncpg.Connection,
    row: TicketRow,
    changed: Mapping[str, Any],
    events: Sequence[ev.Event],
    now: datetime,
) -> None:
    """``Repository.record_events`` of one ticket's change (its ``changed`` columns'
    new values) and its ``events``, in one statement, for a ticket locked in this
    transaction; the commit numbers the events (migration 0016)."""
    statement = _record_with_ticket(tuple(changed))
    values = events_values(row.hall_id, events, now) | {f"t_{k}": v for k, v in changed.items()}
    await _fetch_one(driver, statement, values | {"t_id": row.id})


@functools.cache
def _record_with_ticket_if_unchanged(columns: tuple[str, ...]) -> DriverStatement:
    return for_driver(sql.pg_record_events_with_ticket_if_unchanged(columns))


async def record_with_ticket_if_unchanged(
    driver: asyncpg.Connection,
    row: TicketRow,
    changed: Mapping[str, Any],
    read: Mapping[str, Any],
    events: Sequence[ev.Event],
    now: datetime,
) -> bool:
    """A clerk's action (``queue._on_current_driven``): one ticket's change, read without
    a lock, and its events in one statement committed alone, if the ticket's
    ``statements.TICKET_VERSION_COLUMNS`` still hold the values it was ``read`` with.
    False when it had moved: nothing written."""
    statement = _record_with_ticket_if_unchanged(tuple(changed))
    values = events_values(row.hall_id, events, now) | {f"t_{k}": v for k, v in changed.items()}
    values |= {f"o_{k}": read[k] for k in sql.TICKET_VERSION_COLUMNS} | {"t_id": row.id}
    return await _fetch_one(driver, statement, values) is not None


EVENTS_SINCE = for_driver(sql.EVENTS_SINCE)


async def events_since(
    driver: asyncpg.Connection, hall_id: int, seq: int, limit: int
) -> list[asyncpg.Record]:
    """``statements.EVENTS_SINCE`` on the driver's connection: the hall's events after
    ``seq`` (at most ``limit``), each ``(seq, name, payload)``, the payload decoded as
    the session reads it. What a kiosk's answer reads in a rush (``estimates._extended``)."""
    return await fetch(driver, EVENTS_SINCE, {"hall": hall_id, "seq": seq, "limit": limit})
