"""The "can't get it done" desk (办不成事反映窗口): cases for visitors who were turned away.

A visit whose matter was not done can be sent on to the hall's desk (``queue.escalate_row``:
it keeps its number and queues there as a continuing visit). At the desk a case is opened
for it: an owner, a summary, the date by which the visitor is promised an answer, notes;
it moves ``open → answered → closed`` with a resolution (resolved or not). A case can also
be opened for a not-done ticket without the visitor queuing again (a visitor who left, or
one who phoned). The reminder job flags open cases past their promised date; managers see
them highlighted, and the visitor follows their case with the ticket's link.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, select
from sqlalchemy.exc import IntegrityError

from queue_server.db.tables import (
    CaseNoteRow,
    CounterRow,
    DeskCaseRow,
    HallRow,
    ServiceRow,
    TicketRow,
    UserRow,
    VisitRow,
)
from queue_server.domain.errors import DomainError
from queue_server.domain.events import CaseChanged
from queue_server.domain.model import NOT_DONE, TicketKind

from .accounts import Principal
from .errors import Conflict, Invalid, NotFound
from .unit_of_work import UnitOfWork

PROMISE_AT_MOST_DAYS = 90
TEXT_MAX = 2000
LIST_AT_MOST = 500


class CaseStatus(StrEnum):
    OPEN = "open"
    ANSWERED = "answered"
    CLOSED = "closed"


class Resolution(StrEnum):
    RESOLVED = "resolved"
    """The visitor's matter got done (or they got what they needed)."""
    UNRESOLVED = "unresolved"
    """It could not be done; the answer says why and what the visitor can do."""


@dataclass(frozen=True)
class CaseNoteOut:
    id: int
    at: datetime
    user_id: int | None
    user_name: str | None
    text: str


@dataclass(frozen=True)
class CaseTicket:
    """A ticket of the case: the desk's, or the one that was not done."""

    id: int
    number: str
    service_id: int
    service_zh: str
    service_en: str
    outcome: str | None
    missing_documents: list[str]
    note: str | None
    counter_number: int | None
    clerk_name: str | None
    finished_at: datetime | None


@dataclass(frozen=True)
class CaseOut:
    id: int
    hall_id: int
    status: str
    summary: str
    service_id: int
    """The matter the visitor could not get done."""
    service_zh: str
    service_en: str
    owner_id: int | None
    owner_name: str | None
    opened_by: int | None
    opened_at: datetime
    promised_on: date
    overdue: bool
    """Still open after its promised date (hall time)."""
    overdue_since: datetime | None
    """When the reminder job flagged it."""
    answer: str | None
    answered_at: datetime | None
    resolution: str | None
    closed_at: datetime | None
    ticket: CaseTicket
    origin: CaseTicket | None
    follow_token: str
    notes: list[CaseNoteOut] = field(default_factory=list)


@dataclass(frozen=True)
class CaseBrief:
    """What the visitor sees of their case on the follow page (no staff notes or names)."""

    id: int
    status: str
    promised_on: date
    answer: str | None
    resolution: str | None
    overdue: bool


def _text(field_name: str, text: str | None, *, required: bool = True) -> str:
    cleaned = (text or "").strip()
    if required and not cleaned:
        raise Invalid(field_name, "must not be empty")
    if len(cleaned) > TEXT_MAX:
        raise Invalid(field_name, f"keep it to {TEXT_MAX} characters")
    return cleaned


async def hall_today(uow: UnitOfWork, hall_id: int) -> date:
    hall = await uow.session.get(HallRow, hall_id)
    if hall is None:
        raise NotFound(f"no hall with id {hall_id}")
    return uow.clock.now().astimezone(ZoneInfo(hall.timezone)).date()


def _check_promise(promised_on: date, today: date) -> date:
    if promised_on < today:
        raise Invalid("promised_on", f"the promised answer date cannot be before today ({today})")
    if promised_on > today + timedelta(days=PROMISE_AT_MOST_DAYS):
        raise Invalid(
            "promised_on", f"promise an answer within {PROMISE_AT_MOST_DAYS} days of today"
        )
    return promised_on


async def _owner(uow: UnitOfWork, hall_id: int, owner_id: int) -> int:
    """A case is owned by active staff of its hall, or by an administrator (of all halls)."""
    user = await uow.session.get(UserRow, owner_id)
    if user is None or not user.active or user.hall_id not in (hall_id, None):
        raise Invalid("owner_id", f"user {owner_id} is no active staff member of this hall")
    return owner_id


async def _latest_ticket(uow: UnitOfWork, visit_id: int) -> int:
    found = await uow.session.scalar(
        select(func.max(TicketRow.id)).where(TicketRow.visit_id == visit_id)
    )
    assert found is not None, "a case's visit has tickets"
    return int(found)


async def _changed(uow: UnitOfWork, case: DeskCaseRow, change: str) -> None:
    latest = await _latest_ticket(uow, case.visit_id)
    uow.collect([CaseChanged(case.hall_id, uow.clock.now(), case.id, latest, case.status, change)])


async def open_case(
    uow: UnitOfWork,
    hall_id: int,
    ticket_id: int,
    by: Principal,
    summary: str,
    promised_on: date,
    owner_id: int | None = None,
) -> int:
    """Open a case for the visit of ``ticket_id`` (a ticket of the hall's desk, or one
    finished not done); the case's id."""
    ticket = await uow.repo.ticket_row(ticket_id, lock=True)
    if ticket is None or ticket.hall_id != hall_id:
        raise NotFound(f"hall {hall_id} has no ticket with id {ticket_id}")
    service = await uow.repo.service_row(ticket.service_id)
    assert service is not None
    not_done = ticket.outcome in NOT_DONE
    if not service.desk and not not_done:
        raise DomainError(
            f"ticket {ticket.number} is neither a desk ticket nor a service finished not done: "
            "a case is for a visitor who could not get their matter done"
        )
    # One open case per visit: the visit's row is the lock two desks opening one meet at.
    await uow.session.execute(
        select(VisitRow.id).where(VisitRow.id == ticket.visit_id).with_for_update()
    )
    open_one = await uow.session.scalar(
        select(DeskCaseRow.id).where(
            DeskCaseRow.visit_id == ticket.visit_id, DeskCaseRow.status != CaseStatus.CLOSED
        )
    )
    if open_one is not None:
        raise Conflict(f"this visit has case {open_one} open already", case_id=open_one)
    if ticket.kind == TicketKind.ESCALATION and ticket.origin_ticket_id is not None:
        origin_id: int | None = ticket.origin_ticket_id
    else:
        origin_id = ticket.id if not_done and not service.desk else None
    matter = ticket.service_id
    if origin_id is not None:
        origin = await uow.session.get(TicketRow, origin_id)
        matter = origin.service_id if origin is not None else matter
    today = await hall_today(uow, hall_id)
    assert by.user_id is not None, "staff only"
    row = DeskCaseRow(
        hall_id=hall_id, visit_id=ticket.visit_id, ticket_id=ticket.id,
        origin_ticket_id=origin_id, service_id=matter, status=str(CaseStatus.OPEN),
        summary=_text("summary", summary),
        owner_id=await _owner(uow, hall_id, owner_id if owner_id is not None else by.user_id),
        opened_by=by.user_id, opened_at=uow.clock.now(),
        promised_on=_check_promise(promised_on, today),
    )  # fmt: skip
    uow.session.add(row)
    try:
        await uow.session.flush()
    except IntegrityError:  # the unique ticket: a case opened for it a moment ago
        raise Conflict(f"ticket {ticket_id} has a case already") from None
    await _changed(uow, row, "opened")
    await uow.commit()
    return row.id


async def _case_row(uow: UnitOfWork, hall_id: int, case_id: int) -> DeskCaseRow:
    row = await uow.session.get(DeskCaseRow, case_id, with_for_update=True)
    if row is None or row.hall_id != hall_id:
        raise NotFound(f"hall {hall_id} has no case with id {case_id}")
    return row


async def add_note(uow: UnitOfWork, hall_id: int, case_id: int, by: Principal, text: str) -> int:
    row = await _case_row(uow, hall_id, case_id)
    note = CaseNoteRow(
        case_id=row.id, at=uow.clock.now(), user_id=by.user_id, text=_text("text", text)
    )
    uow.session.add(note)
    await uow.session.flush()
    await _changed(uow, row, "noted")
    await uow.commit()
    return note.id


async def update_case(
    uow: UnitOfWork,
    hall_id: int,
    case_id: int,
    owner_id: int | None = None,
    promised_on: date | None = None,
) -> None:
    """Hand the case to another owner, or move its promised date (a case not closed)."""
    row = await _case_row(uow, hall_id, case_id)
    if row.status == CaseStatus.CLOSED:
        raise DomainError(f"case {case_id} is closed")
    if owner_id is not None:
        row.owner_id = await _owner(uow, hall_id, owner_id)
    if promised_on is not None:
        row.promised_on = _check_promise(promised_on, await hall_today(uow, hall_id))
        row.overdue_since = None
    await _changed(uow, row, "updated")
    await uow.commit()


async def answer_case(uow: UnitOfWork, hall_id: int, case_id: int, answer: str) -> None:
    """Record the answer given to the visitor: ``open → answered``."""
    row = await _case_row(uow, hall_id, case_id)
    if row.status != CaseStatus.OPEN:
        raise DomainError(f"case {case_id} is {row.status}: only an open case is answered")
    row.answer = _text("answer", answer)
    row.answered_at = uow.clock.now()
    row.status = str(CaseStatus.ANSWERED)
    await _changed(uow, row, "answered")
    await uow.commit()


async def close_case(
    uow: UnitOfWork, hall_id: int, case_id: int, resolution: Resolution, answer: str | None
) -> None:
    """Close the case with its resolution; a case closed unanswered needs the answer now."""
    row = await _case_row(uow, hall_id, case_id)
    if row.status == CaseStatus.CLOSED:
        raise DomainError(f"case {case_id} is closed already")
    now = uow.clock.now()
    given = _text("answer", answer, required=False)
    if given:
        row.answer = given
        row.answered_at = row.answered_at or now
    elif not row.answer:
        raise Invalid("answer", "say what the visitor was told: the case has no answer yet")
    row.resolution = str(resolution)
    row.status = str(CaseStatus.CLOSED)
    row.closed_at = now
    await _changed(uow, row, "closed")
    await uow.commit()


async def flag_overdue(uow: UnitOfWork) -> int:
    """The reminder job: flag open cases past their promised date (once each); how many."""
    rows = await uow.session.execute(
        select(DeskCaseRow, HallRow.timezone)
        .join(HallRow, HallRow.id == DeskCaseRow.hall_id)
        .where(DeskCaseRow.status == CaseStatus.OPEN, DeskCaseRow.overdue_since.is_(None))
        .with_for_update(of=DeskCaseRow, skip_locked=True)
    )
    now = uow.clock.now()
    flagged = 0
    for found, timezone in rows:
        if found.promised_on < now.astimezone(ZoneInfo(timezone)).date():
            found.overdue_since = now
            await _changed(uow, found, "overdue")
            flagged += 1
    await uow.commit()
    return flagged


def _case_ticket(
    row: TicketRow, service: ServiceRow, counter: int | None, clerk: str | None
) -> CaseTicket:
    return CaseTicket(
        row.id, row.number, service.id, service.name_zh, service.name_en, row.outcome,
        list(row.missing_documents or []), row.note, counter, clerk, row.finished_at,
    )  # fmt: skip


async def _ticket_part(uow: UnitOfWork, ticket_id: int | None) -> CaseTicket | None:
    if ticket_id is None:
        return None
    found = (
        await uow.session.execute(
            select(TicketRow, ServiceRow, CounterRow.number, UserRow.display_name)
            .join(ServiceRow, ServiceRow.id == TicketRow.service_id)
            .outerjoin(CounterRow, CounterRow.id == TicketRow.counter_id)
            .outerjoin(UserRow, UserRow.id == TicketRow.clerk_id)
            .where(TicketRow.id == ticket_id)
        )
    ).first()
    return _case_ticket(*found) if found is not None else None


async def _case_out(uow: UnitOfWork, row: DeskCaseRow, today: date, *, notes: bool) -> CaseOut:
    service = await uow.session.get(ServiceRow, row.service_id)
    owner = await uow.session.get(UserRow, row.owner_id) if row.owner_id else None
    visit = await uow.session.get(VisitRow, row.visit_id)
    ticket = await _ticket_part(uow, row.ticket_id)
    assert service is not None and visit is not None and ticket is not None
    listed = []
    if notes:
        found = await uow.session.execute(
            select(CaseNoteRow, UserRow.display_name)
            .outerjoin(UserRow, UserRow.id == CaseNoteRow.user_id)
            .where(CaseNoteRow.case_id == row.id)
            .order_by(CaseNoteRow.id)
        )
        listed = [CaseNoteOut(n.id, n.at, n.user_id, name, n.text) for n, name in found]
    return CaseOut(
        id=row.id, hall_id=row.hall_id, status=row.status, summary=row.summary,
        service_id=service.id, service_zh=service.name_zh, service_en=service.name_en,
        owner_id=row.owner_id, owner_name=owner.display_name if owner else None,
        opened_by=row.opened_by, opened_at=row.opened_at, promised_on=row.promised_on,
        overdue=is_overdue(row.status, row.promised_on, today),
        overdue_since=row.overdue_since, answer=row.answer, answered_at=row.answered_at,
        resolution=row.resolution, closed_at=row.closed_at, ticket=ticket,
        origin=await _ticket_part(uow, row.origin_ticket_id), follow_token=visit.follow_token,
        notes=listed,
    )  # fmt: skip


def is_overdue(status: str, promised_on: date, today: date) -> bool:
    return status == CaseStatus.OPEN and promised_on < today


async def get_case(uow: UnitOfWork, hall_id: int, case_id: int) -> CaseOut:
    row = await uow.session.get(DeskCaseRow, case_id)
    if row is None or row.hall_id != hall_id:
        raise NotFound(f"hall {hall_id} has no case with id {case_id}")
    return await _case_out(uow, row, await hall_today(uow, hall_id), notes=True)


async def list_cases(
    uow: UnitOfWork, hall_id: int, status: CaseStatus | None = None, overdue: bool = False
) -> list[CaseOut]:
    """The hall's cases: overdue first, then by promised date, closed ones last (newest
    first); at most ``LIST_AT_MOST``, chosen in that order."""
    today = await hall_today(uow, hall_id)
    stmt = select(DeskCaseRow).where(DeskCaseRow.hall_id == hall_id)
    if overdue:
        stmt = stmt.where(DeskCaseRow.status == CaseStatus.OPEN, DeskCaseRow.promised_on < today)
    elif status is not None:
        stmt = stmt.where(DeskCaseRow.status == status)
    late = and_(DeskCaseRow.status == CaseStatus.OPEN, DeskCaseRow.promised_on < today)
    rows = (
        await uow.session.execute(
            stmt.order_by(
                case((late, 0), else_=1),
                case((DeskCaseRow.status == CaseStatus.CLOSED, 1), else_=0),
                case((DeskCaseRow.status != CaseStatus.CLOSED, DeskCaseRow.promised_on)),
                DeskCaseRow.id.desc(),
            ).limit(LIST_AT_MOST)
        )
    ).scalars()
    return [await _case_out(uow, r, today, notes=False) for r in rows]


async def visit_case(uow: UnitOfWork, visit_id: int, tz: ZoneInfo) -> CaseBrief | None:
    """The visit's latest case, as its visitor may see it."""
    row = await uow.session.scalar(
        select(DeskCaseRow)
        .where(DeskCaseRow.visit_id == visit_id)
        .order_by(DeskCaseRow.id.desc())
        .limit(1)
    )
    if row is None:
        return None
    today = uow.clock.now().astimezone(tz).date()
    shown = row.answer if row.status != CaseStatus.OPEN else None
    return CaseBrief(
        row.id, row.status, row.promised_on, shown, row.resolution,
        is_overdue(row.status, row.promised_on, today),
    )  # fmt: skip
