"""Correcting a finished service's outcome, afterwards and on the record.

The clerk who served the visitor, or a manager of the hall, may correct the outcome a
service was finished with (a slip of the key, or what the clerk learned later). Each
correction is kept with who made it, when, why, and the outcome before and after; the
ticket shows the latest. A visit already sent on to the desk keeps an outcome other than
done: its case says how it ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from queue_server.db.tables import (
    CounterRow,
    OutcomeChangeRow,
    ServiceRow,
    TicketRow,
    UserRow,
)
from queue_server.domain.errors import DomainError
from queue_server.domain.events import OutcomeCorrected
from queue_server.domain.model import Outcome, TicketKind, TicketState, check_outcome

from .accounts import Principal, Role
from .desk import hall_today
from .errors import Conflict, Forbidden, NotFound
from .unit_of_work import UnitOfWork


@dataclass(frozen=True)
class OutcomeChangeOut:
    id: int
    ticket_id: int
    changed_at: datetime
    user_id: int | None
    user_name: str | None
    before: dict[str, Any]
    after: dict[str, Any]
    reason: str


def _recorded(row: TicketRow) -> dict[str, Any]:
    return {
        "outcome": row.outcome,
        "missing_documents": list(row.missing_documents or []),
        "note": row.note,
    }


async def correct_outcome(
    uow: UnitOfWork,
    hall_id: int,
    ticket_id: int,
    by: Principal,
    outcome: Outcome,
    missing: tuple[str, ...],
    note: str | None,
    reason: str,
) -> int:
    """Record a corrected outcome for a finished service; the correction's id."""
    row = await uow.repo.ticket_row(ticket_id, lock=True)
    if row is None or row.hall_id != hall_id:
        raise NotFound(f"hall {hall_id} has no ticket with id {ticket_id}")
    if row.state != TicketState.DONE:
        raise DomainError(
            f"ticket {row.number} is {row.state}: only a finished service's outcome can be "
            "corrected"
        )
    if by.role == Role.CLERK and row.clerk_id != by.user_id:
        raise Forbidden(
            f"ticket {row.number} was served by another clerk: they or a manager may correct it"
        )
    if not reason.strip():
        raise DomainError("say why the outcome is corrected (reason)")
    service = await uow.repo.service_row(row.service_id)
    documents = list(service.documents) if service is not None else []
    names = check_outcome(outcome, note, missing, documents)
    if outcome == Outcome.DONE:
        sent_on = await uow.session.scalar(
            select(TicketRow.id).where(
                TicketRow.origin_ticket_id == row.id, TicketRow.kind == TicketKind.ESCALATION
            )
        )
        if sent_on is not None:
            raise Conflict(
                f"ticket {row.number} was sent on to the desk: close its case instead of "
                "marking it done"
            )
    before = _recorded(row)
    row.outcome = str(outcome)
    row.missing_documents = list(names) or None
    row.note = note
    after = _recorded(row)
    if after == before:
        raise DomainError(f"ticket {row.number} has this outcome already; nothing to correct")
    now = uow.clock.now()
    change = OutcomeChangeRow(
        hall_id=hall_id, ticket_id=row.id, changed_at=now, user_id=by.user_id,
        before=before, after=after, reason=reason.strip(),
    )  # fmt: skip
    uow.session.add(change)
    await uow.session.flush()
    assert by.user_id is not None, "staff only"
    uow.collect(
        [
            OutcomeCorrected(
                hall_id, now, row.id, row.number, row.service_id, str(outcome), by.user_id
            )
        ]
    )
    await uow.commit()
    return change.id


async def outcome_changes(uow: UnitOfWork, hall_id: int, ticket_id: int) -> list[OutcomeChangeOut]:
    """A ticket's outcome corrections, oldest first."""
    found = await uow.session.get(TicketRow, ticket_id)
    if found is None or found.hall_id != hall_id:
        raise NotFound(f"hall {hall_id} has no ticket with id {ticket_id}")
    rows = await uow.session.execute(
        select(OutcomeChangeRow, UserRow.display_name)
        .outerjoin(UserRow, UserRow.id == OutcomeChangeRow.user_id)
        .where(OutcomeChangeRow.ticket_id == ticket_id)
        .order_by(OutcomeChangeRow.id)
    )
    return [
        OutcomeChangeOut(
            c.id, c.ticket_id, c.changed_at, c.user_id, name, c.before, c.after, c.reason
        )
        for c, name in rows
    ]


@dataclass(frozen=True)
class FinishedServiceOut:
    """One service finished on a hall day, as a manager reviews it to correct its outcome."""

    ticket_id: int
    number: str
    kind: str
    service_id: int
    service_zh: str
    service_en: str
    documents: list[str]
    """The matter's documents: the ones a correction may name as missing."""
    counter_number: int | None
    clerk_id: int | None
    clerk_name: str | None
    finished_at: datetime | None
    outcome: str | None
    missing_documents: list[str]
    note: str | None
    corrections: int
    sent_to_desk: bool


FINISHED_LIMIT = 500


async def finished_services(
    uow: UnitOfWork,
    hall_id: int,
    day: date | None,
    outcome: Outcome | None = None,
    number: str | None = None,
) -> list[FinishedServiceOut]:
    """The services finished on a hall day (default today), newest first, at most 500;
    only those with ``outcome``, or whose number contains ``number``."""
    today = await hall_today(uow, hall_id)
    if day is None:
        day = today
    changes = (
        select(func.count(OutcomeChangeRow.id))
        .where(OutcomeChangeRow.ticket_id == TicketRow.id)
        .scalar_subquery()
    )
    escalation = aliased(TicketRow)
    sent_on = (
        select(escalation.id)
        .where(
            escalation.origin_ticket_id == TicketRow.id,
            escalation.kind == TicketKind.ESCALATION,
        )
        .exists()
    )
    query = (
        select(TicketRow, ServiceRow, CounterRow.number, UserRow.display_name, changes, sent_on)
        .join(ServiceRow, ServiceRow.id == TicketRow.service_id)
        .outerjoin(CounterRow, CounterRow.id == TicketRow.counter_id)
        .outerjoin(UserRow, UserRow.id == TicketRow.clerk_id)
        .where(
            TicketRow.hall_id == hall_id,
            TicketRow.business_day == day,
            TicketRow.state == TicketState.DONE,
        )
        .order_by(TicketRow.finished_at.desc(), TicketRow.id.desc())
        .limit(FINISHED_LIMIT)
    )
    if outcome is not None:
        query = query.where(TicketRow.outcome == str(outcome))
    if number:
        query = query.where(TicketRow.number.contains(number.strip().upper(), autoescape=True))
    found = []
    for t, s, counter, clerk, n, sent in await uow.session.execute(query):
        out = FinishedServiceOut(
            t.id, t.number, t.kind, s.id, s.name_zh, s.name_en, list(s.documents or []),
            counter, t.clerk_id, clerk, t.finished_at, t.outcome,
            list(t.missing_documents or []), t.note, n, bool(sent),
        )  # fmt: skip
        found.append(out)
    return found
