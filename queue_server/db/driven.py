"""Issuing's statements on the PostgreSQL driver's own connection (asyncpg), with no ORM
session or SQLAlchemy execution around them.

Issuing a ticket is the hall's hottest write: every kiosk tap. Its two statements (the
hall, the matter and the Idempotency-Key read at once; then ``statements.PG_ENQUEUE``, the
whole change) each commit alone, so they need no transaction and nothing the ORM keeps.
Through an ``AsyncSession`` they cost 0.77 ms of the process's CPU a pair, on the driver's
connection 0.27 ms (docs/performance.md, "2026-12-06, morning"). The statements are the
same text, compiled once at import for asyncpg (numbered parameters) and bound by name.
The connection comes from the engine's pool and goes back to it
(``UnitOfWork.driver``); asyncpg's JSON codecs there are those SQLAlchemy installed when
it connected (``types.JSON_CODEC``), so the values are those the session path sees.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from . import statements as sql
from .repository import Enqueued, NewVisit, enqueued
from .tables import HallRow, IdempotencyKeyRow, ServiceRow


@dataclass(frozen=True)
class DriverStatement:
    """A statement as asyncpg runs it: its SQL with numbered parameters, and the names
    bound to them in order."""

    sql: str
    names: tuple[str, ...]

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        return [values[name] for name in self.names]


def for_driver(statement: ClauseElement) -> DriverStatement:
    """``statement`` compiled once for asyncpg (its ``:name`` parameters numbered)."""
    compiled = statement.compile(dialect=asyncpg_dialect.dialect())  # type: ignore[no-untyped-call]
    assert isinstance(compiled, SQLCompiler)
    return DriverStatement(compiled.string, tuple(compiled.positiontup or ()))


class ConnectionLost(ConnectionError):
    """The driver's connection failed under a statement (not the statement: the database
    refused nothing). The API answers 503 with Retry-After (``api/errors.py``); the unit of
    work drops the pool's connections (``UnitOfWork.driver``)."""


MATTER = "matter_"
"""The prefix of the matter's columns in ``ISSUE_READ``'s rows."""
_HALL_COLUMNS = ("id", "name_zh", "name_en", "timezone", "opening_hours", "priority_boosts",
                 "secondary_after_minutes", "notice")  # fmt: skip
_MATTER_COLUMNS = ("id", "prefix", "name_zh", "name_en", "active")
ISSUE_READ = for_driver(
    sql.HALL_AND_MATTER.with_only_columns(
        *(getattr(HallRow, column) for column in _HALL_COLUMNS),
        *(getattr(ServiceRow, column).label(MATTER + column) for column in _MATTER_COLUMNS),
        IdempotencyKeyRow.ticket_id.label("kept_ticket"),
        IdempotencyKeyRow.fingerprint.label("kept_fingerprint"),
    )
)
"""``statements.HALL_AND_MATTER`` with only the columns issuing uses: the hall's (those of
``repository.hall_from_row`` and of the print payload), the matter's (prefixed
``matter_``; NULL when the hall has no such matter) and what the Idempotency-Key was
stored with (``kept_ticket``, ``kept_fingerprint``)."""
ENQUEUE = for_driver(sql.PG_ENQUEUE)


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


async def _fetch_one(
    driver: asyncpg.Connection, statement: DriverStatement, values: Mapping[str, Any]
) -> asyncpg.Record | None:
    try:
        return await driver.fetchrow(statement.sql, *statement.args(values))
    except asyncpg.IntegrityConstraintViolationError as exc:
        # As the session path raises it (a 409 in the API unless the caller handles it).
        raise IntegrityError(statement.sql, None, exc) from exc
    except Exception as exc:
        if _lost(driver, exc):
            raise ConnectionLost(f"the database connection failed: {exc!r}") from exc
        raise  # the database (or the driver, for a value) refused the statement


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


async def enqueue(driver: asyncpg.Connection, visit: NewVisit) -> Enqueued | None:
    """``Repository.enqueue`` on the driver's connection: one statement committed alone.
    None when the Idempotency-Key was taken by a request that committed first (the
    statement failed whole; the issue is to be run again)."""
    try:
        found = await _fetch_one(driver, ENQUEUE, visit.values())
    except IntegrityError as exc:
        taken = getattr(exc.orig, "constraint_name", None) == "pk_idempotency_keys"
        if visit.idempotency is not None and taken:
            return None
        raise
    if found is None:
        raise LookupError(f"no hall {visit.hall_id} or matter {visit.service_id} to issue for")
    return enqueued(tuple(found), visit)
