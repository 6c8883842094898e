"""``onedoor demo --history``: the made-up past is shaped like a hall's (numbers unique and
gapless per matter and day, closed Sundays, visitors who come back, desk cases tied to the
visit not done), and the reports read it the same on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from queue_server import history
from queue_server.clock import FixedClock
from queue_server.db.tables import DeskCaseRow, TicketRow, VisitRow
from queue_server.service import reports, statistics
from queue_server.service.bus import Bus
from queue_server.service.unit_of_work import UnitOfWork


async def test_a_month_of_two_halls_is_consistent_and_reported(bus: Bus, clock: FixedClock) -> None:
    done: list[int] = []
    made = await history.generate(bus, 28, 2, per_day=120, progress=done.append)
    assert made.halls == 2 and sum(done) == 2 * 28
    assert made.tickets > 2 * 20 * 100  # about 120 a weekday, fewer on Saturdays

    async def read(uow: UnitOfWork) -> tuple[list[Any], list[Any], list[Any]]:
        # Plain rows (Core): they outlive the session.
        tickets = list(await uow.session.execute(select(TicketRow.__table__)))
        visits = list(await uow.session.execute(select(VisitRow.__table__)))
        cases = list(await uow.session.execute(select(DeskCaseRow.__table__)))
        return tickets, visits, cases

    tickets, visits, cases = await bus.run(read)
    assert len(tickets) == made.tickets and len(visits) == made.visits
    numbered: dict[tuple[int, object, str], list[int]] = defaultdict(list)
    visit_hall = {v.id: v.hall_id for v in visits}
    by_id = {t.id: t for t in tickets}
    tz = ZoneInfo("Asia/Shanghai")
    for t in tickets:
        assert visit_hall[t.visit_id] == t.hall_id
        assert t.business_day.weekday() != 6  # closed on Sundays
        assert t.issued_at.astimezone(tz).date() == t.business_day
        if t.seq is not None:
            numbered[(t.hall_id, t.business_day, t.prefix)].append(t.seq)
        if t.called_at is not None:
            assert t.called_at >= t.queued_at
        if t.kind == "escalation":
            origin = by_id[t.origin_ticket_id]
            assert origin.visit_id == t.visit_id and origin.outcome != "done"
        if t.outcome == "missing_documents":
            assert t.missing_documents or t.note
    for seqs in numbered.values():
        assert sorted(seqs) == list(range(1, len(seqs) + 1))  # unique and gapless
    assert cases and all(by_id[c.ticket_id].kind == "escalation" for c in cases)

    end = clock.now().astimezone(tz).date() - timedelta(days=1)
    start = end - timedelta(days=27)
    hall_id = tickets[0].hall_id
    report = await bus.run(reports.outcome_report, hall_id, start, end)
    assert report.total.repeat_visits > 0  # visitors turned away came back
    assert 0.7 < (report.total.one_visit_rate or 0) < 0.98
    served = sum(
        1 for t in tickets
        if t.hall_id == hall_id and t.state == "done" and t.kind != "escalation"
    )  # fmt: skip
    assert report.total.served == served
    figures = await bus.run(statistics.hall_statistics, hall_id, start, end)
    assert figures.total.tickets == sum(1 for t in tickets if t.hall_id == hall_id)
    assert figures.total.wait_p50 is not None and 3 < figures.total.wait_p50 < 30
