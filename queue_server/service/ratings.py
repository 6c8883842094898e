"""Service ratings (好差评): a visitor rates a finished service from the follow page; the
hall's managers read them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from queue_server.db.tables import CounterRow, HallRow, RatingRow, ServiceRow, TicketRow, VisitRow
from queue_server.domain.errors import DomainError
from queue_server.domain.events import ServiceRated
from queue_server.domain.model import TicketState

from .errors import Conflict, Invalid, NotFound
from .unit_of_work import UnitOfWork

COMMENT_MAX = 500


@dataclass(frozen=True)
class RatingOut:
    ticket_id: int
    number: str
    service_id: int
    service_zh: str
    service_en: str
    counter_number: int | None
    stars: int
    comment: str
    created_at: datetime


@dataclass(frozen=True)
class RatingsOut:
    hall_id: int
    day: str
    count: int
    average: float | None
    ratings: list[RatingOut]


async def rate_service(uow: UnitOfWork, token: str, stars: int, comment: str) -> int:
    """Rate the visit's latest ticket once it is done; once per ticket (409 after)."""
    if not 1 <= stars <= 5:
        raise Invalid("stars", "give 1 to 5 stars")
    comment = " ".join(comment.split())
    if len(comment) > COMMENT_MAX:
        raise Invalid("comment", f"keep the comment to {COMMENT_MAX} characters")
    ticket = (
        await uow.session.execute(
            select(TicketRow)
            .join(VisitRow, VisitRow.id == TicketRow.visit_id)
            .where(VisitRow.follow_token == token)
            .order_by(TicketRow.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if ticket is None:
        raise NotFound("no ticket follows this link; check it was copied whole")
    if ticket.state != TicketState.DONE:
        raise DomainError(f"ticket {ticket.number} can be rated once its service is finished")
    now = uow.clock.now()
    number = ticket.number  # a failed flush expires the row
    uow.session.add(
        RatingRow(
            hall_id=ticket.hall_id, ticket_id=ticket.id, stars=stars, comment=comment,
            created_at=now,
        )
    )  # fmt: skip
    try:
        await uow.session.flush()
    except IntegrityError:
        raise Conflict(f"ticket {number} has been rated already; thank you") from None
    uow.collect(
        [ServiceRated(ticket.hall_id, now, ticket.id, ticket.service_id, ticket.counter_id, stars)]
    )
    await uow.commit()
    return ticket.id


async def hall_ratings(uow: UnitOfWork, hall_id: int, day: date | None) -> RatingsOut:
    """A hall day's ratings (default today), newest first, with their average."""
    hall = await uow.session.get(HallRow, hall_id)
    if hall is None:
        raise NotFound(f"no hall with id {hall_id}")
    tz = ZoneInfo(hall.timezone)
    day = day or uow.clock.now().astimezone(tz).date()
    start = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    end = start + timedelta(days=1)
    rows = await uow.session.execute(
        select(RatingRow, TicketRow.number, TicketRow.service_id, ServiceRow.name_zh,
               ServiceRow.name_en, CounterRow.number)
        .join(TicketRow, TicketRow.id == RatingRow.ticket_id)
        .join(ServiceRow, ServiceRow.id == TicketRow.service_id)
        .outerjoin(CounterRow, CounterRow.id == TicketRow.counter_id)
        .where(RatingRow.hall_id == hall_id, RatingRow.created_at >= start,
               RatingRow.created_at < end)
        .order_by(RatingRow.created_at.desc(), RatingRow.id.desc())
    )  # fmt: skip
    ratings = [
        RatingOut(r.ticket_id, number, service_id, zh, en, counter, r.stars, r.comment,
                  r.created_at)
        for r, number, service_id, zh, en, counter in rows
    ]  # fmt: skip
    average = await uow.session.scalar(
        select(func.avg(RatingRow.stars)).where(
            RatingRow.hall_id == hall_id, RatingRow.created_at >= start, RatingRow.created_at < end
        )
    )
    return RatingsOut(
        hall_id, day.isoformat(), len(ratings),
        round(float(average), 2) if average is not None else None, ratings,
    )  # fmt: skip
