"""Every refusal is a 4xx whose ``detail`` says what to fix; anything else is logged."""

from __future__ import annotations

import logging
import re
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_403_FORBIDDEN,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_429_TOO_MANY_REQUESTS,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import ExceptionHandlersMap
from sqlalchemy.exc import DBAPIError, IntegrityError

from booking.domain.errors import InvalidContact
from queue_server.domain.errors import DomainError, InvalidOutcome, UnknownPriority
from queue_server.service.errors import Conflict, Forbidden, Invalid, NotFound, RetryTransaction
from queue_server.service.unit_of_work import is_transient

from .clients import TooManySignIns

log = logging.getLogger("onedoor.api")
AnyRequest = Request[Any, Any, Any]


def _answer(status: int, detail: str, **extra: object) -> Response[dict[str, object]]:
    body: dict[str, object] = {"status_code": status, "detail": detail}
    if extra:
        body["extra"] = extra
    return Response(body, status_code=status, media_type=MediaType.JSON)


def reason_of(exc: Exception) -> str:
    """The refusal's kind for programs (``HallClosed`` → ``hall_closed``); pages translate
    it, the ``detail`` stays the words for people."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def on_domain_error(_: AnyRequest, exc: DomainError) -> Response[dict[str, object]]:
    if isinstance(exc, UnknownPriority):
        return _answer(HTTP_400_BAD_REQUEST, str(exc), field="priority", reason=reason_of(exc))
    if isinstance(exc, InvalidContact):
        return _answer(HTTP_400_BAD_REQUEST, str(exc), reason=reason_of(exc))
    if isinstance(exc, InvalidOutcome):
        return _answer(HTTP_400_BAD_REQUEST, str(exc), field=exc.field, reason=reason_of(exc))
    return _answer(HTTP_409_CONFLICT, str(exc), reason=reason_of(exc))


def on_invalid(_: AnyRequest, exc: Invalid) -> Response[dict[str, object]]:
    return _answer(HTTP_400_BAD_REQUEST, str(exc), field=exc.field)


def on_not_found(_: AnyRequest, exc: NotFound) -> Response[dict[str, object]]:
    return _answer(HTTP_404_NOT_FOUND, str(exc))


def on_forbidden(_: AnyRequest, exc: Forbidden) -> Response[dict[str, object]]:
    return _answer(HTTP_403_FORBIDDEN, str(exc))


def on_conflict(_: AnyRequest, exc: Conflict) -> Response[dict[str, object]]:
    return _answer(HTTP_409_CONFLICT, str(exc), **exc.extra)


def on_integrity(request: AnyRequest, exc: IntegrityError) -> Response[dict[str, object]]:
    log.warning("integrity error on %s %s: %s", request.method, request.url.path, exc.orig)
    return _answer(
        HTTP_409_CONFLICT, "this clashes with something already stored; check for duplicates"
    )


def on_busy(request: AnyRequest, exc: Exception) -> Response[dict[str, object]]:
    log.warning("gave up after retries on %s %s: %r", request.method, request.url.path, exc)
    return _answer(
        HTTP_503_SERVICE_UNAVAILABLE, "the hall is very busy right now; please try again"
    )


def on_database_away(request: AnyRequest, exc: Exception) -> Response[dict[str, object]]:
    log.warning("database unreachable on %s %s: %r", request.method, request.url.path, exc)
    answer = _answer(
        HTTP_503_SERVICE_UNAVAILABLE,
        "the hall's database cannot be reached right now; try again in a moment",
    )
    answer.headers["Retry-After"] = "2"
    return answer


AWAY_SQLSTATES = {"57P01", "57P02", "57P03"}
"""admin_shutdown, crash_shutdown, cannot_connect_now (the server is starting up or
recovering after a crash); with every connection_exception (class 08)."""


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc``, the driver's error it wraps and what that came from, each once."""
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in found):
        found.append(current)
        orig = getattr(current, "orig", None)
        current = (
            orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)
        )
    return found


def _database_away(exc: Exception) -> bool:
    """A lost or refused database connection, or a database shutting down or still
    starting after a restart (the pool drops its connections on the first such error, so
    the next request connects afresh)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    for cause in _causes(exc):
        if isinstance(cause, ConnectionError):
            return True
        code = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
        if isinstance(code, str) and (code.startswith("08") or code in AWAY_SQLSTATES):
            return True
    return False


OUT_OF_RANGE_SQLSTATES = {"22003", "22008"}
"""numeric_value_out_of_range, datetime_field_overflow: a number or date the request gave
does not fit the database's column."""


def _out_of_range(exc: BaseException) -> bool:
    """The error, or one it came from, says a number or date did not fit (asyncpg refuses
    an id past 64 bits before sending it; SQLite's driver raises OverflowError)."""
    for cause in _causes(exc):
        if isinstance(cause, OverflowError):
            return True
        code = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
        if code in OUT_OF_RANGE_SQLSTATES:
            return True
    return False


def on_unexpected(request: AnyRequest, exc: Exception) -> Response[dict[str, object]]:
    if _out_of_range(exc):
        log.info("out of range on %s %s: %r", request.method, request.url.path, exc)
        return _answer(
            HTTP_400_BAD_REQUEST,
            "a number or date in the request is out of range; ids are positive 64-bit "
            "numbers, dates within the years 2000 to 2100",
        )
    if is_transient(exc):
        return on_busy(request, exc)
    if _database_away(exc):
        return on_database_away(request, exc)
    if isinstance(exc, HTTPException):
        body: dict[str, object] = {"status_code": exc.status_code, "detail": exc.detail}
        if exc.extra:
            body["extra"] = exc.extra
        return Response(body, status_code=exc.status_code, headers=exc.headers)
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _answer(HTTP_500_INTERNAL_SERVER_ERROR, "internal error; it has been logged")


def on_too_many(request: AnyRequest, exc: Exception) -> Response[dict[str, object]]:
    detail = (
        str(exc.detail)
        if isinstance(exc, TooManySignIns)
        else "too many booking requests from this address; wait a minute and try again"
    )
    answer = _answer(HTTP_429_TOO_MANY_REQUESTS, detail)
    if isinstance(exc, HTTPException) and exc.headers:
        answer.headers.update(exc.headers)
    return answer


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    HTTP_429_TOO_MANY_REQUESTS: on_too_many,
    DomainError: on_domain_error,
    Invalid: on_invalid,
    NotFound: on_not_found,
    Forbidden: on_forbidden,
    Conflict: on_conflict,
    IntegrityError: on_integrity,
    RetryTransaction: on_busy,
    Exception: on_unexpected,
}
