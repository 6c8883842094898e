"""A scenario measured from a hall: its configuration as it stands and its recent history.

``onedoor simulate --from-hall N`` simulates the next day the hall opens: its matters,
counters and opening hours as configured now, and its visitors, service times, arrivals
by hour, bookings, priority visitors and transfers as its last days recorded them
(``recorded`` measures those, one aggregate statement each).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from typing import TypeGuard
from zoneinfo import ZoneInfo

from booking.domain.rules import rules_from_json
from queue_server.db.tables import HallRow, ServiceRow
from queue_server.domain.hours import WEEKDAYS, OpeningHours, business_day
from queue_server.domain.model import NO_PRIORITY, TicketKind
from queue_server.service.errors import Invalid, NotFound
from queue_server.service.unit_of_work import UnitOfWork

from . import recorded
from .recorded import Served, Window
from .scenario import Bookings, Counter, Matter, Scenario, ServiceTime

MAX_DAYS = 3660
MIN_SERVICE_SAMPLES = 20
"""Fewer served tickets than this: the matter's typical minutes stand for its mean."""
FALLBACK_CV = 0.6
MIN_CHECK_INS = 10
"""Fewer checked-in bookings than this: the default punctuality stands."""


@dataclass
class _Visits:
    """The visits (first tickets) to the matters simulated, and how they came."""

    by_matter: Tally[int] = field(default_factory=Tally)
    walk_ins: int = 0
    appointments: int = 0
    priorities: Tally[str] = field(default_factory=Tally)
    """Walk-ins by priority class (of the classes the hall still has)."""

    @property
    def total(self) -> int:
        return sum(self.by_matter.values())


async def scenario_from_hall(uow: UnitOfWork, hall_id: int, days: int = 28) -> Scenario:
    """The hall's next opening day as its configuration and its last ``days`` days tell.

    The days measured are the ``days`` hall-local dates before today; the day simulated is
    the first date after today whose weekday the hall opens on. Raises NotFound for an
    unknown hall, and Invalid naming what is missing when the history or the configuration
    is too thin to measure.
    """
    hall = await uow.session.get(HallRow, hall_id)
    if hall is None:
        raise NotFound(f"no hall with id {hall_id}")
    if not 1 <= days <= MAX_DAYS:
        raise Invalid("days", f"give 1 to {MAX_DAYS} days of history")
    tz = ZoneInfo(hall.timezone)
    today = business_day(uow.clock.now(), tz)
    window = Window(hall_id, today - timedelta(days=days), today, tz)
    no_history = f"in the last {days} days; run the hall for a while or use a scenario file"
    served = await recorded.service_times(uow, window)
    if not served:
        raise Invalid("history", f"hall {hall_id} has no served tickets {no_history}")
    services = await recorded.active_services(uow, hall_id)
    profiles = await recorded.counter_profiles(uow, hall_id, set(services))
    # A matter no counter serves would strand its visitors: it is left out.
    matters = {
        sid: row for sid, row in services.items() if any(sid in p for p in profiles.values())
    }
    if not matters:
        raise Invalid(
            "history",
            f"hall {hall_id} has no active matter that a counter serves; give its counters "
            "a profile or use a scenario file",
        )
    visits = _visits(await recorded.first_tickets(uow, window), matters, hall.priority_boosts)
    if visits.total == 0:
        raise Invalid("history", f"hall {hall_id} has no visits to its matters {no_history}")
    active_days, first_seen, last_seen = await recorded.business_days(uow, window)
    transfers = await recorded.transfers(uow, window)
    prefix = {sid: row.prefix for sid, row in matters.items()}
    built = []
    for sid, row in matters.items():
        onward = {prefix[to] for source, to in transfers if source == sid and to in prefix}
        share = visits.by_matter[sid] / visits.total
        built.append(_matter(row, share, served.get(sid), sorted(onward - {row.prefix})))
    day, hours = _next_opening_day(hall, today)
    bookings, punctuality = await _bookings(uow, window, matters, visits)
    typical = [row.prefix for sid, row in matters.items() if not _measured(served.get(sid))]
    left_out = sorted(row.prefix for sid, row in services.items() if sid not in matters)
    notes = [f"{visits.total} visits on {active_days} business days ({first_seen} to {last_seen})"]
    if typical:
        notes.append(
            f"typical minutes for {', '.join(typical)} (under {MIN_SERVICE_SAMPLES} served)"
        )
    if punctuality:
        notes.append(punctuality)
    if left_out:
        notes.append(f"left out {', '.join(left_out)} (no counter serves them)")
    notes.append("counters staffed all opening hours without breaks (not recorded)")
    transferred = sum(n for (source, _), n in transfers.items() if source in matters)
    # The simulator transfers a share of the visits of matters that have somewhere to go:
    # measure the share among those, so that it transfers as many as were recorded.
    onward_sources = {source for (source, to) in transfers if source in matters and to in prefix}
    can_transfer = sum(visits.by_matter[sid] for sid in onward_sources)
    return Scenario(
        name=f"hall {hall_id} history ({days} days)",
        description=f"measured over {days} days: " + "; ".join(notes),
        source=f"hall:{hall_id}",
        matters=tuple(built),
        counters=tuple(
            Counter(number, {prefix[sid]: level for sid, level in profile.items()})
            for number, profile in sorted(profiles.items())
        ),
        hours=hours,
        day=day,
        timezone=hall.timezone,
        load=None,
        visits=max(1, round(visits.total / active_days)),
        hourly=_hourly_profile(await recorded.walk_ins_by_hour(uow, window), active_days, hours),
        bookings=bookings,
        priority_share=sum(visits.priorities.values()) / max(1, visits.walk_ins),
        priority_classes=_shares(visits.priorities),
        transfer_share=transferred / can_transfer if can_transfer else 0.0,
        secondary_speed=1.0,
        priority_boosts=dict(hall.priority_boosts),
        secondary_after_minutes=hall.secondary_after_minutes,
    )


def _visits(
    rows: Iterable[tuple[int, str, str, int]],
    matters: Mapping[int, ServiceRow],
    boosts: Mapping[str, int],
) -> _Visits:
    visits = _Visits()
    for service_id, kind, priority, count in rows:
        if service_id not in matters:
            continue
        visits.by_matter[service_id] += count
        if kind == TicketKind.APPOINTMENT:
            visits.appointments += count
        elif kind == TicketKind.WALK_IN:
            visits.walk_ins += count
            if priority != NO_PRIORITY and priority in boosts:
                visits.priorities[priority] += count
    return visits


def _measured(served: Served | None) -> TypeGuard[Served]:
    return served is not None and served.count >= MIN_SERVICE_SAMPLES


def _matter(
    row: ServiceRow, share: float, served: Served | None, transfer_to: Iterable[str]
) -> Matter:
    """The matter with its measured service times, or its typical minutes when too few
    services were measured."""
    if _measured(served):
        service = ServiceTime(mean=max(0.1, served.mean), cv=min(5.0, served.cv))
    else:
        service = ServiceTime(mean=float(max(1, row.typical_minutes)), cv=FALLBACK_CV)
    return Matter(
        prefix=row.prefix,
        name=row.name_en,
        share=share,
        service=service,
        bookable=row.booking is not None,
        transfer_to=tuple(transfer_to),
        typical_minutes=row.typical_minutes,
    )


async def _bookings(
    uow: UnitOfWork, window: Window, matters: Mapping[int, ServiceRow], visits: _Visits
) -> tuple[Bookings, str]:
    """Bookings as measured (the rules: the first bookable matter's), and a note when the
    punctuality is the default one."""
    bookable = [(row.prefix, row.booking) for row in matters.values() if row.booking is not None]
    figures = await recorded.booking_figures(uow, window)
    defaults = Bookings()
    share, rules, no_show = 0.0, defaults.rules, defaults.no_show
    if bookable:
        prefix, stored = bookable[0]
        try:
            rules = rules_from_json(stored)
        except ValueError as exc:
            raise Invalid("booking", f"matter {prefix}'s stored rules: {exc}") from None
        share = visits.appointments / visits.total
    if figures.kept_or_missed:
        no_show = figures.no_shows / figures.kept_or_missed
    if figures.check_ins < MIN_CHECK_INS:
        note = f"default punctuality (under {MIN_CHECK_INS} check-ins)"
        return Bookings(share, rules, no_show, defaults.arrive_mean, defaults.arrive_sd), note
    return Bookings(share, rules, no_show, figures.arrive_mean, figures.arrive_sd), ""


def _next_opening_day(hall: HallRow, today: date) -> tuple[date, tuple[tuple[time, time], ...]]:
    week = OpeningHours.from_json(hall.opening_hours).week
    for offset in range(1, 8):
        day = today + timedelta(days=offset)
        periods = week.get(WEEKDAYS[day.weekday()], ())
        if periods:
            return day, tuple((p.start, p.end) for p in periods)
    raise Invalid("opening_hours", f"hall {hall.id} is open on no weekday; set its opening hours")


def _hourly_profile(
    walk_ins: Mapping[int, int], days: int, hours: Iterable[tuple[time, time]]
) -> dict[time, float]:
    """Walk-ins per day in each hour the hall is open, as weights averaging 1 (an hour with
    none gets 0, so nobody arrives then); empty (flat) when no walk-in was recorded."""
    open_hours = sorted({h for start, end in hours for h in range(start.hour, _hour_after(end))})
    per_day = {h: walk_ins.get(h, 0) / days for h in open_hours}
    mean = sum(per_day.values()) / len(per_day) if per_day else 0.0
    if mean <= 0:
        return {}
    return {time(h): round(rate / mean, 4) for h, rate in per_day.items()}


def _hour_after(end: time) -> int:
    """The first whole hour at or after ``end`` (24 for the end of the day)."""
    if end == time.max:
        return 24
    return end.hour + (1 if end.minute or end.second else 0)


def _shares(counts: Mapping[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    return {name: n / total for name, n in sorted(counts.items())} if total else {}
