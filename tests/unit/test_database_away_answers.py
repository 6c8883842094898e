"""Which failures are "the database is away" (503 with Retry-After, the client asks again)
rather than a bug (500): the fault suite met a PostgreSQL still recovering after a crash
refusing connections with SQLSTATE 57P03, which once answered 500."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from litestar import Request
from sqlalchemy.exc import DBAPIError

from queue_server.api.errors import _database_away, on_unexpected


def a_request() -> Request[Any, Any, Any]:
    scope = {"type": "http", "method": "POST", "path": "/api/halls/1/tickets", "headers": [],
             "query_string": b"", "app": None, "state": {}}  # fmt: skip
    return Request(scope)  # type: ignore[arg-type]


def wrapped(error: Exception) -> DBAPIError:
    """As SQLAlchemy hands a driver's error to the app."""
    try:
        try:
            raise error
        except Exception as driver_error:
            raise DBAPIError("SELECT 1", None, driver_error) from driver_error
    except DBAPIError as exc:
        return exc


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection: administrator command"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        ConnectionRefusedError(111, "Connection refused"),
    ],
)
def test_a_database_restarting_or_gone_is_away(error: Exception) -> None:
    assert _database_away(wrapped(error))
    answer = on_unexpected(a_request(), wrapped(error))
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "2"


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.UndefinedColumnError("column x does not exist"),
        asyncpg.exceptions.NotNullViolationError("null value in column"),
        ValueError("a bug"),
    ],
)
def test_other_failures_are_not_mistaken_for_an_outage(error: Exception) -> None:
    assert not _database_away(wrapped(error))
