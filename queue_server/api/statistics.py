"""A hall's statistics and reports as JSON, and every table of them as CSV or XLSX."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from queue_server.domain.model import Outcome
from queue_server.service import audit, daily, desk, exports, hall_config, reports, statistics
from queue_server.service.bus import Bus
from queue_server.service.exports import Sheet
from queue_server.service.reports import MatterOutcomes, OutcomeReport
from queue_server.service.statistics import COLUMNS, GroupBy, Statistics

from .auth import MANAGERS, roles
from .schemas import ID_MAX

Start = Annotated[date | None, QueryParameter(name="from", description="first hall date")]
End = Annotated[date | None, QueryParameter(name="to", description="last hall date")]
Format = Annotated[Literal["csv", "xlsx"], QueryParameter(description="csv or xlsx")]
Lang = Annotated[Literal["zh_CN", "en"], QueryParameter(description="language of the headings")]
By = Annotated[
    Literal["matter", "counter", "clerk", "channel", "hour", "day"],
    QueryParameter(description="how the rows are grouped"),
]
Channel = Annotated[
    Literal["walk_in", "booked", "assisted", "continued"] | None,
    QueryParameter(description="only this channel"),
]
MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
OUTCOME_WORDS = {
    "done": ("办成", "Done"),
    "missing_documents": ("缺少材料", "Missing documents"),
    "other_department": ("需其他部门办理", "Needs another department"),
    "system_problem": ("系统或政策问题", "System or policy problem"),
    "visitor_left": ("办事人离开", "Visitor left"),
    "needs_escalation": ("需上级处理", "Needs escalation"),
    "other": ("其他", "Other"),
    "day_closed": ("当日未办理", "Day closed"),
}
OUTCOMES = [str(o) for o in Outcome]
NOT_DONE = [o for o in OUTCOMES if o not in (Outcome.DONE, Outcome.DAY_CLOSED)]


def _word(pair: tuple[str, str], lang: str) -> str:
    return pair[0] if lang == "zh_CN" else pair[1]


async def download(
    bus: Bus, hall_id: int, name: str, fmt: str, sheets: list[Sheet]
) -> Response[bytes]:
    """The file; the download is written to the audit log (who took which table)."""
    body = exports.to_csv(sheets[0]) if fmt == "csv" else exports.to_xlsx(sheets)
    rows = sum(len(sheet.rows) for sheet in sheets)
    await bus.run(audit.record, hall_id, "download", f"{name}.{fmt}", {"rows": rows})
    return Response(
        body,
        media_type=MEDIA[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'},
    )


def statistics_sheet(stats: Statistics, lang: str) -> Sheet:
    headings = [_word((zh, en), lang) for _, zh, en in COLUMNS] + [
        _word(OUTCOME_WORDS[o], lang) for o in OUTCOMES
    ]
    title = "统计" if lang == "zh_CN" else "Statistics"
    return Sheet(title, headings, statistics.table_rows(stats, OUTCOMES))


def _outcome_row(m: MatterOutcomes, lang: str) -> list[Any]:
    reasons = {o: n for o, n in m.by_outcome.items() if o != Outcome.DONE}
    return [
        m.name_zh if lang == "zh_CN" else m.name_en, m.served, m.done, m.one_visit_rate,
        m.first_visits, m.repeat_visits, m.identified,
        *[reasons.get(o, 0) for o in NOT_DONE],
        "; ".join(f"{d} ({n})" for d, n in m.missing_documents),
    ]  # fmt: skip


def outcome_sheets(report: OutcomeReport, lang: str) -> list[Sheet]:
    zh = lang == "zh_CN"
    headings = [
        "事项" if zh else "Matter", "办理数" if zh else "Services", "办成" if zh else "Done",
        "一次办成率" if zh else "One-visit rate", "首次来访" if zh else "First visits",
        "重复跑动" if zh else "Repeat visits", "已识别办事人" if zh else "Visitor known",
        *[_word(OUTCOME_WORDS[o], lang) for o in NOT_DONE],
        "最常缺少的材料" if zh else "Documents most often missing",
    ]  # fmt: skip
    rows = [_outcome_row(m, lang) for m in [*report.matters, report.total]]
    d = report.desk
    desk_sheet = Sheet(
        "反映窗口" if zh else "Desk",
        ["指标" if zh else "Figure", "数量" if zh else "Count"],
        [
            ["登记诉求" if zh else "Cases opened", d.opened],
            ["已答复" if zh else "Answered", d.answered],
            ["已解决" if zh else "Resolved", d.resolved],
            ["未解决" if zh else "Not resolved", d.unresolved],
            ["当前未答复" if zh else "Open now", d.open_now],
            ["当前超期" if zh else "Overdue now", d.overdue_now],
        ],
    )
    return [Sheet("办理结果" if zh else "Outcomes", headings, rows), desk_sheet]


async def _statistics(
    bus: Bus, hall_id: int, start: date | None, end: date | None, by: str,
    service_id: int | None, counter_id: int | None, channel: str | None,
) -> Statistics:  # fmt: skip
    return await bus.run(
        statistics.hall_statistics, hall_id, start, end, GroupBy(by), service_id, counter_id,
        channel,
    )  # fmt: skip


class StatisticsController(Controller):
    path = "/api/halls/{hall_id:int}"
    tags = ["statistics"]
    opt = roles(*MANAGERS)

    @get("/statistics")
    async def statistics(
        self,
        hall_id: FromPath[int],
        bus: NamedDependency[Bus],
        start: Start = None,
        end: End = None,
        by: By = "matter",
        service_id: Annotated[int | None, QueryParameter(ge=1, le=ID_MAX)] = None,
        counter_id: Annotated[int | None, QueryParameter(ge=1, le=ID_MAX)] = None,
        channel: Channel = None,
    ) -> Statistics:
        """Tickets, waits and service times (p50/p90 minutes), no-shows, booking use,
        outcomes and ratings over a range of hall dates (default the last 30 days), grouped
        ``by`` matter, counter, clerk, channel, hour or day, optionally for one matter,
        counter or channel."""
        return await _statistics(bus, hall_id, start, end, by, service_id, counter_id, channel)

    @get("/statistics/export")
    async def export_statistics(
        self,
        hall_id: FromPath[int],
        bus: NamedDependency[Bus],
        format: Format = "csv",
        lang: Lang = "zh_CN",
        start: Start = None,
        end: End = None,
        by: By = "matter",
        service_id: Annotated[int | None, QueryParameter(ge=1, le=ID_MAX)] = None,
        counter_id: Annotated[int | None, QueryParameter(ge=1, le=ID_MAX)] = None,
        channel: Channel = None,
    ) -> Response[bytes]:
        """The statistics table as a file (the total in the last row)."""
        stats = await _statistics(bus, hall_id, start, end, by, service_id, counter_id, channel)
        name = f"onedoor-statistics-hall{hall_id}-{by}-{stats.start}-{stats.end}"
        return await download(bus, hall_id, name, format, [statistics_sheet(stats, lang)])

    @get("/reports/outcomes/export")
    async def export_outcomes(
        self,
        hall_id: FromPath[int],
        bus: NamedDependency[Bus],
        format: Format = "csv",
        lang: Lang = "zh_CN",
        start: Start = None,
        end: End = None,
    ) -> Response[bytes]:
        """Outcomes and the one-visit rate per matter as a file (CSV: that table; XLSX: it
        and the desk's figures)."""
        report = await bus.run(reports.outcome_report, hall_id, start, end)
        name = f"onedoor-outcomes-hall{hall_id}-{report.start}-{report.end}"
        return await download(bus, hall_id, name, format, outcome_sheets(report, lang))

    @get("/cases/export")
    async def export_cases(
        self,
        hall_id: FromPath[int],
        bus: NamedDependency[Bus],
        format: Format = "csv",
        lang: Lang = "zh_CN",
    ) -> Response[bytes]:
        """The desk's cases as a file (staff notes stay out of it)."""
        cases = await bus.run(desk.list_cases, hall_id)
        tz = ZoneInfo((await bus.run(hall_config.get_hall, hall_id)).timezone)
        zh = lang == "zh_CN"
        headings = [
            "编号" if zh else "Case", "号码" if zh else "Ticket", "事项" if zh else "Matter",
            "状态" if zh else "Status", "超期" if zh else "Overdue", "负责人" if zh else "Owner",
            "承诺答复日期" if zh else "Answer promised by", "登记时间" if zh else "Opened",
            "诉求内容" if zh else "Summary", "答复" if zh else "Answer",
            "结果" if zh else "Resolution",
        ]  # fmt: skip
        rows = [
            [
                c.id,
                c.ticket.number,
                c.service_zh if zh else c.service_en,
                c.status,
                c.overdue,
                c.owner_name,
                c.promised_on.isoformat(),
                c.opened_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
                c.summary,
                c.answer,
                c.resolution,
            ]
            for c in cases
        ]
        title = "诉求" if zh else "Cases"
        return await download(
            bus, hall_id, f"onedoor-cases-hall{hall_id}", format, [Sheet(title, headings, rows)]
        )

    @get("/reports/daily")
    async def daily_reports(
        self, hall_id: FromPath[int], bus: NamedDependency[Bus]
    ) -> list[daily.DailyReportRef]:
        """The days whose report the day-close job kept, newest first."""
        return await bus.run(daily.list_daily_reports, hall_id)

    @get("/reports/daily/{day:date}")
    async def daily_report(
        self,
        hall_id: FromPath[int],
        day: FromPath[date],
        bus: NamedDependency[Bus],
        format: Format = "xlsx",
        lang: Lang = "zh_CN",
    ) -> Response[bytes]:
        """A day's report as the day close wrote it: XLSX with the statistics by matter,
        the outcomes and the desk; CSV with the statistics."""
        kept = await bus.run(daily.daily_report, hall_id, day)
        sheets = [statistics_sheet(kept.statistics, lang), *outcome_sheets(kept.outcomes, lang)]
        return await download(bus, hall_id, f"onedoor-daily-hall{hall_id}-{day}", format, sheets)
