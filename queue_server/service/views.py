"""Read models: what a kiosk, a follower, a clerk and a board are shown."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, select, text

from booking.domain.contact import mask_phone
from queue_server.db.repository import ViewParts, hall_from_row
from queue_server.db.tables import (
    BookingRow,
    CounterRow,
    HallRow,
    RatingRow,
    ServiceRow,
    TicketRow,
    VisitRow,
)
from queue_server.domain.estimate import Told
from queue_server.domain.hours import business_day
from queue_server.domain.model import (
    ACTIVE_STATES,
    NO_PRIORITY,
    NOT_DONE,
    Hall,
    Ticket,
    TicketState,
)

from . import desk, estimates
from .desk import CaseBrief
from .errors import NotFound
from .hall_config import ServiceOut, list_services
from .unit_of_work import UnitOfWork

RECENT_CALLS = 10


@dataclass(frozen=True)
class ServiceRef:
    id: int
    name_zh: str
    name_en: str


@dataclass(frozen=True)
class PrintState:
    """What the kiosk is told about its ticket's print job."""

    state: str
    """printed | failed | pending | sent | no_printer"""
    job_id: int | None = None
    detail: str | None = None


@dataclass(frozen=True)
class BookingDetails:
    """For a ticket that came from a booking: what the clerk needs to know of it."""

    code: str
    name: str
    phone: str | None
    """Masked (138****8000)."""
    id_tail: str | None
    slot_start: datetime
    channel: str
    """online, or staff (booked on the visitor's behalf)."""
    checked_in_at: datetime | None
    state: str


@dataclass(frozen=True)
class TicketView:
    id: int
    hall_id: int
    number: str
    service: ServiceRef
    kind: str
    priority: str
    state: str
    issued_at: datetime
    people_ahead: int | None
    """Waiting tickets of the same matter that will be called first."""
    estimate_minutes: int | None
    """The projected wait (None: no counter serving the matter is open)."""
    estimate_low: int | None
    estimate_high: int | None
    """The range told: the wait is in it for nine visitors in ten (docs/queue.md)."""
    estimate_basis: str | None
    follow_token: str
    counter_number: int | None = None
    called_at: datetime | None = None
    outcome: str | None = None
    due_at: datetime | None = None
    follow_url: str = ""
    """Filled in by the API from the public base URL."""
    printing: PrintState | None = None
    """For a kiosk's fresh ticket: whether it printed (else show it on screen)."""
    booking: BookingDetails | None = None
    """The booking this ticket was checked in from."""
    rating: int | None = None
    """Stars the visitor gave the finished service, if any."""
    missing_documents: list[str] = field(default_factory=list)
    """With the outcome missing_documents: what the visitor is to bring next time."""
    note: str | None = None
    """The clerk's note on the outcome (staff views only; not on the follow page)."""
    origin: OriginRef | None = None
    """For a visit sent on to the desk: the ticket that was not done."""
    case: CaseBrief | None = None
    """The visit's desk case, as the visitor may see it."""
    desk: bool = False
    """The ticket is for the hall's "can't get it done" desk."""
    escalated_to: int | None = None
    """This not-done ticket's visit was sent on to the desk: the desk ticket's id."""


@dataclass(frozen=True)
class OriginRef:
    ticket_id: int
    number: str
    service: ServiceRef
    outcome: str | None
    missing_documents: list[str]


@dataclass(frozen=True)
class NewTicket:
    """A ticket just issued: its id and, when the issuing statement told everything its
    answer needs (PostgreSQL), that answer without its estimate, the hall, and the hall's
    event number that holds the ticket (a projection at or after it includes it)."""

    ticket_id: int
    view: TicketView | None = None
    hall: Hall | None = None
    event_seq: int = 0
    joined: estimates.Joined | None = None
    """A walk-in's: what its issue logged, so that a projection one step behind is
    extended with it without reading the log (``estimates.told_at``)."""


def new_ticket_view(
    ticket: Ticket, service: ServiceRef, follow_token: str, printing: PrintState
) -> TicketView:
    """A ticket just made and still waiting, as ``ticket_view`` would read it (without the
    estimate, which ``with_told`` adds): from what its issuing statement told."""
    return TicketView(
        id=ticket.ref,
        hall_id=ticket.hall_id,
        number=ticket.number,
        service=service,
        kind=str(ticket.kind),
        priority=ticket.priority,
        state=str(TicketState.WAITING),
        issued_at=ticket.issued_at,
        people_ahead=None,
        estimate_minutes=None,
        estimate_low=None,
        estimate_high=None,
        estimate_basis=None,
        follow_token=follow_token,
        due_at=ticket.due_at,
        printing=printing,
    )


def with_told(view: TicketView, told: Told | None) -> TicketView:
    """``view`` with what its waiting visitor is told (nothing when ``told`` is None)."""
    if told is None:
        return view
    return replace(
        view,
        people_ahead=told.people_ahead,
        estimate_minutes=told.minutes,
        estimate_low=told.low,
        estimate_high=told.high,
        estimate_basis=told.basis,
    )


# Built once: every clerk action and follow link answers with a ticket view.
_TICKET_VIEW = (
    select(
        TicketRow,
        ServiceRow,
        VisitRow,
        HallRow,
        CounterRow.number,
        BookingRow,
        RatingRow.stars,
    )
    .join(ServiceRow, ServiceRow.id == TicketRow.service_id)
    .join(VisitRow, VisitRow.id == TicketRow.visit_id)
    .join(HallRow, HallRow.id == TicketRow.hall_id)
    .outerjoin(CounterRow, CounterRow.id == TicketRow.counter_id)
    .outerjoin(BookingRow, BookingRow.ticket_id == TicketRow.id)
    .outerjoin(RatingRow, RatingRow.ticket_id == TicketRow.id)
    .where(TicketRow.id == bindparam("ticket"))
    .limit(1)
)


async def ticket_view(uow: UnitOfWork, ticket_id: int) -> TicketView:
    """A ticket with, while it waits, people ahead and the estimated wait: the ticket, its
    matter, visit, hall, counter, booking and rating read in one statement."""
    view = await _ticket_view(uow, ticket_id, settled_only=False)
    assert view is not None
    return view


async def settled_ticket_view(uow: UnitOfWork, ticket_id: int) -> TicketView | None:
    """``ticket_view`` read inside the transaction that changes the ticket, before it
    commits (``Bus.execute_answered``), for a ticket that does not wait: None for a
    waiting one, whose estimate is told from the hall's committed log (read its view
    after the commit)."""
    parts = uow.view_parts.get(ticket_id)
    if parts is not None and parts.row.state == TicketState.WAITING:
        return None  # back in the queue: read after the commit
    view = _view_from_lock(uow, parts) if parts is not None else None
    if view is not None or uow.on_driver:
        return view  # a unit on the driver's connection reads no more: after the commit
    return await _ticket_view(uow, ticket_id, settled_only=True)


def _view_from_lock(uow: UnitOfWork, parts: ViewParts) -> TicketView | None:
    """The view of a ticket a counter command locked, from what it read with the lock
    (``Repository.view_parts``) and the row as the command left it: no statement. None
    where that is not all the view shows (a desk case; a counter not read here). Such a
    ticket was waiting, called or serving when locked: it has no rating."""
    row = parts.row
    counter_number = uow.counter_numbers.get(row.counter_id) if row.counter_id else None
    if row.counter_id is not None and counter_number is None:
        return None
    if _has_case(row, parts.desk):
        return None
    service = ServiceRef(row.service_id, parts.name_zh, parts.name_en)
    return _view(row, service, parts.desk, parts.follow_token, counter_number, parts.booking, None)


def _has_case(row: TicketRow, desk: bool) -> bool:
    """The ticket's view shows a desk case (``_with_case``)."""
    return row.origin_ticket_id is not None or desk or row.outcome in NOT_DONE


async def _ticket_view(uow: UnitOfWork, ticket_id: int, *, settled_only: bool) -> TicketView | None:
    found = (await uow.session.execute(_TICKET_VIEW, {"ticket": ticket_id})).first()
    if found is None:
        raise NotFound(f"no ticket with id {ticket_id}")
    row, service, visit, hall_row, counter_number, booking_row, stars = found
    told = None
    if row.state == TicketState.WAITING:
        if settled_only:
            return None
        told = await estimates.told(uow, hall_row, row.id)
    ref = ServiceRef(service.id, service.name_zh, service.name_en)
    view = _view(row, ref, service.desk, visit.follow_token, counter_number, booking_row, stars)
    if _has_case(row, service.desk):
        view = await _with_case(uow, view, row, hall_row)
    return with_told(view, told)


def _view(
    row: TicketRow,
    service: ServiceRef,
    desk: bool,
    follow_token: str,
    counter_number: int | None,
    booking_row: BookingRow | None,
    stars: int | None,
) -> TicketView:
    return TicketView(
        id=row.id,
        hall_id=row.hall_id,
        number=row.number,
        service=service,
        kind=row.kind,
        priority=row.priority,
        state=row.state,
        issued_at=row.issued_at,
        people_ahead=None,
        estimate_minutes=None,
        estimate_low=None,
        estimate_high=None,
        estimate_basis=None,
        follow_token=follow_token,
        counter_number=counter_number,
        called_at=row.called_at,
        outcome=row.outcome,
        due_at=row.due_at,
        booking=_booking_details(booking_row) if booking_row is not None else None,
        rating=stars if row.state == TicketState.DONE else None,
        missing_documents=list(row.missing_documents or []),
        note=row.note,
        desk=desk,
    )


async def _with_case(
    uow: UnitOfWork, view: TicketView, row: TicketRow, hall: HallRow
) -> TicketView:
    """A not-done or desk ticket's view with where its visit came from and its case."""
    origin = None
    if row.origin_ticket_id is not None:
        found = (
            await uow.session.execute(
                select(TicketRow, ServiceRow)
                .join(ServiceRow, ServiceRow.id == TicketRow.service_id)
                .where(TicketRow.id == row.origin_ticket_id)
            )
        ).first()
        if found is not None:
            t, s = found
            origin = OriginRef(
                t.id, t.number, ServiceRef(s.id, s.name_zh, s.name_en), t.outcome,
                list(t.missing_documents or []),
            )  # fmt: skip
    escalated_to = None
    if row.outcome in NOT_DONE:
        escalated_to = await uow.session.scalar(
            select(TicketRow.id).where(TicketRow.origin_ticket_id == row.id).limit(1)
        )
    case = await desk.visit_case(uow, row.visit_id, ZoneInfo(hall.timezone))
    return replace(view, origin=origin, case=case, escalated_to=escalated_to)


def _booking_details(found: BookingRow) -> BookingDetails:
    return BookingDetails(
        found.code, found.name, mask_phone(found.phone), found.id_tail, found.slot_start,
        found.channel, found.checked_in_at, found.state,
    )  # fmt: skip


async def ticket_by_follow_token(uow: UnitOfWork, token: str) -> TicketView:
    """The visit's current ticket (after a transfer or an escalation, the new one) for its
    follow link, as its visitor may see it."""
    ticket_id, _, _ = await _followed_ticket(uow, token)
    return await _as_visitor_sees(uow, ticket_id)


async def _followed_ticket(uow: UnitOfWork, token: str) -> tuple[int, int, int]:
    """The id and hall of the visit's current ticket (its latest) for its follow link, and
    the hall's event number, in one statement (so as of one moment)."""
    found = (
        await uow.session.execute(
            select(TicketRow.id, TicketRow.hall_id, HallRow.event_seq)
            .join(VisitRow, VisitRow.id == TicketRow.visit_id)
            .join(HallRow, HallRow.id == TicketRow.hall_id)
            .where(VisitRow.follow_token == token)
            .order_by(TicketRow.id.desc())
            .limit(1)
        )
    ).first()
    if found is None:
        raise NotFound("no ticket follows this link; check it was copied whole")
    return found[0], found[1], found[2]


async def _as_visitor_sees(uow: UnitOfWork, ticket_id: int) -> TicketView:
    # The clerk's note is for staff: the visitor is told the outcome and what to bring.
    return replace(await ticket_view(uow, ticket_id), note=None)


@dataclass(frozen=True)
class Followed:
    """A follower's ticket view, with what re-telling its wait needs (``retold``)."""

    view: TicketView
    hall: Hall
    seq: int
    """The hall's event number the view was read at."""


async def followed(uow: UnitOfWork, token: str) -> Followed:
    """``ticket_by_follow_token``, with the ticket's hall and its event number. The number
    is read with which ticket is the visit's current one, before the ticket itself (on
    PostgreSQL each statement reads what is committed when it starts): the view holds at
    least every event up to that number, and any later one — a transfer included — has a
    higher number. Whoever keeps the view until an event about it comes
    (realtime/follows.py, the ticket feed) then misses none."""
    ticket_id, hall_id, seq = await _followed_ticket(uow, token)
    view = await _as_visitor_sees(uow, ticket_id)
    hall_row = await uow.repo.hall_row(hall_id)
    if hall_row is None:
        raise NotFound(f"no hall with id {hall_id}")
    return Followed(view, hall_from_row(hall_row), seq)


async def retold(uow: UnitOfWork, kept: Followed, need: int) -> TicketView | None:
    """A waiting follower's view with its wait told again as of the hall's event ``need``
    (at least), from the hall's shared projection (``estimates.told_at``: one floor read
    per hall state for every follower, none when it is kept). None when the projection
    does not have the ticket waiting any more: read the view again (``followed``)."""
    told = await estimates.told_at(uow, kept.hall, max(need, kept.seq), kept.view.id)
    return with_told(kept.view, told) if told is not None else None


async def current_ticket_id(uow: UnitOfWork, counter_id: int) -> int | None:
    row = await uow.repo.active_ticket_at(counter_id)
    return row.id if row else None


@dataclass(frozen=True)
class WaitingCount:
    service: ServiceRef
    prefix: str
    waiting: int
    longest_wait_minutes: int


@dataclass(frozen=True)
class CounterStatus:
    id: int
    number: int
    name: str
    state: str
    clerk_id: int | None
    ticket_number: str | None
    ticket_state: str | None
    ticket_id: int | None


@dataclass(frozen=True)
class RecentCall:
    number: str
    counter_number: int
    called_at: datetime
    state: str


@dataclass(frozen=True)
class HallSnapshot:
    hall_id: int
    name_zh: str
    name_en: str
    business_day: str
    seq: int
    """The hall's last event number: live feeds continue from here."""
    waiting: list[WaitingCount] = field(default_factory=list)
    counters: list[CounterStatus] = field(default_factory=list)
    recent_calls: list[RecentCall] = field(default_factory=list)
    notice: str = ""


async def hall_snapshot(uow: UnitOfWork, hall_id: int) -> HallSnapshot:
    """Waiting per matter, who each counter serves, and the last calls, for today.

    All of it as of the event number ``seq``: on PostgreSQL the reads share one
    REPEATABLE READ snapshot, so no change can slip in between them.
    """
    if uow.repo.dialect == "postgresql":
        await uow.session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    hall_row = await uow.session.get(HallRow, hall_id)
    if hall_row is None:
        raise NotFound(f"no hall with id {hall_id}")
    hall = hall_from_row(hall_row)
    now = uow.clock.now()
    day = business_day(now, hall.tz)
    services = (
        await uow.session.execute(
            select(ServiceRow).where(ServiceRow.hall_id == hall_id).order_by(ServiceRow.id)
        )
    ).scalars()
    counts = {
        service_id: (count, oldest)
        for service_id, count, oldest in await uow.session.execute(
            select(TicketRow.service_id, func.count(), func.min(TicketRow.queued_at))
            .where(
                TicketRow.hall_id == hall_id,
                TicketRow.business_day == day,
                TicketRow.state == TicketState.WAITING,
            )
            .group_by(TicketRow.service_id)
        )
    }
    waiting = []
    for s in services:
        count, oldest = counts.get(s.id, (0, None))
        longest = 0
        if oldest is not None:
            oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=now.tzinfo)
            longest = max(0, int((now - oldest).total_seconds() // 60))
        waiting.append(
            WaitingCount(ServiceRef(s.id, s.name_zh, s.name_en), s.prefix, count, longest)
        )
    active = {
        t.counter_id: t
        for t in (
            await uow.session.execute(
                select(TicketRow).where(
                    TicketRow.hall_id == hall_id,
                    TicketRow.state.in_([str(s) for s in ACTIVE_STATES]),
                )
            )
        ).scalars()
    }
    counters = [
        CounterStatus(
            c.id,
            c.number,
            c.name,
            c.state,
            c.clerk_id,
            active[c.id].number if c.id in active else None,
            active[c.id].state if c.id in active else None,
            active[c.id].id if c.id in active else None,
        )
        for c in (
            await uow.session.execute(
                select(CounterRow).where(CounterRow.hall_id == hall_id).order_by(CounterRow.number)
            )
        ).scalars()
    ]
    recent = [
        RecentCall(number, counter_number, called_at, state)
        for number, counter_number, called_at, state in await uow.session.execute(
            select(TicketRow.number, CounterRow.number, TicketRow.called_at, TicketRow.state)
            .join(CounterRow, CounterRow.id == TicketRow.counter_id)
            .where(
                TicketRow.hall_id == hall_id,
                TicketRow.business_day == day,
                TicketRow.called_at.is_not(None),
            )
            .order_by(TicketRow.called_at.desc(), TicketRow.id.desc())
            .limit(RECENT_CALLS)
        )
        if called_at is not None
    ]
    return HallSnapshot(
        hall_id=hall.id,
        name_zh=hall.name_zh,
        name_en=hall.name_en,
        business_day=day.isoformat(),
        seq=hall_row.event_seq,
        waiting=waiting,
        counters=counters,
        recent_calls=recent,
        notice=hall_row.notice,
    )


@dataclass(frozen=True)
class PublicHall:
    id: int
    name_zh: str
    name_en: str
    timezone: str
    open_now: bool
    next_opening: datetime | None
    priority_classes: list[str]
    services: list[ServiceOut]
    bookable_service_ids: list[int] = field(default_factory=list)
    """The matters booked online."""
    remote_checkin: bool = False


async def public_hall(uow: UnitOfWork, hall_id: int) -> PublicHall:
    """What a kiosk or a phone shows of a hall: names, open now, priorities, active matters."""
    row = await uow.session.get(HallRow, hall_id)
    if row is None:
        raise NotFound(f"no hall with id {hall_id}")
    hall = hall_from_row(row)
    local = uow.clock.now().astimezone(hall.tz)
    open_now = hall.opening_hours.is_open(local)
    return PublicHall(
        id=hall.id,
        name_zh=hall.name_zh,
        name_en=hall.name_en,
        timezone=hall.timezone,
        open_now=open_now,
        next_opening=None if open_now else hall.opening_hours.next_opening(local),
        priority_classes=[NO_PRIORITY, *sorted(hall.priority_boosts)],
        services=await list_services(uow, hall_id, active_only=True),
        bookable_service_ids=list(
            (
                await uow.session.execute(
                    select(ServiceRow.id).where(
                        ServiceRow.hall_id == hall_id,
                        ServiceRow.active.is_(True),
                        ServiceRow.booking.is_not(None),
                    )
                )
            ).scalars()
        ),
        remote_checkin=row.remote_checkin,
    )


@dataclass(frozen=True)
class HallRef:
    id: int
    name_zh: str
    name_en: str
    timezone: str


async def public_halls(uow: UnitOfWork) -> list[HallRef]:
    """Every hall, for a visitor choosing where to book."""
    rows = await uow.session.execute(
        select(HallRow.id, HallRow.name_zh, HallRow.name_en, HallRow.timezone).order_by(HallRow.id)
    )
    return [HallRef(*row) for row in rows]


async def database_ok(uow: UnitOfWork) -> bool:
    """True when the database answers (for the health check)."""
    await uow.session.execute(text("SELECT 1"))
    return True
