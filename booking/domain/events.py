"""What happened to a booking, in the past tense; rows in the hall's log like queue events.

A booking is named by its code: the code exists from the moment the booking is made, before
the database gives it an id, and it is what the visitor holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from queue_server.domain.events import Event


@dataclass(frozen=True)
class BookingEvent(Event):
    code: str
    service_id: int
    slot_start: datetime

    def payload(self) -> dict[str, Any]:
        """As the base's, without the code: a kiosk checks a visitor in by code alone, so
        the code must not travel on the hall's channel to boards and followers."""
        data = super().payload()
        del data["code"]
        return data


@dataclass(frozen=True)
class BookingMade(BookingEvent):
    pass


@dataclass(frozen=True)
class BookingCancelled(BookingEvent):
    pass


@dataclass(frozen=True)
class BookingRescheduled(BookingEvent):
    """``slot_start`` is the new slot; ``from_start`` the one given up."""

    from_start: datetime


@dataclass(frozen=True)
class BookingCheckedIn(BookingEvent):
    """``as_walk_in``: arrived after the late window, queued as a walk-in (``due_at`` None)."""

    due_at: datetime | None
    as_walk_in: bool


@dataclass(frozen=True)
class BookingMarkedNoShow(BookingEvent):
    pass


@dataclass(frozen=True)
class BookingDayReleased(Event):
    """A new day's slots of a matter opened for booking."""

    service_id: int
    day: str
    slots: int
    places: int
