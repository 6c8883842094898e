"""Errors the hall's rules raise. The API maps them to 4xx answers."""

from __future__ import annotations


class DomainError(Exception):
    """A request that the hall's rules refuse; the message says why and what to do."""


class IllegalTransition(DomainError):
    """A ticket or counter was asked for a change its current state does not allow."""

    def __init__(self, what: str, action: str, state: str, hint: str = "") -> None:
        self.what = what
        self.action = action
        self.state = state
        message = f"cannot {action} {what}: it is {state}"
        if hint:
            message = f"{message}; {hint}"
        super().__init__(message)


class HallClosed(DomainError):
    """The hall does not issue tickets at this hour."""


class UnknownPriority(DomainError):
    """A priority class the hall does not define."""


class InvalidOutcome(DomainError):
    """An outcome recorded without what it needs (a note, the missing documents)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)
