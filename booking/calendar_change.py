"""A hall's days or hours change where bookings exist: nothing is silently stranded.

Making a day a holiday, adding a break, changing a special day or the opening hours can
take away times that visitors have booked. Before such a change is stored, the bookings
still ahead whose slot the new calendar no longer has are found (``stranded``). The
change is refused (409) with that list, so the manager sees who is affected, unless they
confirm it with a reason: then each such booking is cancelled by the hall in the same
transaction (its place given back, ``BookingCancelled``), and the reminder job tells each
visitor once, in both languages, why and where to book again (``claim_notices``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from booking.context import load_matter
from booking.domain.booking import BookingState
from booking.domain.calendar import HallCalendar
from booking.domain.contact import mask_phone
from booking.notify import Reminder
from booking.store import BookingStore, apply_booking, booking_from_row
from queue_server.db.tables import BookingRow, HallRow, ServiceRow
from queue_server.domain.hours import OpeningHours
from queue_server.service import hall_config
from queue_server.service.errors import Conflict, Invalid, NotFound
from queue_server.service.hall_config import HallOut
from queue_server.service.unit_of_work import UnitOfWork

REASON_MAX = 500


@dataclass(frozen=True)
class StrandedBooking:
    """A booking still ahead on a time the new calendar does not have."""

    code: str
    service_id: int
    service_zh: str
    service_en: str
    slot_start: datetime
    local_date: str
    local_time: str
    name: str
    phone: str | None
    """Masked (138****8000): enough for the manager to recognise, not to copy."""


async def stranded(
    uow: UnitOfWork, hall_id: int, calendar: HallCalendar
) -> list[tuple[BookingRow, StrandedBooking]]:
    """The hall's bookings still ahead whose slot ``calendar`` no longer has."""
    now = uow.clock.now()
    rows = (
        await uow.session.scalars(
            select(BookingRow)
            .where(
                BookingRow.hall_id == hall_id,
                BookingRow.state == BookingState.BOOKED,
                BookingRow.slot_start > now,
            )
            .order_by(BookingRow.slot_start, BookingRow.id)
            .with_for_update()
        )
    ).all()
    found: list[tuple[BookingRow, StrandedBooking]] = []
    matters: dict[int, Any] = {}
    for row in rows:
        matter = matters.get(row.service_id)
        if matter is None:
            matter = await load_matter(uow, hall_id, row.service_id, for_booking=False)
            matters[row.service_id] = matter
        if calendar.slot_at(row.slot_start, matter.rules, matter.tz) is not None:
            continue
        local = row.slot_start.astimezone(matter.tz)
        service = matter.service
        found.append(
            (
                row,
                StrandedBooking(
                    row.code,
                    service.id,
                    service.name_zh,
                    service.name_en,
                    row.slot_start,
                    local.date().isoformat(),
                    f"{local:%H:%M}",
                    row.name,
                    mask_phone(row.phone),
                ),
            )
        )
    return found


def check_reason(cancel: bool, reason: str | None) -> str | None:
    """The reason given with a confirmation, cleaned; a confirmation needs one."""
    if not cancel:
        return None
    cleaned = " ".join((reason or "").split())
    if not cleaned:
        raise Invalid(
            "reason", "say why the bookings are cancelled: each visitor is told (e.g. 'closed "
            "for a public holiday')",
        )  # fmt: skip
    if len(cleaned) > REASON_MAX:
        raise Invalid("reason", f"keep it to {REASON_MAX} characters")
    return cleaned


async def settle_stranded(
    uow: UnitOfWork, hall_id: int, calendar: HallCalendar, reason: str | None
) -> list[StrandedBooking]:
    """Refuse the change (409, listing the bookings it strands) unless ``reason`` confirms
    it; then cancel those bookings in the caller's transaction. What was cancelled."""
    found = await stranded(uow, hall_id, calendar)
    if not found:
        return []
    listed = [out for _, out in found]
    if reason is None:
        raise Conflict(
            f"{len(found)} booking{'s' if len(found) != 1 else ''} still ahead fall on times "
            "this change closes; confirm with cancel_stranded and a reason to cancel them and "
            "tell each visitor, or change the calendar otherwise",
            reason="bookings_stranded",
            stranded=listed,
        )
    store = BookingStore(uow.session)
    now = uow.clock.now()
    for row, _ in found:
        matter = await load_matter(uow, hall_id, row.service_id, for_booking=False)
        booking = booking_from_row(row, matter.tz.key)
        booking.cancel(now, replace(matter.rules, cancel_cutoff=timedelta(0)))
        apply_booking(row, booking)
        row.ended_at = now
        row.cancel_reason = reason
        await store.give_back_place(row.slot_id)
        uow.collect(booking.events)
    return listed


async def claim_notices(uow: UnitOfWork, base_url: str) -> list[Reminder]:
    """Take the bookings the hall cancelled whose visitor has not been told, mark them told
    (one transaction: two runs never tell twice); what to send. A booking without a phone
    number cannot be told here: it is marked, and the manager saw it in the list."""
    now = uow.clock.now()
    rows = (
        await uow.session.scalars(
            select(BookingRow)
            .where(BookingRow.cancel_reason.is_not(None), BookingRow.notice_sent_at.is_(None))
            .order_by(BookingRow.id)
            .with_for_update(skip_locked=True)
        )
    ).all()
    due: list[Reminder] = []
    for row in rows:
        row.notice_sent_at = now
        if row.phone is None:
            continue
        hall = await uow.session.get(HallRow, row.hall_id)
        service = await uow.session.get(ServiceRow, row.service_id)
        assert hall is not None and service is not None
        local = row.slot_start.astimezone(ZoneInfo(hall.timezone))
        due.append(
            Reminder(
                code=row.code, phone=row.phone, name=row.name, hall_zh=hall.name_zh,
                hall_en=hall.name_en, matter_zh=service.name_zh, matter_en=service.name_en,
                local_date=local.date().isoformat(), local_time=f"{local:%H:%M}",
                manage_url=f"{base_url}/book?hall={row.hall_id}&service={row.service_id}",
                cancelled_because=row.cancel_reason,
            )
        )  # fmt: skip
    await uow.commit()
    return due


async def unclaim_notice(uow: UnitOfWork, code: str) -> None:
    row = await BookingStore(uow.session).by_code(code, lock=True)
    if row is not None:
        row.notice_sent_at = None
    await uow.commit()


async def change_opening_hours(
    uow: UnitOfWork, hall_id: int, fields: dict[str, Any], reason: str | None
) -> HallOut:
    """The hall changed with new opening hours, the bookings they strand settled first (in
    the same transaction: refused, or cancelled with ``reason``)."""
    hall = await uow.session.get(HallRow, hall_id)
    if hall is None:
        raise NotFound(f"no hall with id {hall_id}")
    try:
        hours = OpeningHours.from_json(fields["opening_hours"])
        calendar = HallCalendar.from_json(hours, hall.booking_calendar or {})
    except ValueError as exc:
        raise Invalid("opening_hours", str(exc)) from None
    await settle_stranded(uow, hall_id, calendar, reason)
    return await hall_config.update_hall(uow, hall_id, fields)
