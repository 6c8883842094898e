"""The daily report: when the day-close job closes a hall's day it keeps that day's
figures (the statistics by matter and the outcome report), so the manager can download
the day as it stood at closing time, however the history is corrected afterwards."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import msgspec
from sqlalchemy import delete, select

from queue_server.db.tables import DailyReportRow

from . import reports, statistics
from .errors import NotFound
from .reports import OutcomeReport
from .statistics import Statistics
from .unit_of_work import UnitOfWork

LISTED_DAYS = 60


@dataclass(frozen=True)
class DailyReportRef:
    day: date
    made_at: datetime


@dataclass(frozen=True)
class DailyReport:
    day: date
    made_at: datetime
    statistics: Statistics
    outcomes: OutcomeReport


async def write_daily_report(uow: UnitOfWork, hall_id: int, day: date) -> None:
    """Keep ``day``'s figures (again, when the day is closed again)."""
    figures = await statistics.hall_statistics(uow, hall_id, day, day)
    outcome = await reports.outcome_report(uow, hall_id, day, day)
    await uow.session.execute(
        delete(DailyReportRow).where(DailyReportRow.hall_id == hall_id, DailyReportRow.day == day)
    )
    uow.session.add(
        DailyReportRow(
            hall_id=hall_id,
            day=day,
            made_at=uow.clock.now(),
            statistics=msgspec.to_builtins(figures),
            outcomes=msgspec.to_builtins(outcome),
        )
    )
    await uow.commit()


async def list_daily_reports(uow: UnitOfWork, hall_id: int) -> list[DailyReportRef]:
    """The days kept, newest first (the last ``LISTED_DAYS``)."""
    rows = await uow.session.execute(
        select(DailyReportRow.day, DailyReportRow.made_at)
        .where(DailyReportRow.hall_id == hall_id)
        .order_by(DailyReportRow.day.desc())
        .limit(LISTED_DAYS)
    )
    return [DailyReportRef(day, made) for day, made in rows]


async def daily_report(uow: UnitOfWork, hall_id: int, day: date) -> DailyReport:
    row = await uow.session.get(DailyReportRow, (hall_id, day))
    if row is None:
        raise NotFound(
            f"hall {hall_id} has no daily report for {day}: the day-close job writes it when "
            "it closes the day"
        )
    return DailyReport(
        row.day, row.made_at, msgspec.convert(row.statistics, Statistics),
        msgspec.convert(row.outcomes, OutcomeReport),
    )  # fmt: skip
