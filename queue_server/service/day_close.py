"""Closing a hall's day: whoever is still waiting gets a recorded outcome, old events go.

Numbering needs nothing here: numbers are per business day, so the next day starts at
001 by itself. The job is idempotent and also catches up on days no process closed (the
server was down at closing time): it closes every day up to the one it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import delete, or_, select

from queue_server.db.repository import apply_ticket, ticket_from_row
from queue_server.db.tables import HallEventRow, TicketRow
from queue_server.domain.model import TicketState

from .unit_of_work import UnitOfWork

EVENT_LOG_DAYS = 7
"""Published hall events are kept this long (live feeds replay only the last few hundred)."""
COUNTER_LOG_DAYS = 63
"""Counters opening, pausing and closing are kept nine weeks: they are the hall's record of
how its counters were staffed, from which the booking plan and the wait estimate learn
(queue_server/service/staffing.py). A few rows per counter a day."""
COUNTER_EVENTS = ("CounterOpened", "CounterPaused", "CounterClosed")


@dataclass(frozen=True)
class DayClosed:
    hall_id: int
    through: date
    tickets_closed: int
    events_pruned: int


async def close_day(uow: UnitOfWork, hall_id: int, through: date) -> DayClosed:
    """Close the hall's business days up to ``through``: waiting and called tickets end
    cancelled with outcome ``day_closed`` (a ticket being served is left to its clerk)."""
    now = uow.clock.now()
    rows = (
        await uow.session.execute(
            select(TicketRow)
            .where(
                TicketRow.hall_id == hall_id,
                TicketRow.business_day <= through,
                TicketRow.state.in_([TicketState.WAITING, TicketState.CALLED]),
            )
            .order_by(TicketRow.id)
            .with_for_update()
        )
    ).scalars()
    closed = 0
    for row in rows:
        ticket = ticket_from_row(row)
        ticket.close_unserved(now)
        apply_ticket(row, ticket)
        uow.collect(ticket.events)
        closed += 1
    pruned = await uow.session.execute(
        delete(HallEventRow).where(
            HallEventRow.hall_id == hall_id,
            HallEventRow.published_at.is_not(None),
            HallEventRow.created_at < now - timedelta(days=EVENT_LOG_DAYS),
            or_(
                HallEventRow.name.not_in(COUNTER_EVENTS),
                HallEventRow.created_at < now - timedelta(days=COUNTER_LOG_DAYS),
            ),
        )
    )
    await uow.commit()
    return DayClosed(hall_id, through, closed, getattr(pruned, "rowcount", 0) or 0)
