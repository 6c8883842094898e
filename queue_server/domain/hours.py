"""Opening hours of a hall, in the hall's own timezone, and its business day."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def business_day(now: datetime, tz: ZoneInfo) -> date:
    """The hall's calendar date at ``now``: numbering restarts on each new one."""
    return now.astimezone(tz).date()


def parse_clock(text: str) -> time:
    """Parse ``HH:MM`` (``24:00`` means the end of the day) or raise ValueError saying so."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a time of day; write it as HH:MM, e.g. 08:30")
    if text == "24:00":
        return time.max
    try:
        hour, minute = text.split(":")
        return time(int(hour), int(minute))
    except ValueError:
        raise ValueError(f"{text!r} is not a time of day; write it as HH:MM, e.g. 08:30") from None


@dataclass(frozen=True)
class Period:
    """One stretch of opening on a day, start inclusive, end exclusive."""

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(
                f"opening period {self.start:%H:%M}-{self.end:%H:%M} ends before it starts"
            )

    def contains(self, moment: time) -> bool:
        return self.start <= moment < self.end


@dataclass(frozen=True)
class OpeningHours:
    """Weekly opening hours: weekday name (``mon``..``sun``) to its periods."""

    week: Mapping[str, tuple[Period, ...]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Sequence[Sequence[str]]]) -> OpeningHours:
        """Build from ``{"mon": [["08:30", "12:00"], ["13:30", "17:00"]], ...}``.

        Raises ValueError naming the bad day or time.
        """
        if not isinstance(data, Mapping):
            raise ValueError('opening hours are {"mon": [["08:30", "12:00"], ...], ...}')
        week: dict[str, tuple[Period, ...]] = {}
        for day, periods in data.items():
            if day not in WEEKDAYS:
                raise ValueError(f"{day!r} is not a weekday; use one of {', '.join(WEEKDAYS)}")
            if not isinstance(periods, list | tuple):
                raise ValueError(f"{day}: give a list of [start, end] periods")
            parsed = []
            for period in periods:
                if not isinstance(period, list | tuple) or len(period) != 2:
                    raise ValueError(f"{day}: each period is [start, end], got {list(period)}")
                parsed.append(Period(parse_clock(period[0]), parse_clock(period[1])))
            parsed.sort(key=lambda p: p.start)
            for earlier, later in itertools.pairwise(parsed):
                if later.start < earlier.end:
                    raise ValueError(f"{day}: opening periods overlap")
            week[day] = tuple(parsed)
        return cls(week)

    def to_json(self) -> dict[str, list[list[str]]]:
        def clock(t: time) -> str:
            return "24:00" if t == time.max else t.strftime("%H:%M")

        return {
            day: [[clock(p.start), clock(p.end)] for p in periods]
            for day, periods in self.week.items()
        }

    def is_open(self, local: datetime) -> bool:
        """Whether the hall is open at ``local`` (a datetime in the hall's timezone)."""
        periods = self.week.get(WEEKDAYS[local.weekday()], ())
        return any(p.contains(local.time()) for p in periods)

    def next_opening(self, local: datetime) -> datetime | None:
        """The next moment, after ``local``, at which a period starts; None if never open."""
        for offset in range(8):
            day = local.date() + timedelta(days=offset)
            for period in self.week.get(WEEKDAYS[day.weekday()], ()):
                start = datetime.combine(day, period.start, tzinfo=local.tzinfo)
                if start > local:
                    return start
        return None
