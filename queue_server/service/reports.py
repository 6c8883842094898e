"""Come at most once: outcomes, reasons, repeat visits and the one-visit rate of a hall.

Counted over finished services (state ``done``, any outcome) of a range of business days,
escalation tickets aside (they continue a visit already counted). Services and their
outcomes count tickets; visits count once per matter, with the outcome the visit ended
with for that matter (a visit sent to the desk and back has two tickets of one matter):

- a visit is a **repeat visit** for a matter when the same visitor
  (``visits.visitor_hash``) came for that matter on another visit within the hall's repeat
  window (``halls.repeat_window_days``, default 30) before it, even before the range;
- the **first visits** are the others (a visitor not identified counts as a first visit:
  ``identified`` says how many were);
- the **one-visit rate** is the share of first visits that ended ``done``: the visitor got
  the matter done and had not come for it within the window before.

The desk's figures count its cases opened in the range and how they were closed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text

from queue_server.db.tables import DeskCaseRow, HallRow, ServiceRow, TicketRow, VisitRow
from queue_server.domain.model import Outcome, TicketKind, TicketState

from .desk import CaseStatus, Resolution
from .errors import Invalid, NotFound
from .unit_of_work import UnitOfWork

RANGE_AT_MOST_DAYS = 366
FIRST_YEAR, LAST_YEAR = 2000, 2100
TOP_DOCUMENTS = 5
REPORT_WORK_MEM = "64MB"
"""PostgreSQL's sort memory for a report's transaction: a year of a hall sorts in memory."""


@dataclass
class MatterOutcomes:
    service_id: int | None
    """None for the hall's total."""
    name_zh: str
    name_en: str
    desk: bool = False
    served: int = 0
    done: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)
    """Finished services per outcome (done included)."""
    missing_documents: list[tuple[str, int]] = field(default_factory=list)
    """The documents most often missing, with how often."""
    identified: int = 0
    """Visits (for this matter) whose visitor is known (by booking or as asked)."""
    first_visits: int = 0
    """Visits for this matter that were not repeats (each visit counts once per matter)."""
    repeat_visits: int = 0
    one_visit_done: int = 0
    """First visits that ended done for this matter."""
    one_visit_rate: float | None = None
    """one_visit_done / first_visits (None without services)."""


@dataclass
class _VisitMatter:
    day: date
    who: str | None
    outcome: str | None = None


@dataclass(frozen=True)
class DeskFigures:
    opened: int
    answered: int
    """Opened in the range and answered (or closed) by now."""
    resolved: int
    unresolved: int
    open_now: int
    overdue_now: int


@dataclass(frozen=True)
class OutcomeReport:
    hall_id: int
    start: date
    end: date
    repeat_window_days: int
    total: MatterOutcomes
    matters: list[MatterOutcomes]
    top_reasons: list[tuple[str, int]]
    """Outcomes other than done, most frequent first."""
    desk: DeskFigures


def check_range(start: date | None, end: date | None, today: date) -> tuple[date, date]:
    """The days asked for (default: the last 30 days to today), or ``Invalid``."""
    for name, day in (("from", start), ("to", end)):
        if day is not None and not FIRST_YEAR <= day.year <= LAST_YEAR:
            raise Invalid(name, f"a date within the years {FIRST_YEAR} to {LAST_YEAR}")
    end = end or today
    start = start or end - timedelta(days=29)
    if start > end:
        raise Invalid("from", f"the range starts ({start}) after it ends ({end})")
    if (end - start).days >= RANGE_AT_MOST_DAYS:
        raise Invalid("from", f"ask for at most {RANGE_AT_MOST_DAYS} days at once")
    return start, end


def _top(counts: Counter[str]) -> list[tuple[str, int]]:
    """The most frequent first; equal counts by name (the same on both databases)."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:TOP_DOCUMENTS]


def _rate(m: MatterOutcomes) -> MatterOutcomes:
    m.one_visit_rate = round(m.one_visit_done / m.first_visits, 4) if m.first_visits else None
    return m


async def outcome_report(
    uow: UnitOfWork, hall_id: int, start: date | None = None, end: date | None = None
) -> OutcomeReport:
    hall = await uow.session.get(HallRow, hall_id)
    if hall is None:
        raise NotFound(f"no hall with id {hall_id}")
    tz = ZoneInfo(hall.timezone)
    today = uow.clock.now().astimezone(tz).date()
    start, end = check_range(start, end, today)
    window = hall.repeat_window_days
    services = {
        s.id: s
        for s in (
            await uow.session.execute(select(ServiceRow).where(ServiceRow.hall_id == hall_id))
        ).scalars()
    }
    matters = {
        sid: MatterOutcomes(sid, s.name_zh, s.name_en, s.desk) for sid, s in services.items()
    }
    total = MatterOutcomes(None, "全部事项", "All matters")
    missing: dict[int, Counter[str]] = defaultdict(Counter)
    if uow.repo.dialect == "postgresql":
        await _count_in_postgresql(uow, hall_id, start, end, window, matters, total, missing)
    else:
        await _count_in_python(uow, hall_id, start, end, window, matters, total, missing)
    everything: Counter[str] = Counter()
    for sid, m in matters.items():
        m.missing_documents = _top(missing[sid])
        everything.update(missing[sid])
        _rate(m)
    total.missing_documents = _top(everything)
    _rate(total)
    reasons = Counter({o: n for o, n in total.by_outcome.items() if o != Outcome.DONE})
    return OutcomeReport(
        hall_id, start, end, window, total,
        [m for m in matters.values() if m.served or not m.desk],
        reasons.most_common(), await _desk_figures(uow, hall_id, start, end, today, tz),
    )  # fmt: skip


async def _count_in_python(
    uow: UnitOfWork, hall_id: int, start: date, end: date, window: int,
    matters: dict[int, MatterOutcomes], total: MatterOutcomes,
    missing: dict[int, Counter[str]],
) -> None:  # fmt: skip
    last_seen: dict[tuple[str, int], date] = {}
    rows = await uow.session.execute(
        select(
            TicketRow.service_id,
            TicketRow.business_day,
            TicketRow.outcome,
            TicketRow.missing_documents,
            TicketRow.visit_id,
            VisitRow.visitor_hash,
        )
        .join(VisitRow, VisitRow.id == TicketRow.visit_id)
        .where(
            TicketRow.hall_id == hall_id,
            TicketRow.state == TicketState.DONE,
            TicketRow.kind != TicketKind.ESCALATION,
            TicketRow.business_day >= start - timedelta(days=window),
            TicketRow.business_day <= end,
        )
        .order_by(TicketRow.business_day, TicketRow.id)
    )
    # A visit counts once per matter, with the outcome it ended with there (a visit sent
    # to the desk and back may have several tickets of one matter); services and reasons
    # count every ticket.
    visits: dict[tuple[int, int], _VisitMatter] = {}
    for service_id, day, outcome, docs, visit_id, who in rows:
        if day >= start and service_id in matters:
            for m in (matters[service_id], total):
                m.served += 1
                m.by_outcome[outcome] = m.by_outcome.get(outcome, 0) + 1
                m.done += 1 if outcome == Outcome.DONE else 0
            if outcome == Outcome.MISSING_DOCUMENTS:
                missing[service_id].update(docs or [])
        pair = visits.setdefault((visit_id, service_id), _VisitMatter(day, who))
        pair.outcome = outcome
    for (_, service_id), pair in visits.items():  # in the order of their first ticket
        who = pair.who
        earlier = last_seen.get((who, service_id)) if who else None
        if who:
            last_seen[(who, service_id)] = pair.day
        if pair.day < start or service_id not in matters:
            continue
        repeat = earlier is not None and (pair.day - earlier).days <= window
        for m in (matters[service_id], total):
            m.identified += 1 if who else 0
            if repeat:
                m.repeat_visits += 1
            else:
                m.first_visits += 1
                m.one_visit_done += 1 if pair.outcome == Outcome.DONE else 0


_PG_VISITS = text(
    """
    WITH t AS (
        SELECT t.id, t.service_id, t.business_day AS day, t.outcome, t.visit_id,
               v.visitor_hash COLLATE "C" AS who
        FROM tickets t JOIN visits v ON v.id = t.visit_id
             AND v.hall_id = :hall AND v.business_day BETWEEN :since AND :end
        WHERE t.hall_id = :hall AND t.state = 'done' AND t.kind <> 'escalation'
          AND t.business_day BETWEEN :since AND :end
    ), pairs AS (
        SELECT visit_id, service_id, day, who, min(id) AS first_id,
               (array_agg(outcome ORDER BY id DESC))[1] AS outcome
        FROM t GROUP BY visit_id, service_id, day, who
    ), marked AS (
        -- Only a known visitor can have come before: the window sorts just their visits.
        SELECT service_id, day, who, outcome,
               lag(day) OVER (PARTITION BY who, service_id ORDER BY day, first_id) AS earlier
        FROM pairs WHERE who IS NOT NULL
        UNION ALL
        SELECT service_id, day, who, outcome, NULL FROM pairs WHERE who IS NULL
    ), judged AS (
        SELECT service_id, day, who, outcome,
               coalesce(day - earlier <= :window, false) AS repeat
        FROM marked
    )
    SELECT service_id,
           count(*) FILTER (WHERE who IS NOT NULL) AS identified,
           count(*) FILTER (WHERE repeat) AS repeats,
           count(*) FILTER (WHERE NOT repeat) AS firsts,
           count(*) FILTER (WHERE NOT repeat AND outcome = 'done') AS one_done
    FROM judged WHERE day >= :start GROUP BY service_id
    """
)
_PG_SERVICES = text(
    """
    SELECT service_id, outcome, count(*) FROM tickets
    WHERE hall_id = :hall AND state = 'done' AND kind <> 'escalation'
      AND business_day BETWEEN :start AND :end
    GROUP BY service_id, outcome
    """
)
_PG_MISSING = text(
    """
    SELECT service_id, document, count(*)
    FROM tickets, json_array_elements_text(missing_documents) AS document
    WHERE hall_id = :hall AND state = 'done' AND kind <> 'escalation'
      AND outcome = 'missing_documents' AND missing_documents IS NOT NULL
      AND business_day BETWEEN :start AND :end
    GROUP BY service_id, document
    """
)


async def _count_in_postgresql(
    uow: UnitOfWork, hall_id: int, start: date, end: date, window: int,
    matters: dict[int, MatterOutcomes], total: MatterOutcomes,
    missing: dict[int, Counter[str]],
) -> None:  # fmt: skip
    """What ``_count_in_python`` counts, counted by PostgreSQL (the visit pairs and each
    one's previous visit by a window function): a year of a busy hall stays under a
    second."""
    since = start - timedelta(days=window)
    arguments = {"hall": hall_id, "start": start, "end": end, "since": since, "window": window}
    await uow.session.execute(text(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'"))
    for service_id, outcome, n in await uow.session.execute(_PG_SERVICES, arguments):
        if service_id not in matters:
            continue
        for m in (matters[service_id], total):
            m.served += n
            m.by_outcome[outcome] = m.by_outcome.get(outcome, 0) + n
            m.done += n if outcome == Outcome.DONE else 0
    for service_id, document, n in await uow.session.execute(_PG_MISSING, arguments):
        if service_id in matters:
            missing[service_id][document] += n
    for row in await uow.session.execute(_PG_VISITS, arguments):
        if row.service_id not in matters:
            continue
        for m in (matters[row.service_id], total):
            m.identified += row.identified
            m.repeat_visits += row.repeats
            m.first_visits += row.firsts
            m.one_visit_done += row.one_done


async def _desk_figures(
    uow: UnitOfWork, hall_id: int, start: date, end: date, today: date, tz: ZoneInfo
) -> DeskFigures:
    since = datetime.combine(start, time(0), tzinfo=tz).astimezone(UTC)
    until = datetime.combine(end + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    opened = dict(
        (
            await uow.session.execute(
                select(DeskCaseRow.status, func.count())
                .where(
                    DeskCaseRow.hall_id == hall_id,
                    DeskCaseRow.opened_at >= since,
                    DeskCaseRow.opened_at < until,
                )
                .group_by(DeskCaseRow.status)
            )
        ).all()
    )
    resolutions = dict(
        (
            await uow.session.execute(
                select(DeskCaseRow.resolution, func.count())
                .where(
                    DeskCaseRow.hall_id == hall_id,
                    DeskCaseRow.status == CaseStatus.CLOSED,
                    DeskCaseRow.closed_at.is_not(None),
                    DeskCaseRow.closed_at >= since,
                    DeskCaseRow.closed_at < until,
                )
                .group_by(DeskCaseRow.resolution)
            )
        ).all()
    )
    open_now = await uow.session.scalar(
        select(func.count()).where(
            DeskCaseRow.hall_id == hall_id, DeskCaseRow.status == CaseStatus.OPEN
        )
    )
    overdue_now = await uow.session.scalar(
        select(func.count()).where(
            DeskCaseRow.hall_id == hall_id,
            DeskCaseRow.status == CaseStatus.OPEN,
            DeskCaseRow.promised_on < today,
        )
    )
    total_opened = sum(opened.values())
    return DeskFigures(
        total_opened, total_opened - opened.get(CaseStatus.OPEN, 0),
        resolutions.get(Resolution.RESOLVED, 0), resolutions.get(Resolution.UNRESOLVED, 0),
        int(open_now or 0), int(overdue_now or 0),
    )  # fmt: skip
