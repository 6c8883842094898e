"""Print jobs: made with the ticket, sent to the kiosk's print agent, acknowledged once.

The ticket exists whatever the printer does; a job that fails leaves an alert and the
kiosk shows the number and QR on screen instead. Staff can reprint (a new job).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import select

from queue_server.db.repository import AgentSeen, HallFields
from queue_server.db.tables import DeviceRow, HallRow, PrintJobRow, TicketRow
from queue_server.domain import events as ev
from queue_server.domain.model import TicketState

from . import estimates
from .errors import Invalid, NotFound
from .presence import SCREENS, screen_problem
from .unit_of_work import UnitOfWork
from .views import PrintState, TicketView, ticket_view

PENDING, SENT, PRINTED, FAILED = "pending", "sent", "printed", "failed"
# An agent that has not reported for this long is treated as gone.
AGENT_SILENT_AFTER = timedelta(seconds=45)
AGENT_AWAY = ("print agent offline", "print agent not reporting", "printer removed")
"""Problems that mean nobody is there to print a pending job (the kiosk says so at once)."""
SCREEN_SILENT_AFTER = timedelta(seconds=120)
# A job sent but not acknowledged for this long is sent again (its connection died).
RESEND_AFTER = timedelta(seconds=60)
# A job not printed within this time is dropped: the kiosk showed the ticket on screen.
STALE_AFTER = timedelta(minutes=10)


def ticket_payload(view: TicketView, hall: HallRow, follow_url: str) -> dict[str, object]:
    """The structured ticket a print agent lays out (printer.layout.TicketPrint)."""
    payload = _payload(
        hall, view.service.name_zh, view.service.name_en, kind=view.kind,
        priority=view.priority, issued_at=view.issued_at, due_at=view.due_at,
        follow_url=follow_url,
    )  # fmt: skip
    payload.update(
        number=view.number,
        people_ahead=view.people_ahead,
        estimate_minutes=view.estimate_minutes,
        estimate_low=view.estimate_low,
        estimate_high=view.estimate_high,
    )
    return payload


class PrintedMatter(Protocol):
    """What a ticket prints of its matter."""

    @property
    def name_zh(self) -> str: ...
    @property
    def name_en(self) -> str: ...


def new_ticket_payload(
    hall: HallFields,
    service: PrintedMatter,
    *,
    kind: str,
    priority: str,
    issued_at: datetime,
    due_at: datetime | None,
    follow_url: str,
) -> dict[str, object]:
    """A new ticket's print payload before the database numbers it (the number is filled
    in by the statement that does, ``Repository.enqueue``); the wait is added when the job
    is sent to the printer (``jobs_to_send``), as it is then."""
    return _payload(
        hall, service.name_zh, service.name_en, kind=kind, priority=priority,
        issued_at=issued_at, due_at=due_at, follow_url=follow_url,
    )  # fmt: skip


def _payload(
    hall: HallFields,
    matter_zh: str,
    matter_en: str,
    *,
    kind: str,
    priority: str,
    issued_at: datetime,
    due_at: datetime | None,
    follow_url: str,
) -> dict[str, object]:
    tz = ZoneInfo(hall.timezone)
    return {
        "hall_zh": hall.name_zh,
        "hall_en": hall.name_en,
        "matter_zh": matter_zh,
        "matter_en": matter_en,
        "number": "",
        "issued_at": issued_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
        "follow_url": follow_url,
        "kind": kind,
        "priority": priority,
        "people_ahead": None,
        "estimate_minutes": None,
        "estimate_low": None,
        "estimate_high": None,
        # A checked-in booking's slot, on the hall's clock.
        "appointment_at": due_at.astimezone(tz).strftime("%H:%M") if due_at else None,
        "notice": hall.notice,
    }


async def printer_for_kiosk(uow: UnitOfWork, kiosk_id: int) -> DeviceRow | None:
    return await uow.session.scalar(
        select(DeviceRow)
        .where(
            DeviceRow.kiosk_id == kiosk_id,
            DeviceRow.kind == "printer",
            DeviceRow.revoked_at.is_(None),
        )
        .order_by(DeviceRow.id)
        .limit(1)
    )


async def queue_job(uow: UnitOfWork, ticket_id: int, printer: DeviceRow, follow_base: str) -> int:
    """Add a pending job for ``ticket_id`` on ``printer`` to this transaction; its id."""
    view = await ticket_view(uow, ticket_id)
    hall = await uow.session.get(HallRow, view.hall_id)
    assert hall is not None
    job = PrintJobRow(
        hall_id=view.hall_id,
        ticket_id=ticket_id,
        printer_id=printer.id,
        payload=ticket_payload(view, hall, f"{follow_base}/t/{view.follow_token}"),
        state=PENDING,
        created_at=uow.clock.now(),
    )
    uow.session.add(job)
    await uow.session.flush()
    uow.collect([ev.PrintJobQueued(view.hall_id, uow.clock.now(), job.id, printer.id, ticket_id)])
    return job.id


async def reprint(
    uow: UnitOfWork, hall_id: int, ticket_id: int, printer_id: int | None, follow_base: str
) -> int:
    """A new job for a ticket (the old one's paper ran out, or the visitor lost it)."""
    ticket = await uow.session.get(TicketRow, ticket_id)
    if ticket is None or ticket.hall_id != hall_id:
        raise NotFound(f"hall {hall_id} has no ticket with id {ticket_id}")
    printer: DeviceRow | None
    if printer_id is not None:
        printer = await uow.session.get(DeviceRow, printer_id)
        if (
            printer is None
            or printer.hall_id != hall_id
            or printer.kind != "printer"
            or printer.revoked_at
        ):
            raise Invalid(
                "printer_id", f"hall {hall_id} has no active printer with id {printer_id}"
            )
    else:
        kiosk = ticket.issued_by_device_id
        printer = await printer_for_kiosk(uow, kiosk) if kiosk else None
        if printer is None:
            raise Invalid(
                "printer_id",
                "this ticket was not issued at a kiosk with a printer; name the printer",
            )
    job_id = await queue_job(uow, ticket_id, printer, follow_base)
    await uow.commit()
    return job_id


async def job_for_ticket(uow: UnitOfWork, ticket_id: int) -> int | None:
    """The id of the ticket's latest print job, if it has one."""
    return await uow.session.scalar(
        select(PrintJobRow.id)
        .where(PrintJobRow.ticket_id == ticket_id)
        .order_by(PrintJobRow.id.desc())
        .limit(1)
    )


async def outcome(uow: UnitOfWork, job_id: int) -> PrintState:
    """The job's state; a job still waiting for a printer whose agent is away says so."""
    job = await uow.session.get(PrintJobRow, job_id)
    if job is None:
        raise NotFound(f"no print job with id {job_id}")
    detail = job.detail
    if job.state in (PENDING, SENT):
        printer = await uow.session.get(DeviceRow, job.printer_id)
        problem = problem_of(printer, uow.clock.now()) if printer else "printer removed"
        if problem in AGENT_AWAY:
            detail = problem
    return PrintState(job.state, job.id, detail)


class Runs(Protocol):
    """What runs a read in a transaction of its own (the ``Bus``; named by its shape, as
    the bus imports the handlers, which import this module)."""

    def run(self, work: Callable[..., Awaitable[Any]], *args: Any) -> Awaitable[Any]: ...


async def wait_for_print(bus: Runs, job_id: int, seconds: float) -> PrintState:
    """The job's state once printed or failed, or after ``seconds`` (pending or sent);
    at once when no agent is there to print it."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        state: PrintState = await bus.run(outcome, job_id)
        if (
            state.state in (PRINTED, FAILED)
            or state.detail is not None
            or asyncio.get_running_loop().time() >= deadline
        ):
            return state
        await asyncio.sleep(0.05)


async def jobs_to_send(
    uow: UnitOfWork, printer_id: int, *, resend: bool
) -> list[tuple[int, dict[str, object]]]:
    """The printer's new jobs, marked sent, oldest first. With ``resend`` (a reconnect),
    also those sent but never acknowledged; without it, those unacknowledged for longer
    than ``RESEND_AFTER`` (sent into a connection that had died).

    Jobs older than ``STALE_AFTER`` are not printed any more: their kiosk showed the
    ticket on screen long ago, and a burst of old tickets would only confuse the hall.
    """
    now = uow.clock.now()
    await _expire_stale(uow, printer_id, now)
    unanswered = PrintJobRow.state == SENT
    if not resend:
        unanswered = unanswered & (PrintJobRow.sent_at < now - RESEND_AFTER)
    stmt = select(PrintJobRow).where(
        PrintJobRow.printer_id == printer_id, (PrintJobRow.state == PENDING) | unanswered
    )
    jobs = (
        (await uow.session.execute(stmt.order_by(PrintJobRow.id).with_for_update())).scalars().all()
    )
    for job in jobs:
        job.state, job.sent_at = SENT, now
    sent = [(job.id, await _with_wait(uow, job)) for job in jobs]
    await uow.commit()
    return sent


async def _with_wait(uow: UnitOfWork, job: PrintJobRow) -> dict[str, object]:
    """The job's payload with the wait as it is now, for a ticket still waiting whose job
    was made without it (a new ticket's: its number is known only to that statement)."""
    payload = dict(job.payload)
    if payload.get("people_ahead") is not None or payload.get("estimate_high") is not None:
        return payload
    ticket = await uow.session.get(TicketRow, job.ticket_id)
    hall = await uow.session.get(HallRow, job.hall_id)
    if ticket is None or hall is None or ticket.state != TicketState.WAITING:
        return payload
    told = await estimates.told(uow, hall, ticket.id)
    if told is not None:
        payload.update(
            people_ahead=told.people_ahead,
            estimate_minutes=told.minutes,
            estimate_low=told.low,
            estimate_high=told.high,
        )
    return payload


async def _expire_stale(uow: UnitOfWork, printer_id: int, now: datetime) -> None:
    stale = (
        await uow.session.execute(
            select(PrintJobRow)
            .where(
                PrintJobRow.printer_id == printer_id,
                PrintJobRow.state.in_([PENDING, SENT]),
                PrintJobRow.created_at < now - STALE_AFTER,
            )
            .with_for_update()
        )
    ).scalars()
    for job in stale:
        job.state, job.detail, job.done_at = FAILED, "expired: not printed in time", now
        uow.collect(
            [ev.PrintJobFailed(job.hall_id, now, job.id, printer_id, job.ticket_id, job.detail)]
        )


async def acknowledge(
    uow: UnitOfWork, printer_id: int, job_id: int, state: str, detail: str | None
) -> None:
    """Record the agent's answer; a second answer for a finished job changes nothing."""
    job = await uow.session.get(PrintJobRow, job_id, with_for_update=True)
    if job is None or job.printer_id != printer_id:
        raise NotFound(f"this printer has no job {job_id}")
    if job.state in (PRINTED, FAILED) or state not in (PRINTED, FAILED):
        return
    now = uow.clock.now()
    job.state, job.detail, job.done_at = state, (detail or None), now
    if state == PRINTED:
        uow.collect([ev.PrintJobPrinted(job.hall_id, now, job.id, printer_id, job.ticket_id)])
    else:
        uow.collect(
            [
                ev.PrintJobFailed(
                    job.hall_id, now, job.id, printer_id, job.ticket_id, detail or "failed"
                )
            ]
        )
    await uow.commit()


async def report_status(
    uow: UnitOfWork,
    printer_id: int,
    connected: bool,
    status: dict[str, object] | None,
    connection: str,
) -> None:
    """Store what the agent reported (or that it left); an event when the problem changes.

    ``connection`` names the websocket: when an agent reconnects before the server noticed
    its old connection die, the old one's goodbye must not mark the new one offline.
    """
    device = await uow.session.get(DeviceRow, printer_id, with_for_update=True)
    if device is None:
        raise NotFound(f"no device {printer_id}")
    current = (device.status or {}).get("connection")
    if not connected and current not in (None, connection):
        return
    before = problem_of(device, uow.clock.now())
    if connected:
        device.status = {**(device.status or {}), **(status or {}), "connection": connection}
    device.connected = connected
    device.last_seen_at = uow.clock.now()
    after = problem_of(device, uow.clock.now())
    if after != before:
        uow.collect(
            [ev.PrinterStatusChanged(device.hall_id, uow.clock.now(), device.id, connected, after)]
        )
    await uow.commit()


def problem_of(device: DeviceRow, now: datetime) -> str | None:
    """What is wrong with a print agent, in words, or None."""
    reported = (device.status or {}).get("problem")
    return agent_problem(AgentSeen(device.connected, device.last_seen_at, reported), now)


def agent_problem(seen: AgentSeen, now: datetime) -> str | None:
    """What is wrong with the print agent seen so, in words, or None."""
    if not seen.connected:
        return "print agent offline"
    if seen.last_seen_at is None or now - seen.last_seen_at > AGENT_SILENT_AFTER:
        return "print agent not reporting"
    return str(seen.problem) if seen.problem else None


def new_job_state(job_id: int | None, printer: AgentSeen | None, now: datetime) -> PrintState:
    """A job just queued (or none: no printer), told as ``outcome`` tells it, from what the
    queuing statement saw of its printer."""
    if job_id is None:
        return PrintState("no_printer")
    problem = agent_problem(printer, now) if printer is not None else "printer removed"
    return PrintState(PENDING, job_id, problem if problem in AGENT_AWAY else None)


@dataclass(frozen=True)
class Alert:
    device_id: int
    kind: str
    name: str
    kiosk_id: int | None
    problem: str


async def alerts(
    uow: UnitOfWork, hall_id: int, screen_silent: timedelta = SCREEN_SILENT_AFTER
) -> list[Alert]:
    """Devices that need staff: a print agent gone, paper out, cover open…, and kiosks or
    boards that showed up and then went silent for ``screen_silent``."""
    now = uow.clock.now()
    rows = (
        await uow.session.execute(
            select(DeviceRow)
            .where(
                DeviceRow.hall_id == hall_id,
                DeviceRow.kind.in_(("printer", *SCREENS)),
                DeviceRow.revoked_at.is_(None),
            )
            .order_by(DeviceRow.id)
        )
    ).scalars()
    found = []
    for device in rows:
        if device.kind == "printer":
            problem = problem_of(device, now)
        else:
            problem = screen_problem(device.kind, device.last_seen_at, now, screen_silent)
        if problem:
            found.append(Alert(device.id, device.kind, device.name, device.kiosk_id, problem))
    return found
