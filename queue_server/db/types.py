"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy.engine import Dialect
from sqlalchemy.types import DateTime, TypeDecorator


def json_text(value: Any) -> str:
    """JSON as the drivers bind it (text), written by msgspec: the JSON columns (event
    payloads, print jobs) are written and read on every ticket, and the standard library's
    encoder and decoder were 1–2% of a ticket's CPU. Unlike ``json.dumps`` it writes
    non-ASCII text as UTF-8, NaN as null, and datetimes, enums and sets as strings and
    arrays rather than refusing them; what OneDoor stores are scalars, lists and dicts."""
    return msgspec.json.encode(value).decode()


JSON_CODEC: dict[str, Any] = {
    "json_serializer": json_text,
    "json_deserializer": msgspec.json.decode,
}
"""The engine's JSON columns in and out (``create_async_engine`` options)."""


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime in and out; SQLite, which keeps no offset, stores it as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware UTC one is needed")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return utc_read(value)


def utc_read(value: datetime) -> datetime:
    """A datetime as read from the database, made aware UTC (``UTCDateTime``'s result)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
