"""What a hall manager sets for online booking: each matter's rules, the hall's calendar."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from booking import calendar_change
from booking.context import calendar_of, load_hall
from booking.domain.calendar import HallCalendar
from booking.domain.rules import rules_from_json, rules_to_json
from booking.jobs import store_released_slots
from queue_server.db.tables import ServiceRow
from queue_server.domain.hours import OpeningHours, parse_clock
from queue_server.service.errors import Invalid, NotFound
from queue_server.service.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class BookingRulesOut:
    service_id: int
    bookable: bool
    """False: the matter is not booked online (walk-in only)."""
    rules: dict[str, Any] | None


@dataclass(frozen=True)
class CalendarOut:
    hall_id: int
    breaks: list[list[str]]
    holidays: list[str]
    special_days: dict[str, list[list[str]]]
    remote_checkin: bool
    day_close_time: str


async def _service(uow: UnitOfWork, hall_id: int, service_id: int) -> ServiceRow:
    await load_hall(uow, hall_id)
    row = await uow.session.get(ServiceRow, service_id)
    if row is None or row.hall_id != hall_id:
        raise NotFound(f"hall {hall_id} has no matter with id {service_id}")
    return row


def _rules_out(row: ServiceRow) -> BookingRulesOut:
    rules = rules_to_json(rules_from_json(row.booking)) if row.booking is not None else None
    return BookingRulesOut(row.id, row.booking is not None, rules)


async def get_booking_rules(uow: UnitOfWork, hall_id: int, service_id: int) -> BookingRulesOut:
    return _rules_out(await _service(uow, hall_id, service_id))


async def set_booking_rules(
    uow: UnitOfWork, hall_id: int, service_id: int, data: dict[str, Any] | None
) -> BookingRulesOut:
    """Open the matter to online booking with these rules (missing ones take the
    defaults), or close it with None; bookings already made stay valid. The bookable days'
    slots are stored (or their places updated) in the same transaction."""
    row = await _service(uow, hall_id, service_id)
    if data is None:
        row.booking = None
    else:
        try:
            row.booking = rules_to_json(rules_from_json(data))
        except ValueError as exc:
            raise Invalid("rules", str(exc)) from None
        await store_released_slots(uow, hall_id)
    await uow.commit()
    return _rules_out(row)


def _calendar_out(hall_id: int, calendar: HallCalendar, remote: bool, close: str) -> CalendarOut:
    data = calendar.to_json()
    return CalendarOut(
        hall_id, data["breaks"], data["holidays"], data["special_days"], remote, close
    )


async def get_calendar(uow: UnitOfWork, hall_id: int) -> CalendarOut:
    row = await load_hall(uow, hall_id)
    return _calendar_out(hall_id, calendar_of(row), row.remote_checkin, row.day_close_time)


async def set_calendar(
    uow: UnitOfWork,
    hall_id: int,
    calendar: dict[str, Any],
    remote_checkin: bool | None,
    day_close_time: str | None,
    cancel_reason: str | None = None,
) -> CalendarOut:
    """Replace the hall's breaks, holidays and special days (and optionally its remote
    check-in switch and day-close time); slots of the bookable days follow at once.
    Bookings still ahead on times the new calendar closes refuse the change (409, listed)
    unless ``cancel_reason`` confirms it: then they are cancelled and their visitors told."""
    row = await load_hall(uow, hall_id)
    try:
        parsed = HallCalendar.from_json(OpeningHours.from_json(row.opening_hours), calendar)
    except ValueError as exc:
        raise Invalid("calendar", str(exc)) from None
    await calendar_change.settle_stranded(uow, hall_id, parsed, cancel_reason)
    if day_close_time is not None:
        try:
            clock = parse_clock(day_close_time)
        except ValueError as exc:
            raise Invalid("day_close_time", str(exc)) from None
        row.day_close_time = f"{clock:%H:%M}"
    if remote_checkin is not None:
        row.remote_checkin = remote_checkin
    row.booking_calendar = parsed.to_json()
    await store_released_slots(uow, hall_id)
    await uow.commit()
    return _calendar_out(hall_id, parsed, row.remote_checkin, row.day_close_time)


async def follow_counters(uow: UnitOfWork, hall_id: int) -> None:
    """The places of the hall's released slots follow its counters (added or given another
    profile) and its matters' typical minutes: capacity derived from them changes with them."""
    await load_hall(uow, hall_id)
    await store_released_slots(uow, hall_id)
    await uow.commit()
