"""A hall's slot calendar: which slots a matter offers on a day, and how many places each has.

Slots are laid out on the hall's wall clock and then turned into UTC moments. On a
daylight-saving day the wall clock jumps, so, to keep every slot exactly ``slot_minutes``
long and every moment offered once:

- a local time that repeats (autumn) is read as its first occurrence (``fold=0``), so the
  repeated hour is offered once, never twice;
- a slot whose start or end does not exist (spring), or that would last more or less than
  ``slot_minutes`` of real time because it spans the jump, is not offered.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from queue_server.domain.hours import WEEKDAYS, OpeningHours, Period, parse_clock

from .capacity import SlotDemand
from .rules import BookingRules

DAY = timedelta(days=1)
SlotDemandOf = Callable[[datetime, datetime], SlotDemand]
"""What a slot from start to end can serve, and the walk-ins expected in it."""


@dataclass(frozen=True)
class Slot:
    """A bookable stretch of time; ``start`` and ``end`` are aware UTC datetimes."""

    start: datetime
    end: datetime
    capacity: int
    """Visitors the slot can take, walk-ins included."""
    bookable: int
    """Places open to booking: ``capacity`` less the walk-in share, never negative."""


def _offset(moment: time) -> timedelta:
    """Time since the day's midnight; ``time.max`` (24:00) is the whole day."""
    if moment == time.max:
        return DAY
    return timedelta(hours=moment.hour, minutes=moment.minute, seconds=moment.second)


def _check_periods(what: str, periods: Iterable[Period]) -> tuple[Period, ...]:
    ordered = tuple(sorted(periods, key=lambda p: p.start))
    for earlier, later in itertools.pairwise(ordered):
        if later.start < earlier.end:
            raise ValueError(f"{what}: periods overlap")
    return ordered


def _subtract(
    spans: list[tuple[timedelta, timedelta]], cut: tuple[timedelta, timedelta]
) -> list[tuple[timedelta, timedelta]]:
    kept = []
    for start, end in spans:
        if cut[1] <= start or end <= cut[0]:
            kept.append((start, end))
            continue
        if start < cut[0]:
            kept.append((start, cut[0]))
        if cut[1] < end:
            kept.append((cut[1], end))
    return kept


def _utc(wall: datetime, tz: ZoneInfo) -> datetime | None:
    """The UTC moment of naive hall wall time ``wall`` (first occurrence); None if skipped."""
    moment = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if moment.astimezone(tz).replace(tzinfo=None) != wall:
        return None
    return moment


@dataclass(frozen=True)
class HallCalendar:
    """When a hall takes bookings: weekly hours, daily breaks, holidays and special days.

    ``breaks`` (e.g. lunch) close the hall within each day of the weekly hours. A special
    day (a Saturday opened as a workday, a short day before a holiday) is given whole by its
    own periods, which replace the weekly hours and the breaks for that date. A date cannot
    be both a holiday and a special day.
    """

    hours: OpeningHours
    breaks: tuple[Period, ...] = ()
    holidays: frozenset[date] = frozenset()
    special_days: Mapping[date, tuple[Period, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        both = sorted(self.holidays & set(self.special_days))
        if both:
            listed = ", ".join(day.isoformat() for day in both)
            raise ValueError(
                f"{listed}: both a holiday and a special day; remove it from one of them"
            )
        for day, periods in self.special_days.items():
            _check_periods(f"special day {day.isoformat()}", periods)

    @classmethod
    def from_json(cls, hours: OpeningHours, data: Mapping[str, Any]) -> HallCalendar:
        """The calendar from the hall's hours and its stored booking calendar::

            {"breaks": [["12:00", "13:30"]], "holidays": ["2026-10-01"],
             "special_days": {"2026-09-27": [["09:00", "17:00"]]}}

        Raises ValueError naming what is wrong.
        """
        unknown = sorted(set(data) - {"breaks", "holidays", "special_days"})
        if unknown:
            raise ValueError(
                f"unknown calendar entry {unknown[0]!r}; use breaks, holidays, special_days"
            )
        breaks = _check_periods("breaks", _periods("breaks", data.get("breaks", [])))
        holidays = frozenset(_date(text, "holidays") for text in data.get("holidays", []))
        special = data.get("special_days", {})
        if not isinstance(special, Mapping):
            raise ValueError('special_days: give {"2026-09-27": [["09:00", "17:00"]], ...}')
        special_days = {
            _date(day, "special_days"): _periods(f"special day {day}", periods)
            for day, periods in special.items()
        }
        return cls(hours, breaks, holidays, special_days)

    def to_json(self) -> dict[str, Any]:
        def spans(periods: Iterable[Period]) -> list[list[str]]:
            return [[_clock_text(p.start), _clock_text(p.end)] for p in periods]

        return {
            "breaks": spans(self.breaks),
            "holidays": sorted(day.isoformat() for day in self.holidays),
            "special_days": {
                day.isoformat(): spans(periods)
                for day, periods in sorted(self.special_days.items())
            },
        }

    def open_spans(self, day: date) -> list[tuple[timedelta, timedelta]]:
        """The day's bookable stretches as offsets from its local midnight, in order."""
        if day in self.holidays:
            return []
        special = self.special_days.get(day)
        if special is not None:
            return [(_offset(p.start), _offset(p.end)) for p in sorted(special, key=_start)]
        periods = sorted(self.hours.week.get(WEEKDAYS[day.weekday()], ()), key=_start)
        spans = [(_offset(p.start), _offset(p.end)) for p in periods]
        for pause in self.breaks:
            spans = _subtract(spans, (_offset(pause.start), _offset(pause.end)))
        return spans

    def slots(
        self,
        day: date,
        rules: BookingRules,
        tz: ZoneInfo,
        counters: int = 0,
        throughput: float = 0.0,
        demand: SlotDemandOf | None = None,
    ) -> list[Slot]:
        """The matter's slots on the hall's local date ``day``, earliest first.

        Each slot lies inside one open stretch (never across a break or closing time: a slot
        that would end after closing is not offered) and lasts exactly ``rules.slot_minutes``
        of real time; see the module docstring for daylight-saving days. ``counters`` is the
        number of counters serving the matter and ``throughput`` the visitors they can serve
        in a slot, used when the rules derive the capacity (``BookingRules.raw_capacity``).
        With ``rules.target_load`` and a ``demand`` (what each slot's counters can serve and
        the share of their time the hall's plan leaves for bookings), places are planned
        slot by slot instead (``booking.domain.capacity``).
        """
        raw = rules.raw_capacity(counters, throughput)
        bookable = rules.bookable_capacity(raw)
        midnight = datetime.combine(day, time(0))
        found = []
        for span_start, span_end in self.open_spans(day):
            wall = midnight + span_start
            while wall + rules.slot_length <= midnight + span_end:
                start, end = _utc(wall, tz), _utc(wall + rules.slot_length, tz)
                if start is not None and end is not None and end - start == rules.slot_length:
                    found.append(Slot(start, end, raw, bookable))
                wall += rules.slot_length
        if rules.target_load is None or demand is None or rules.capacity is not None:
            return found
        planned = []
        for slot in found:
            need = demand(slot.start, slot.end)
            places = need.places
            planned.append(
                Slot(slot.start, slot.end, max(math.floor(need.throughput), places), places)
            )
        return planned

    def slot_at(
        self,
        start: datetime,
        rules: BookingRules,
        tz: ZoneInfo,
        counters: int = 0,
        throughput: float = 0.0,
        demand: SlotDemandOf | None = None,
    ) -> Slot | None:
        """The slot beginning at ``start`` (any aware datetime), or None if there is none."""
        day = start.astimezone(tz).date()
        found = self.slots(day, rules, tz, counters, throughput, demand)
        return next((s for s in found if s.start == start), None)


def _clock_text(moment: time) -> str:
    return "24:00" if moment == time.max else moment.strftime("%H:%M")


def _periods(what: str, data: Any) -> tuple[Period, ...]:
    if not isinstance(data, list | tuple):
        raise ValueError(f'{what}: give a list of [start, end] periods, e.g. [["12:00", "13:30"]]')
    found = []
    for period in data:
        if not isinstance(period, list | tuple) or len(period) != 2:
            raise ValueError(f"{what}: each period is [start, end], got {period!r}")
        found.append(Period(parse_clock(period[0]), parse_clock(period[1])))
    return tuple(found)


def _date(text: Any, what: str) -> date:
    try:
        return date.fromisoformat(str(text))
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a date; write it as YYYY-MM-DD") from None


def _start(period: Period) -> time:
    return period.start
