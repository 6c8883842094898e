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
from queue_server.domain.errors import DomainError, UnknownPriority
from queue_server.service.errors import Conflict, Forbidden, Invalid, NotFound, RetryTransaction
from queue_server.service.unit_of_work import is_transient

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
        "the hall's database cannot be reached right now; nothing was changed, try again",
    )
    answer.headers["Retry-After"] = "2"
    return answer


def _database_away(exc: Exception) -> bool:
    """A lost or refused database connection (the pool drops its connections on the first
    such error, so the next request connects afresh)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, ConnectionError)


def on_unexpected(request: AnyRequest, exc: Exception) -> Response[dict[str, object]]:
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
    answer = _answer(
        HTTP_429_TOO_MANY_REQUESTS,
        "too many booking requests from this address; wait a minute and try again",
    )
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
