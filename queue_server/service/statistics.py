"""A hall's figures over a range of business days, grouped by matter, counter, clerk,
channel, hour or day: tickets, waits, service times, no-shows, booking use, outcomes and
ratings.

- **wait**: from joining the queue (``queued_at``: issue, check-in, or the transfer that
  continued the visit) to the call (``called_at``: for a ticket recalled, the last call,
  the one the visitor answered), for every ticket that was called;
- **service**: from start to finish, for every service finished;
- **no-shows**: tickets called and not come (过号); booked no-shows are bookings of the
  range whose visitor never checked in;
- **channel**: ``walk_in`` (a kiosk ticket), ``booked`` (checked in from a booking, whether
  on time or as a walk-in), ``assisted`` (issued or booked by staff for the visitor),
  ``continued`` (a transfer or an escalation, which continue a visit);
- percentiles are nearest-rank (p50 is a wait some visitor really had).

A ticket counts on its business day, at the hour (hall time) it was issued; by clerk and
counter it counts where it was called (tickets never called fall under "not called").
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import String, and_, case, cast, func, or_, select, text, tuple_

from queue_server.db.tables import (
    BookingRow,
    CounterRow,
    HallRow,
    RatingRow,
    ServiceRow,
    TicketRow,
    UserRow,
)
from queue_server.domain.model import TicketKind, TicketState

from .errors import Invalid, NotFound
from .reports import REPORT_WORK_MEM, check_range
from .unit_of_work import UnitOfWork


class GroupBy(StrEnum):
    MATTER = "matter"
    COUNTER = "counter"
    CLERK = "clerk"
    CHANNEL = "channel"
    HOUR = "hour"
    DAY = "day"


CHANNELS = {
    "walk_in": ("取号", "Walk-in"),
    "booked": ("预约", "Booked"),
    "assisted": ("帮办代办", "Assisted"),
    "continued": ("转办续办", "Continued visit"),
}


@dataclass
class Figures:
    key: str
    """The group's id (a matter's or counter's id, a clerk's user id, a channel, an hour
    "09", a day "2026-12-04"); "all" for the total; "none" for tickets never called."""
    label_zh: str
    label_en: str
    tickets: int = 0
    served: int = 0
    no_shows: int = 0
    cancelled: int = 0
    transferred: int = 0
    wait_p50: float | None = None
    """Minutes, one decimal."""
    wait_p90: float | None = None
    service_p50: float | None = None
    service_p90: float | None = None
    booked: int = 0
    """Tickets from bookings."""
    booked_no_shows: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    ratings: int = 0
    rating_average: float | None = None


@dataclass
class _Sums:
    """What a row of figures is computed from (kept out of the answer)."""

    waits: list[float] = field(default_factory=list)
    services: list[float] = field(default_factory=list)
    stars: int = 0
    from_database: bool = False
    """The percentiles came from the database (PostgreSQL), not from the lists."""


@dataclass(frozen=True)
class Statistics:
    hall_id: int
    start: date
    end: date
    by: str
    rows: list[Figures]
    total: Figures


COLUMNS: list[tuple[str, str, str]] = [
    ("label_zh", "分组", "Group (zh)"),
    ("label_en", "Group", "Group"),
    ("tickets", "取号数", "Tickets"),
    ("served", "办理数", "Served"),
    ("no_shows", "过号", "No-shows"),
    ("cancelled", "取消", "Cancelled"),
    ("transferred", "转办", "Transferred"),
    ("wait_p50", "等候中位数（分）", "Wait p50 (min)"),
    ("wait_p90", "等候P90（分）", "Wait p90 (min)"),
    ("service_p50", "办理中位数（分）", "Service p50 (min)"),
    ("service_p90", "办理P90（分）", "Service p90 (min)"),
    ("booked", "预约取号", "From bookings"),
    ("booked_no_shows", "预约未到", "Booked no-shows"),
    ("ratings", "评价数", "Ratings"),
    ("rating_average", "平均评分", "Average rating"),
]
"""The table's columns (field, Chinese heading, English heading), for pages and exports;
the outcomes follow, one column each."""


def nearest_rank(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(share * len(ordered)) - 1)], 1)


def _channel(kind: str, by_user: int | None, booking_channel: str | None) -> str:
    if kind in (TicketKind.TRANSFER, TicketKind.ESCALATION):
        return "continued"
    if booking_channel is not None:
        return "assisted" if booking_channel == "staff" else "booked"
    return "assisted" if by_user is not None else "walk_in"


def _finish(f: Figures, sums: _Sums) -> Figures:
    if not sums.from_database:
        f.wait_p50, f.wait_p90 = nearest_rank(sums.waits, 0.5), nearest_rank(sums.waits, 0.9)
        f.service_p50 = nearest_rank(sums.services, 0.5)
        f.service_p90 = nearest_rank(sums.services, 0.9)
    f.rating_average = round(sums.stars / f.ratings, 2) if f.ratings else None
    return f


async def _labels(uow: UnitOfWork, hall_id: int, by: GroupBy) -> dict[str, tuple[str, str]]:
    if by == GroupBy.MATTER:
        matters = await uow.session.execute(
            select(ServiceRow.id, ServiceRow.prefix, ServiceRow.name_zh, ServiceRow.name_en)
            .where(ServiceRow.hall_id == hall_id)
        )  # fmt: skip
        return {str(i): (f"{p} {zh}", f"{p} {en}") for i, p, zh, en in matters}
    if by == GroupBy.COUNTER:
        counters = await uow.session.execute(
            select(CounterRow.id, CounterRow.number, CounterRow.name).where(
                CounterRow.hall_id == hall_id
            )
        )
        return {str(i): (f"{n} 号窗口 {name}", f"Counter {n} {name}") for i, n, name in counters}
    if by == GroupBy.CLERK:
        clerks = await uow.session.execute(
            select(UserRow.id, UserRow.display_name, UserRow.username).where(
                UserRow.hall_id == hall_id
            )
        )
        return {str(i): (name or user, name or user) for i, name, user in clerks}
    if by == GroupBy.CHANNEL:
        return dict(CHANNELS)
    return {}


async def hall_statistics(
    uow: UnitOfWork,
    hall_id: int,
    start: date | None = None,
    end: date | None = None,
    by: GroupBy = GroupBy.MATTER,
    service_id: int | None = None,
    counter_id: int | None = None,
    channel: str | None = None,
) -> Statistics:
    hall = await uow.session.get(HallRow, hall_id)
    if hall is None:
        raise NotFound(f"no hall with id {hall_id}")
    if channel is not None and channel not in CHANNELS:
        raise Invalid("channel", f"one of: {', '.join(CHANNELS)}")
    tz = ZoneInfo(hall.timezone)
    start, end = check_range(start, end, uow.clock.now().astimezone(tz).date())
    stmt = (
        select(
            TicketRow.id,
            TicketRow.service_id,
            TicketRow.counter_id,
            TicketRow.clerk_id,
            TicketRow.kind,
            TicketRow.state,
            TicketRow.outcome,
            TicketRow.business_day,
            TicketRow.issued_at,
            TicketRow.queued_at,
            TicketRow.called_at,
            TicketRow.started_at,
            TicketRow.finished_at,
            TicketRow.issued_by_user_id,
            BookingRow.channel,
            RatingRow.stars,
        )
        .outerjoin(BookingRow, BookingRow.ticket_id == TicketRow.id)
        .outerjoin(RatingRow, RatingRow.ticket_id == TicketRow.id)
        .where(
            TicketRow.hall_id == hall_id,
            TicketRow.business_day >= start,
            TicketRow.business_day <= end,
        )
    )
    if service_id is not None:
        stmt = stmt.where(TicketRow.service_id == service_id)
    if counter_id is not None:
        stmt = stmt.where(TicketRow.counter_id == counter_id)
    labels = await _labels(uow, hall_id, by)
    groups: dict[str, Figures] = {}
    total = Figures("all", "全部", "All")
    sums: dict[int, _Sums] = defaultdict(_Sums)  # by id() of the row's Figures

    def group(key: str) -> Figures:
        if key not in groups:
            zh, en = labels.get(key, (key, key))
            if key == "none":
                zh, en = "未叫号", "Not called"
            groups[key] = Figures(key, zh, en)
        return groups[key]

    key_of: Callable[[Any, str], str] = {
        GroupBy.MATTER: lambda r, ch: str(r.service_id),
        GroupBy.COUNTER: lambda r, ch: str(r.counter_id) if r.counter_id else "none",
        GroupBy.CLERK: lambda r, ch: str(r.clerk_id) if r.clerk_id else "none",
        GroupBy.CHANNEL: lambda r, ch: ch,
        GroupBy.HOUR: lambda r, ch: f"{r.issued_at.astimezone(tz).hour:02d}",
        GroupBy.DAY: lambda r, ch: r.business_day.isoformat(),
    }[by]
    if uow.repo.dialect == "postgresql":
        since = datetime.combine(start, time(0), tzinfo=tz).astimezone(UTC)
        await _aggregate_in_postgresql(uow, stmt, by, tz, channel, group, total, sums, since)
    else:
        for r in await uow.session.execute(stmt):
            ch = _channel(r.kind, r.issued_by_user_id, r.channel)
            if channel is not None and ch != channel:
                continue
            for f in (group(key_of(r, ch)), total):
                _count(f, sums[id(f)], r)
    booked_no_shows = await _booked_no_shows(uow, hall_id, start, end, tz, service_id)
    if by in (GroupBy.MATTER, GroupBy.DAY, GroupBy.CHANNEL) and counter_id is None:
        for key, n in booked_no_shows(by).items():
            if channel in (None, "booked") or (by == GroupBy.CHANNEL and key == channel):
                group(key).booked_no_shows += n
                total.booked_no_shows += n
    rows = sorted(groups.values(), key=_order(by))
    return Statistics(
        hall_id, start, end, str(by), [_finish(f, sums[id(f)]) for f in rows],
        _finish(total, sums[id(total)]),
    )  # fmt: skip


def _channel_sql() -> Any:
    booking = BookingRow.channel
    return case(
        (TicketRow.kind.in_([TicketKind.TRANSFER, TicketKind.ESCALATION]), "continued"),
        (booking == "staff", "assisted"),
        (booking.is_not(None), "booked"),
        (TicketRow.issued_by_user_id.is_not(None), "assisted"),
        else_="walk_in",
    )


def _key_sql(by: GroupBy, tz: ZoneInfo, channel: Any) -> Any:
    return {
        GroupBy.MATTER: cast(TicketRow.service_id, String),
        GroupBy.COUNTER: func.coalesce(cast(TicketRow.counter_id, String), "none"),
        GroupBy.CLERK: func.coalesce(cast(TicketRow.clerk_id, String), "none"),
        GroupBy.CHANNEL: channel,
        GroupBy.HOUR: func.to_char(func.timezone(tz.key, TicketRow.issued_at), "HH24"),
        GroupBy.DAY: func.to_char(TicketRow.business_day, "YYYY-MM-DD"),
    }[by]


async def _aggregate_in_postgresql(
    uow: UnitOfWork, base: Any, by: GroupBy, tz: ZoneInfo, channel: str | None,
    group: Callable[[str], Figures], total: Figures, sums: dict[int, _Sums], since: datetime,
) -> None:  # fmt: skip
    """The same figures as ``_count`` gives, computed by PostgreSQL: a year of a busy hall
    is a few hundred thousand tickets, too many to carry to Python for each view.
    ``percentile_disc`` is the nearest rank; the total is a grouping set of its own."""
    ch = _channel_sql()
    key = _key_sql(by, tz, ch).label("key")
    minutes = 60.0
    wait = func.extract("epoch", TicketRow.called_at - TicketRow.queued_at) / minutes
    served = TicketRow.state == TicketState.DONE
    service = case(
        (
            and_(served, TicketRow.started_at.is_not(None), TicketRow.finished_at.is_not(None)),
            func.extract("epoch", TicketRow.finished_at - TicketRow.started_at) / minutes,
        )
    )
    where = base.whereclause
    if channel is not None:
        where = and_(where, ch == channel)
    # A rating is given after its ticket was issued, in the ticket's hall: bounding the
    # join so lets PostgreSQL read the hall's ratings of the range, not all of them.
    rated = and_(
        RatingRow.ticket_id == TicketRow.id,
        RatingRow.hall_id == TicketRow.hall_id,
        RatingRow.created_at >= since,
    )
    joined = TicketRow.__table__.outerjoin(
        BookingRow.__table__, BookingRow.ticket_id == TicketRow.id
    ).outerjoin(RatingRow.__table__, rated)
    await uow.session.execute(text(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'"))

    def counted(condition: Any) -> Any:
        return func.count().filter(condition)

    figures = (
        select(
            key,
            func.grouping(key).label("is_total"),
            func.count().label("tickets"),
            counted(served).label("served"),
            counted(TicketRow.state == TicketState.NO_SHOW).label("no_shows"),
            counted(TicketRow.state == TicketState.CANCELLED).label("cancelled"),
            counted(TicketRow.state == TicketState.TRANSFERRED).label("transferred"),
            func.percentile_disc(0.5).within_group(wait).label("wait_p50"),
            func.percentile_disc(0.9).within_group(wait).label("wait_p90"),
            func.percentile_disc(0.5).within_group(service).label("service_p50"),
            func.percentile_disc(0.9).within_group(service).label("service_p90"),
            counted(
                or_(TicketRow.kind == TicketKind.APPOINTMENT, BookingRow.channel.is_not(None))
            ).label("booked"),
            func.count(RatingRow.stars).label("ratings"),
            func.coalesce(func.sum(RatingRow.stars), 0).label("stars"),
        )
        .select_from(joined)
        .where(where)
        .group_by(func.grouping_sets(tuple_(key), tuple_()))
    )
    for r in await uow.session.execute(figures):
        f = total if r.is_total else group(r.key)
        f.tickets, f.served, f.no_shows = r.tickets, r.served, r.no_shows
        f.cancelled, f.transferred, f.booked = r.cancelled, r.transferred, r.booked
        f.ratings = r.ratings
        sums[id(f)].stars, sums[id(f)].from_database = int(r.stars), True
        f.wait_p50, f.wait_p90 = _minutes(r.wait_p50), _minutes(r.wait_p90)
        f.service_p50, f.service_p90 = _minutes(r.service_p50), _minutes(r.service_p90)
    outcomes = (
        select(key, func.grouping(key).label("is_total"), TicketRow.outcome, func.count())
        .select_from(joined)
        .where(and_(where, TicketRow.outcome.is_not(None)))
        .group_by(func.grouping_sets(tuple_(key, TicketRow.outcome), tuple_(TicketRow.outcome)))
    )
    for k, is_total, outcome, n in await uow.session.execute(outcomes):
        (total if is_total else group(k)).outcomes[outcome] = n


def _minutes(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)


def _count(f: Figures, sums: _Sums, r: Any) -> None:
    f.tickets += 1
    if r.state == TicketState.DONE:
        f.served += 1
    elif r.state == TicketState.NO_SHOW:
        f.no_shows += 1
    elif r.state == TicketState.CANCELLED:
        f.cancelled += 1
    elif r.state == TicketState.TRANSFERRED:
        f.transferred += 1
    if r.outcome:
        f.outcomes[r.outcome] = f.outcomes.get(r.outcome, 0) + 1
    if r.called_at is not None:
        sums.waits.append((r.called_at - r.queued_at).total_seconds() / 60)
    if r.state == TicketState.DONE and r.started_at is not None and r.finished_at is not None:
        sums.services.append((r.finished_at - r.started_at).total_seconds() / 60)
    if r.kind == TicketKind.APPOINTMENT or r.channel is not None:
        f.booked += 1
    if r.stars is not None:
        f.ratings += 1
        sums.stars += r.stars


def _order(by: GroupBy) -> Callable[[Figures], Any]:
    if by in (GroupBy.HOUR, GroupBy.DAY):
        return lambda f: f.key
    if by == GroupBy.CHANNEL:
        order = list(CHANNELS)
        return lambda f: order.index(f.key) if f.key in order else len(order)
    return lambda f: (f.key == "none", int(f.key) if f.key.isdigit() else 0)


async def _booked_no_shows(
    uow: UnitOfWork, hall_id: int, start: date, end: date, tz: ZoneInfo,
    service_id: int | None,
) -> Callable[[GroupBy], dict[str, int]]:  # fmt: skip
    """Bookings of the range marked no-show, countable by matter, day or channel."""
    stmt = select(BookingRow.service_id, BookingRow.slot_start, BookingRow.channel).where(
        BookingRow.hall_id == hall_id, BookingRow.state == "no_show"
    )
    if service_id is not None:
        stmt = stmt.where(BookingRow.service_id == service_id)
    found = [
        (sid, at.astimezone(tz).date(), ch)
        for sid, at, ch in await uow.session.execute(stmt)
        if start <= at.astimezone(tz).date() <= end
    ]

    def count(by: GroupBy) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for sid, day, ch in found:
            key = {
                GroupBy.MATTER: str(sid),
                GroupBy.DAY: day.isoformat(),
                GroupBy.CHANNEL: "assisted" if ch == "staff" else "booked",
            }[by]
            out[key] += 1
        return out

    return count


def table_rows(stats: Statistics, outcomes: Iterable[str]) -> list[list[Any]]:
    """The rows of the statistics table as plain values (the total last), for exports."""
    out = []
    for f in [*stats.rows, stats.total]:
        out.append(
            [getattr(f, name) for name, _, _ in COLUMNS] + [f.outcomes.get(o, 0) for o in outcomes]
        )
    return out
