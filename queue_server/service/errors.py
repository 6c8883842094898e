"""Errors of the service layer that are not rules of the hall."""

from __future__ import annotations


class NotFound(LookupError):
    """An id or token names nothing (404)."""


class Forbidden(PermissionError):
    """The caller is known but may not do this (403)."""


class Conflict(Exception):
    """The request clashes with what is stored, e.g. a duplicate name (409).

    ``extra`` goes into the answer beside the message: e.g. the next free slots.
    """

    def __init__(self, message: str, **extra: object) -> None:
        self.extra = extra
        super().__init__(message)


class Invalid(ValueError):
    """Input that passed the schema but makes no sense (400); ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class RetryTransaction(Exception):
    """Raised inside a handler when a concurrent writer won a race; the bus runs it again."""
