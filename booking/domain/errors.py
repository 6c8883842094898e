"""Errors the booking rules raise. All are ``DomainError``s, so the API answers them 4xx."""

from __future__ import annotations

from queue_server.domain.errors import DomainError, IllegalTransition

__all__ = [
    "CheckInClosed",
    "CutoffPassed",
    "DomainError",
    "IllegalTransition",
    "InvalidContact",
    "LimitReached",
    "NotYet",
    "OutsideWindow",
    "SlotFull",
]


class OutsideWindow(DomainError):
    """The slot has begun, or its day is not open for booking yet."""


class SlotFull(DomainError):
    """Every bookable place of the slot is taken."""


class LimitReached(DomainError):
    """This phone number or ID already holds as many bookings as the matter allows."""


class CutoffPassed(DomainError):
    """Too close to the slot to cancel or reschedule it online."""


class CheckInClosed(DomainError):
    """Check-in for this booking has not opened yet, or its day is over."""


class NotYet(DomainError):
    """An action asked for before the rules allow it (e.g. a no-show inside the late window)."""


class InvalidContact(DomainError):
    """A name, phone number or ID tail the booking cannot use."""
