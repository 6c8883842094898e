"""Check-in: a booked visitor arrives and joins the hall's one queue.

At the kiosk by code (typed, or read off the QR by a scanner) or by phone number (with the
ID's last four characters when several of the day's bookings share the phone), by a clerk,
or from the visitor's phone when the hall allows it. The booking becomes a ticket of kind
``appointment`` due at its slot time, which the queue policy calls ahead of walk-ins once
due; a late arrival past the window becomes a walk-in if the matter says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from booking.context import load_hall, load_matter
from booking.domain import contact
from booking.domain.codes import normalise_code
from booking.store import BookingStore, apply_booking, booking_from_row
from queue_server.db.repository import hall_from_row
from queue_server.db.tables import BookingRow, ServiceRow
from queue_server.domain.model import NO_PRIORITY, TicketKind
from queue_server.service.commands import Actor
from queue_server.service.errors import Conflict, Forbidden, Invalid, NotFound
from queue_server.service.queue import enqueue
from queue_server.service.unit_of_work import UnitOfWork
from queue_server.service.visitors import VisitorId, remember_visitor


@dataclass(frozen=True)
class CheckIn:
    """Check a booking in. Name it by ``code``, or by ``phone`` (+ ``id_tail`` and/or
    ``service_id`` when several of the day's bookings match)."""

    hall_id: int | None
    """The hall the kiosk or clerk belongs to; None for a visitor's remote check-in."""
    actor: Actor
    code: str | None = None
    phone: str | None = None
    id_tail: str | None = None
    service_id: int | None = None
    priority: str = NO_PRIORITY
    remote: bool = False
    follow_base: str = ""


async def _check_in_open(uow: UnitOfWork, row: BookingRow, now: datetime) -> bool:
    matter = await load_matter(uow, row.hall_id, row.service_id, for_booking=False)
    return row.slot_start - matter.rules.checkin_early <= now


async def _by_phone(uow: UnitOfWork, c: CheckIn, hall_id: int) -> BookingRow:
    hall_row = await load_hall(uow, hall_id)
    tz = hall_from_row(hall_row).tz
    phone = contact.normalise_phone(c.phone or "")
    now = uow.clock.now()
    today = now.astimezone(tz).date()
    start = datetime.combine(today, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(today + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    # Today's bookings, and tomorrow's whose check-in has opened already: a hall open past
    # midnight takes a 00:15 booking from 23:45 (as by its code), not only after midnight.
    rows = await BookingStore(uow.session).booked_on_day(
        hall_id, start, end + timedelta(days=1), phone=phone, service_id=c.service_id, lock=True
    )
    rows = [r for r in rows if r.slot_start < end or await _check_in_open(uow, r, now)]
    if c.id_tail:
        tail = contact.normalise_id_tail(c.id_tail)
        rows = [r for r in rows if r.id_tail == tail]
    if not rows:
        raise NotFound(
            "no booking for today under this phone number; check the number, use the "
            "booking code, or take a walk-in ticket"
        )
    if len(rows) > 1:
        choices = []
        for r in rows:
            service = await uow.session.get(ServiceRow, r.service_id)
            choices.append(
                {
                    "service_id": r.service_id,
                    "name_zh": service.name_zh if service else "",
                    "name_en": service.name_en if service else "",
                    "time": f"{r.slot_start.astimezone(tz):%H:%M}",
                    "has_id_tail": r.id_tail is not None,
                }
            )
        by_id = len({(r.name, r.id_tail) for r in rows}) > 1 and not c.id_tail
        ask = (
            "give the last 4 characters of the ID number of the person who booked"
            if by_id
            else "choose the matter"
        )
        raise Conflict(
            f"{len(rows)} of today's bookings match this phone number; {ask}",
            reason="several_bookings",
            ask="id_tail" if by_id else "service_id",
            choices=choices,
        )
    return rows[0]


async def check_in(uow: UnitOfWork, c: CheckIn) -> int:
    """Check the booking in and return the id of its new ticket."""
    store = BookingStore(uow.session)
    if c.code is not None:
        code = normalise_code(c.code)
        if code is None:
            raise Invalid(
                "code", f"{c.code!r} is not a booking code: 8 letters and digits, e.g. K7QM4XRT"
            )
        row = await store.by_code(code, lock=True)
        if row is None or (c.hall_id is not None and row.hall_id != c.hall_id):
            where = "in this hall" if c.hall_id is not None else ""
            raise NotFound(f"no booking with code {code} {where}".strip())
    elif c.phone is not None and c.hall_id is not None:
        row = await _by_phone(uow, c, c.hall_id)
    else:
        raise Invalid("code", "give the booking code, or the phone number it was booked with")
    matter = await load_matter(uow, row.hall_id, row.service_id, for_booking=False)
    if c.remote:
        if not matter.hall_row.remote_checkin:
            raise Forbidden(
                "this hall does not take check-in from a phone; check in at the kiosk "
                "or with staff when you arrive"
            )
        if row.phone is None or contact.normalise_phone(c.phone or "") != row.phone:
            raise NotFound("no booking has this code and phone number; check both")
    hall = matter.hall
    now = uow.clock.now()
    hall.check_priority(c.priority)
    booking = booking_from_row(row, matter.tz.key)
    result = booking.check_in(now, matter.rules)
    hall.check_open(now)
    ticket = await enqueue(
        uow, hall, matter.service,
        kind=TicketKind.WALK_IN if result.as_walk_in else TicketKind.APPOINTMENT,
        priority=c.priority, actor=c.actor, follow_base=c.follow_base, due_at=result.due_at,
    )  # fmt: skip
    # The visit is the booker's: a later visit for the same matter counts as a repeat.
    await remember_visitor(
        uow, matter.hall_row, ticket.visit_id, VisitorId(row.phone, row.id_tail, row.name)
    )
    apply_booking(row, booking)
    row.ticket_id = ticket.ref
    if result.as_walk_in:
        row.ended_at = now
    uow.collect(booking.events)
    await uow.commit()
    return ticket.ref
