"""What a kiosk is told about its print jobs: the state when it issues (no waiting), and
its recent jobs for its live feed (``/ws/halls/{hall}/kiosk``, docs/realtime.md)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import select

from queue_server.db.tables import DeviceRow, PrintJobRow, TicketRow

from . import estimates, printing
from .unit_of_work import UnitOfWork
from .views import NewTicket, PrintState, TicketView, ticket_view, with_told

# A kiosk's feed starts with its jobs of this long ago: older unfinished ones have been
# dropped (printing.STALE_AFTER), and no visitor waits at the screen that long.
RECENT = printing.STALE_AFTER
RECENT_JOBS = 20
"""At most this many of them, newest first."""


@dataclass(frozen=True)
class KioskJob:
    """A print job as the kiosk's feed tells it."""

    job_id: int
    ticket_id: int
    printer_id: int
    number: str
    state: str
    """pending | sent | printed | failed"""
    detail: str | None
    created_at: datetime
    done_at: datetime | None


@dataclass(frozen=True)
class KioskPrinter:
    printer_id: int
    problem: str | None


@dataclass(frozen=True)
class KioskPrints:
    """The kiosk's printers and their recent jobs: what its feed's snapshot carries."""

    printers: list[KioskPrinter]
    jobs: list[KioskJob]


async def print_state(uow: UnitOfWork, ticket_id: int) -> PrintState:
    """The ticket's print job as it stands now, read once: pending (with why, when no agent
    is there to print it), sent, printed or failed; no_printer without a job."""
    job_id = await printing.job_for_ticket(uow, ticket_id)
    if job_id is None:
        return PrintState("no_printer")
    return await printing.outcome(uow, job_id)


async def kiosk_printers(uow: UnitOfWork, kiosk_id: int) -> list[DeviceRow]:
    """Every printer registered for the kiosk (revoked ones too: their last jobs still
    end), by id."""
    rows = await uow.session.execute(
        select(DeviceRow)
        .where(DeviceRow.kiosk_id == kiosk_id, DeviceRow.kind == "printer")
        .order_by(DeviceRow.id)
    )
    return list(rows.scalars())


async def printer_ids(uow: UnitOfWork, kiosk_id: int) -> set[int]:
    return {printer.id for printer in await kiosk_printers(uow, kiosk_id)}


async def recent_prints(uow: UnitOfWork, kiosk_id: int) -> KioskPrints:
    """The kiosk's printers (with what is wrong with each) and their jobs of the last
    ``RECENT``, newest first."""
    now = uow.clock.now()
    printers = await kiosk_printers(uow, kiosk_id)
    problems = {p.id: printing.problem_of(p, now) for p in printers}
    if not printers:
        return KioskPrints([], [])
    rows = await uow.session.execute(
        select(PrintJobRow, TicketRow.number)
        .join(TicketRow, TicketRow.id == PrintJobRow.ticket_id)
        .where(
            PrintJobRow.printer_id.in_([p.id for p in printers]),
            PrintJobRow.created_at >= now - RECENT,
        )
        .order_by(PrintJobRow.id.desc())
        .limit(RECENT_JOBS)
    )
    jobs = [_kiosk_job(job, number, problems[job.printer_id]) for job, number in rows]
    live = [KioskPrinter(p.id, problems[p.id]) for p in printers if p.revoked_at is None]
    return KioskPrints(live, jobs)


async def kiosk_job(uow: UnitOfWork, job_id: int) -> KioskJob | None:
    """One job as the feed tells it (None if it is gone)."""
    row = (
        await uow.session.execute(
            select(PrintJobRow, TicketRow.number)
            .join(TicketRow, TicketRow.id == PrintJobRow.ticket_id)
            .where(PrintJobRow.id == job_id)
        )
    ).first()
    if row is None:
        return None
    job, number = row
    printer = await uow.session.get(DeviceRow, job.printer_id)
    problem = printing.problem_of(printer, uow.clock.now()) if printer else "printer removed"
    return _kiosk_job(job, number, problem)


def _kiosk_job(job: PrintJobRow, number: str, printer_problem: str | None) -> KioskJob:
    detail = job.detail
    if job.state in (printing.PENDING, printing.SENT) and printer_problem in printing.AGENT_AWAY:
        detail = printer_problem  # as printing.outcome says it
    return KioskJob(
        job.id, job.ticket_id, job.printer_id, number, job.state, detail, job.created_at,
        job.done_at,
    )  # fmt: skip


async def new_ticket_answer(uow: UnitOfWork, new: NewTicket) -> TicketView:
    """The answer for a ticket just issued: what the issuing statement told with the
    estimate added (``uow`` reads only if no projection holds the ticket yet), or, where
    it told nothing (SQLite, a repeated Idempotency-Key), the ticket read whole."""
    if new.view is None or new.hall is None:
        return await answer_view(uow, new.ticket_id)
    told = await estimates.told_at(uow, new.hall, new.event_seq, new.ticket_id, new.joined)
    return with_told(new.view, told)


async def answer_view(uow: UnitOfWork, ticket_id: int) -> TicketView:
    """A kiosk's new ticket with its print job as it stands, in one read transaction."""
    view = await ticket_view(uow, ticket_id)
    return replace(view, printing=await print_state(uow, ticket_id))
