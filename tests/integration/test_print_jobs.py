"""Print jobs on both databases: stale jobs are dropped, a late goodbye does not mark a
reconnected agent offline, a kiosk is told of its own recent jobs."""

from __future__ import annotations

from typing import Any

from queue_server.clock import FixedClock
from queue_server.db.tables import DeviceRow
from queue_server.service import accounts, commands, kiosk_prints, printing
from queue_server.service.bus import Bus
from queue_server.service.unit_of_work import UnitOfWork
from tests.support import hall_with_matter


async def kiosk_with_printer(bus: Bus) -> tuple[int, int, int, int]:
    hall_id, matter_id = await hall_with_matter(bus)
    kiosk = await bus.run(accounts.create_device, hall_id, accounts.DeviceKind.KIOSK, "k")
    printer = await bus.run(
        accounts.create_device, hall_id, accounts.DeviceKind.PRINTER, "p", kiosk.id
    )
    return hall_id, matter_id, kiosk.id, printer.id


async def test_jobs_not_printed_within_ten_minutes_are_dropped(bus: Bus, clock: FixedClock) -> None:
    hall_id, matter_id, kiosk_id, printer_id = await kiosk_with_printer(bus)
    ticket = await bus.execute(
        commands.IssueTicket(hall_id, matter_id, commands.Actor(device_id=kiosk_id))
    )
    job = await bus.run(printing.job_for_ticket, ticket)
    assert job is not None
    clock.advance(minutes=11)
    assert await bus.run(printing.jobs_to_send, printer_id, resend=True) == []
    state = await bus.run(printing.outcome, job)
    assert (state.state, state.detail) == ("failed", "expired: not printed in time")


async def test_unacknowledged_jobs_go_out_again_after_a_minute(bus: Bus, clock: FixedClock) -> None:
    hall_id, matter_id, kiosk_id, printer_id = await kiosk_with_printer(bus)
    await bus.execute(commands.IssueTicket(hall_id, matter_id, commands.Actor(device_id=kiosk_id)))
    first = await bus.run(printing.jobs_to_send, printer_id, resend=False)
    assert len(first) == 1
    assert await bus.run(printing.jobs_to_send, printer_id, resend=False) == []
    clock.advance(seconds=61)
    again = await bus.run(printing.jobs_to_send, printer_id, resend=False)
    assert [job_id for job_id, _ in again] == [first[0][0]]


async def test_an_old_connections_goodbye_does_not_mark_the_new_one_offline(bus: Bus) -> None:
    *_, printer_id = await kiosk_with_printer(bus)
    await bus.run(printing.report_status, printer_id, True, None, "old")
    await bus.run(printing.report_status, printer_id, True, None, "new")
    await bus.run(printing.report_status, printer_id, False, None, "old")

    async def connected(uow: UnitOfWork) -> Any:
        return (await uow.session.get(DeviceRow, printer_id)).connected  # type: ignore[union-attr]

    assert await bus.run(connected) is True
    await bus.run(printing.report_status, printer_id, False, None, "new")
    assert await bus.run(connected) is False


async def test_a_kiosk_is_told_its_own_recent_jobs_without_waiting(
    bus: Bus, clock: FixedClock
) -> None:
    hall_id, matter_id, kiosk_id, printer_id = await kiosk_with_printer(bus)
    other_kiosk = await bus.run(accounts.create_device, hall_id, accounts.DeviceKind.KIOSK, "k2")
    await bus.run(
        accounts.create_device, hall_id, accounts.DeviceKind.PRINTER, "p2", other_kiosk.id
    )

    async def issue(device_id: int | None) -> int:
        command = commands.IssueTicket(hall_id, matter_id, commands.Actor(device_id=device_id))
        return int(await bus.execute(command))

    await issue(kiosk_id)
    clock.advance(minutes=11)  # that one is past what the kiosk's feed starts with
    ticket = await issue(kiosk_id)
    await issue(other_kiosk.id)
    staff_ticket = await issue(None)

    # Never reported: told at once that no agent is there to print it.
    told = await bus.run(kiosk_prints.print_state, ticket)
    assert (told.state, told.detail) == ("pending", "print agent offline")
    assert (await bus.run(kiosk_prints.print_state, staff_ticket)).state == "no_printer"
    prints = await bus.run(kiosk_prints.recent_prints, kiosk_id)
    assert [(p.printer_id, p.problem) for p in prints.printers] == [
        (printer_id, "print agent offline")
    ]
    [job] = prints.jobs
    assert (job.job_id, job.ticket_id, job.state, job.detail) == (
        told.job_id, ticket, "pending", "print agent offline",
    )  # fmt: skip

    await bus.run(printing.report_status, printer_id, True, None, "c")
    await bus.run(printing.jobs_to_send, printer_id, resend=True)
    assert (await bus.run(kiosk_prints.print_state, ticket)).state == "sent"
    assert told.job_id is not None
    await bus.run(printing.acknowledge, printer_id, told.job_id, "printed", None)
    done = await bus.run(kiosk_prints.kiosk_job, told.job_id)
    assert done is not None and (done.state, done.detail) == ("printed", None)
    mine = await bus.run(kiosk_prints.recent_prints, kiosk_id)
    assert [(j.job_id, j.state) for j in mine.jobs] == [(told.job_id, "printed")]
    theirs = await bus.run(kiosk_prints.recent_prints, other_kiosk.id)
    assert [j.job_id for j in theirs.jobs] != [told.job_id] and len(theirs.jobs) == 1
