"""Loading what the booking rules need: the hall, the matter, its rules and calendar."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from booking.domain.calendar import HallCalendar
from booking.domain.rules import BookingRules, rules_from_json
from booking.store import BookingStore
from queue_server.db.repository import hall_from_row
from queue_server.db.tables import HallRow, ServiceRow
from queue_server.domain.errors import DomainError
from queue_server.domain.hours import OpeningHours
from queue_server.domain.model import Hall
from queue_server.service.errors import NotFound
from queue_server.service.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class Matter:
    """A bookable matter of a hall with everything its rules are checked against."""

    hall_row: HallRow
    hall: Hall
    service: ServiceRow
    rules: BookingRules
    calendar: HallCalendar
    counters: int
    """Counters serving the matter (for a capacity derived from them)."""

    @property
    def tz(self) -> ZoneInfo:
        return self.hall.tz


def calendar_of(hall_row: HallRow) -> HallCalendar:
    return HallCalendar.from_json(
        OpeningHours.from_json(hall_row.opening_hours), hall_row.booking_calendar or {}
    )


def rules_of(service: ServiceRow) -> BookingRules:
    """The matter's rules; a matter whose online booking was switched off keeps the
    defaults for the bookings it already has."""
    return rules_from_json(service.booking or {})


async def load_hall(uow: UnitOfWork, hall_id: int) -> HallRow:
    row = await uow.session.get(HallRow, hall_id)
    if row is None:
        raise NotFound(f"no hall with id {hall_id}")
    return row


async def load_matter(
    uow: UnitOfWork, hall_id: int, service_id: int, *, for_booking: bool = True
) -> Matter:
    """The matter ``service_id`` of hall ``hall_id``; with ``for_booking``, refuse one that
    is inactive or not booked online (409 saying to take a ticket at the hall instead)."""
    hall_row = await load_hall(uow, hall_id)
    service = await uow.session.get(ServiceRow, service_id)
    if service is None or service.hall_id != hall_id:
        raise NotFound(f"hall {hall_id} has no matter with id {service_id}")
    if for_booking and (service.booking is None or not service.active):
        raise DomainError(
            f"matter {service.name_en} ({service.name_zh}) is not booked online; "
            "take a ticket at the hall's kiosk instead"
        )
    rules = rules_of(service)
    counters = 0
    if rules.capacity is None:
        counters = await BookingStore(uow.session).counters_serving(service.id)
    return Matter(
        hall_row, hall_from_row(hall_row), service, rules, calendar_of(hall_row), counters
    )
