"""Visitors' personal data: erased after the hall's retention period, or at once on request.

What a hall keeps about a visitor is the name, mobile number and ID tail of a booking, the
holder rows that lock per-person limits (they hold the same number or ID tail), and the
keyed hash of a visit (the one-visit figures). After ``personal_data_days`` (a hall
setting, at least the repeat window) the scheduler's day close erases them
(``erase_expired``): bookings keep their code, matter, times and states — the statistics
stay whole — with the name replaced by ``ERASED`` and no number or ID tail. A visitor may
ask for theirs to go now (``erase_booking``): a booking still ahead is cancelled first, its
place given back. Logs never held them in clear (phones are masked there).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select, update

from queue_server.db.tables import (
    BookingHolderRow,
    BookingRow,
    HallRow,
    TicketRow,
    VisitRow,
)
from queue_server.service.errors import NotFound
from queue_server.service.unit_of_work import UnitOfWork

from . import service
from .domain.booking import BookingState
from .domain.errors import DomainError
from .store import holder_keys

ERASED = "—"
"""What an erased booking's name reads."""


@dataclass(frozen=True)
class Erased:
    hall_id: int
    before: str
    """Hall date: what was before it is erased."""
    bookings: int
    holders: int
    visits: int


async def erase_expired(uow: UnitOfWork, hall_id: int) -> Erased:
    """Erase the hall's personal data older than its retention period; what was erased."""
    hall = await uow.session.get(HallRow, hall_id)
    if hall is None:
        raise NotFound(f"no hall with id {hall_id}")
    zone = ZoneInfo(hall.timezone)
    today = uow.clock.now().astimezone(zone).date()
    first_kept = today - timedelta(days=hall.personal_data_days)
    cutoff = datetime.combine(first_kept, time(), zone)
    bookings = await uow.session.execute(
        update(BookingRow)
        .where(
            BookingRow.hall_id == hall_id,
            BookingRow.slot_start < cutoff,
            BookingRow.state != BookingState.BOOKED,
            (BookingRow.phone.is_not(None))
            | (BookingRow.id_tail.is_not(None))
            | (BookingRow.name != ERASED),
        )
        .values(name=ERASED, phone=None, id_tail=None)
        .execution_options(synchronize_session=False)
    )
    holders = await uow.session.execute(
        delete(BookingHolderRow)
        .where(BookingHolderRow.hall_id == hall_id, BookingHolderRow.touched_at < cutoff)
        .execution_options(synchronize_session=False)
    )
    visits = await uow.session.execute(
        update(VisitRow)
        .where(
            VisitRow.hall_id == hall_id,
            VisitRow.business_day < first_kept,
            VisitRow.visitor_hash.is_not(None),
        )
        .values(visitor_hash=None)
        .execution_options(synchronize_session=False)
    )
    await uow.commit()
    return Erased(
        hall_id, first_kept.isoformat(), _count(bookings), _count(holders), _count(visits)
    )


def _count(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


async def erase_booking(
    uow: UnitOfWork, code: str, phone: str | None, hall_id: int | None = None
) -> service.BookingOut:
    """Erase a booking's name, number and ID tail now (the visitor asked: online with the
    booking's phone number, or staff of its hall); a booking still ahead is cancelled first.
    The visit it became forgets its visitor hash; the holder rows of that person in the
    hall go too (their other bookings keep their own details)."""
    row = await service.find_booking(uow, code, phone, hall_id)
    if row.state == BookingState.BOOKED:
        # Still ahead: give the place back first (as staff may, until the slot begins; a
        # slot begun ends as a no-show, its details erased all the same).
        with contextlib.suppress(DomainError):
            await service.cancel_booking(uow, service.CancelBooking(code, hall_id=row.hall_id))
        row = await service.find_booking(uow, code, None, row.hall_id)
    keys = holder_keys(row.phone, row.id_tail, row.name)
    if keys:
        await uow.session.execute(
            delete(BookingHolderRow).where(
                BookingHolderRow.hall_id == row.hall_id, BookingHolderRow.key.in_(keys)
            )
        )
    if row.ticket_id is not None:
        visit_id = await uow.session.scalar(
            select(TicketRow.visit_id).where(TicketRow.id == row.ticket_id)
        )
        if visit_id is not None:
            await uow.session.execute(
                update(VisitRow).where(VisitRow.id == visit_id).values(visitor_hash=None)
            )
    row.name, row.phone, row.id_tail = ERASED, None, None
    await uow.commit()
    return service.booking_out(row, await service.matter_of(uow, row))
