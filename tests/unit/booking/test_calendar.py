"""A hall's slots: hours, lunch, closing time, holidays, special days, and clocks that jump."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from booking.domain.calendar import HallCalendar, Slot
from booking.domain.rules import BookingRules
from queue_server.domain.hours import WEEKDAYS, OpeningHours, Period

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
WORKWEEK = {day: [["08:30", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
LUNCH = Period(time(12, 0), time(13, 30))
MONDAY = date(2026, 3, 2)


def hall(**changes: object) -> HallCalendar:
    """Mon-Fri 08:30-17:00 with lunch 12:00-13:30; ``changes`` override any field."""
    fields: dict[str, object] = {"hours": OpeningHours.from_json(WORKWEEK), "breaks": (LUNCH,)}
    fields.update(changes)
    return HallCalendar(**fields)  # type: ignore[arg-type]


def clocks(slots: list[Slot], tz: ZoneInfo) -> list[str]:
    """Each slot as the hall's wall clock shows it, ``08:30-09:00``."""
    return [f"{s.start.astimezone(tz):%H:%M}-{s.end.astimezone(tz):%H:%M}" for s in slots]


def period(start: str, end: str) -> Period:
    return Period(time.fromisoformat(start), time.fromisoformat(end))


# --- a working day ------------------------------------------------------------------------


def test_slots_run_from_opening_to_closing_around_lunch() -> None:
    slots = hall().slots(MONDAY, BookingRules(slot_minutes=30, capacity=4), SHANGHAI)

    assert clocks(slots, SHANGHAI) == [
        "08:30-09:00", "09:00-09:30", "09:30-10:00", "10:00-10:30", "10:30-11:00",
        "11:00-11:30", "11:30-12:00",
        "13:30-14:00", "14:00-14:30", "14:30-15:00", "15:00-15:30", "15:30-16:00",
        "16:00-16:30", "16:30-17:00",
    ]  # fmt: skip


def test_slot_times_are_utc_moments_of_the_halls_clock() -> None:
    first = hall().slots(MONDAY, BookingRules(capacity=4), SHANGHAI)[0]

    assert first.start == datetime(2026, 3, 2, 0, 30, tzinfo=UTC)
    assert first.end == datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    assert first.start.tzinfo is UTC


def test_an_early_hall_in_shanghai_opens_on_the_previous_utc_date() -> None:
    early = hall(hours=OpeningHours.from_json({"mon": [["07:00", "09:00"]]}), breaks=())

    slots = early.slots(MONDAY, BookingRules(slot_minutes=60, capacity=1), SHANGHAI)

    assert [s.start for s in slots] == [
        datetime(2026, 3, 1, 23, 0, tzinfo=UTC),
        datetime(2026, 3, 2, 0, 0, tzinfo=UTC),
    ]


def test_a_slot_that_would_end_after_closing_time_is_not_offered() -> None:
    slots = hall().slots(MONDAY, BookingRules(slot_minutes=20, capacity=2), SHANGHAI)

    shown = clocks(slots, SHANGHAI)
    assert shown[-1] == "16:30-16:50"  # 16:50-17:10 would run past 17:00
    assert "16:50-17:10" not in shown
    assert not any(s.start.astimezone(SHANGHAI).time() >= time(17, 0) for s in slots)


def test_a_slot_ending_exactly_at_closing_time_is_offered() -> None:
    slots = hall().slots(MONDAY, BookingRules(slot_minutes=30, capacity=2), SHANGHAI)

    assert slots[-1].end == datetime(2026, 3, 2, 17, 0, tzinfo=SHANGHAI)


def test_no_slot_runs_into_lunch_and_slots_restart_after_it() -> None:
    slots = hall().slots(MONDAY, BookingRules(slot_minutes=45, capacity=2), SHANGHAI)

    assert clocks(slots, SHANGHAI) == [
        "08:30-09:15", "09:15-10:00", "10:00-10:45", "10:45-11:30",
        "13:30-14:15", "14:15-15:00", "15:00-15:45", "15:45-16:30",
    ]  # fmt: skip


def test_a_break_only_partly_inside_the_hours_cuts_what_it_covers() -> None:
    morning = hall(
        hours=OpeningHours.from_json({"mon": [["08:00", "10:00"]]}),
        breaks=(period("09:00", "11:00"),),
    )

    slots = morning.slots(MONDAY, BookingRules(slot_minutes=30, capacity=1), SHANGHAI)

    assert clocks(slots, SHANGHAI) == ["08:00-08:30", "08:30-09:00"]


def test_the_weekend_has_no_slots() -> None:
    assert hall().slots(date(2026, 3, 7), BookingRules(capacity=3), SHANGHAI) == []


def test_each_slot_carries_its_capacity_and_the_places_left_after_walk_ins() -> None:
    rules = BookingRules(per_counter=2, walk_in_share=0.3)

    slot = hall().slots(MONDAY, rules, SHANGHAI, counters=3)[0]

    assert (slot.capacity, slot.bookable) == (6, 4)


def test_slot_at_finds_a_slot_by_its_start_and_nothing_between_slots() -> None:
    calendar, rules = hall(), BookingRules(capacity=2)
    nine = datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI)

    found = calendar.slot_at(nine, rules, SHANGHAI)

    assert found is not None and found.start == nine
    assert calendar.slot_at(nine + timedelta(minutes=10), rules, SHANGHAI) is None
    assert calendar.slot_at(datetime(2026, 3, 2, 12, 30, tzinfo=SHANGHAI), rules, SHANGHAI) is None


# --- holidays and special days ------------------------------------------------------------


def test_a_holiday_has_no_slots() -> None:
    national_day = date(2026, 10, 1)  # a Thursday

    closed = hall(holidays=frozenset({national_day}))

    assert closed.slots(national_day, BookingRules(capacity=3), SHANGHAI) == []
    assert closed.slots(date(2026, 10, 8), BookingRules(capacity=3), SHANGHAI) != []


def test_a_special_day_opens_a_saturday_with_its_own_hours() -> None:
    saturday = date(2026, 9, 26)

    calendar = hall(special_days={saturday: (period("09:00", "11:00"),)})

    slots = calendar.slots(saturday, BookingRules(slot_minutes=60, capacity=3), SHANGHAI)
    assert clocks(slots, SHANGHAI) == ["09:00-10:00", "10:00-11:00"]


def test_a_special_day_replaces_the_weekly_hours_and_the_breaks() -> None:
    short_day = date(2026, 9, 30)  # a Wednesday before the National Day holidays

    calendar = hall(special_days={short_day: (period("11:00", "14:00"),)})

    slots = calendar.slots(short_day, BookingRules(slot_minutes=60, capacity=3), SHANGHAI)
    assert clocks(slots, SHANGHAI) == ["11:00-12:00", "12:00-13:00", "13:00-14:00"]


def test_a_date_cannot_be_both_a_holiday_and_a_special_day() -> None:
    day = date(2026, 10, 1)

    with pytest.raises(ValueError, match=r"^2026-10-01: both a holiday and a special day"):
        hall(holidays=frozenset({day}), special_days={day: (period("09:00", "12:00"),)})


def test_a_special_days_periods_must_not_overlap() -> None:
    day = date(2026, 9, 26)
    overlapping = (period("09:00", "12:00"), period("11:00", "13:00"))

    with pytest.raises(ValueError, match=r"^special day 2026-09-26: periods overlap"):
        hall(special_days={day: overlapping})


# --- clocks that jump: Europe/Berlin ------------------------------------------------------

ROUND_THE_CLOCK = OpeningHours.from_json({day: [["00:00", "24:00"]] for day in WEEKDAYS})
SPRING_FORWARD = date(2026, 3, 29)  # 02:00 CET becomes 03:00 CEST
FALL_BACK = date(2026, 10, 25)  # 03:00 CEST becomes 02:00 CET: 02:00-03:00 happens twice


def test_a_berlin_hall_keeps_its_wall_clock_across_the_spring_change() -> None:
    calendar, rules = hall(), BookingRules(capacity=2)

    friday = calendar.slots(date(2026, 3, 27), rules, BERLIN)[0]
    monday = calendar.slots(date(2026, 3, 30), rules, BERLIN)[0]

    assert friday.start == datetime(2026, 3, 27, 7, 30, tzinfo=UTC)  # 08:30 CET
    assert monday.start == datetime(2026, 3, 30, 6, 30, tzinfo=UTC)  # 08:30 CEST


def test_on_the_spring_day_no_slot_starts_or_ends_in_the_missing_hour() -> None:
    calendar = hall(hours=ROUND_THE_CLOCK, breaks=())

    slots = calendar.slots(SPRING_FORWARD, BookingRules(slot_minutes=60, capacity=1), BERLIN)

    starts = [f"{s.start.astimezone(BERLIN):%H:%M}" for s in slots]
    # 01:00-02:00 would end at a time that does not exist: it is not offered either.
    assert starts[:3] == ["00:00", "03:00", "04:00"]
    assert len(slots) == 22
    assert all(s.end - s.start == timedelta(hours=1) for s in slots)


def test_on_the_spring_day_a_slot_spanning_the_jump_is_not_offered() -> None:
    calendar = hall(hours=ROUND_THE_CLOCK, breaks=())

    slots = calendar.slots(SPRING_FORWARD, BookingRules(slot_minutes=90, capacity=1), BERLIN)

    # 01:30-03:00 on the wall clock would be 30 minutes long.
    assert clocks(slots, BERLIN)[:3] == ["00:00-01:30", "03:00-04:30", "04:30-06:00"]


def test_on_the_autumn_day_the_repeated_hour_is_offered_once() -> None:
    calendar = hall(hours=ROUND_THE_CLOCK, breaks=())

    slots = calendar.slots(FALL_BACK, BookingRules(slot_minutes=30, capacity=1), BERLIN)

    local = [s.start.astimezone(BERLIN) for s in slots]
    walls = [f"{moment:%H:%M}" for moment in local]
    assert walls[3:7] == ["01:30", "02:00", "03:00", "03:30"]
    assert len(walls) == len(set(walls))  # no wall time twice
    assert all(moment.fold == 0 for moment in local)  # the second 02:xx is never used
    assert all(s.end - s.start == timedelta(minutes=30) for s in slots)
    # 02:30-03:00 on the wall clock lasts 90 minutes that night: not offered.
    assert slots[4].start == datetime(2026, 10, 25, 0, 0, tzinfo=UTC)
    assert slots[5].start == datetime(2026, 10, 25, 2, 0, tzinfo=UTC)


def test_a_normal_berlin_hall_is_untouched_by_the_autumn_night() -> None:
    saturday_open = hall(special_days={date(2026, 10, 24): (period("09:00", "12:00"),)})
    rules = BookingRules(slot_minutes=60, capacity=1)

    assert clocks(saturday_open.slots(date(2026, 10, 24), rules, BERLIN), BERLIN) == [
        "09:00-10:00",
        "10:00-11:00",
        "11:00-12:00",
    ]
    assert saturday_open.slots(date(2026, 10, 26), rules, BERLIN)[0].start == datetime(
        2026, 10, 26, 7, 30, tzinfo=UTC
    )


# --- properties over any hours ------------------------------------------------------------

ZONES = st.sampled_from(
    [ZoneInfo(k) for k in ("UTC", "Asia/Shanghai", "Europe/Berlin", "America/New_York")]
)
DAYS = st.sampled_from(
    [MONDAY, SPRING_FORWARD, FALL_BACK, date(2026, 3, 8), date(2026, 11, 1), date(2026, 6, 15)]
)


def _clock(quarter: int) -> time:
    return time.max if quarter == 96 else time(quarter // 4, quarter % 4 * 15)


@st.composite
def periods(draw: st.DrawFn, most: int) -> tuple[Period, ...]:
    """Up to ``most`` non-overlapping periods on quarter hours, 24:00 allowed."""
    edges = sorted(draw(st.sets(st.integers(0, 96), max_size=2 * most)))
    if len(edges) % 2:
        edges = edges[:-1]
    return tuple(Period(_clock(a), _clock(b)) for a, b in zip(edges[::2], edges[1::2], strict=True))


@st.composite
def calendars(draw: st.DrawFn, day: date) -> HallCalendar:
    hours = OpeningHours({WEEKDAYS[day.weekday()]: draw(periods(most=3))})
    special = {day: draw(periods(most=2))} if draw(st.booleans()) else {}
    return HallCalendar(hours, breaks=draw(periods(most=2)), special_days=special)


def _offset(moment: time) -> timedelta:
    if moment == time.max:
        return timedelta(days=1)
    return timedelta(hours=moment.hour, minutes=moment.minute)


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    day=DAYS,
    tz=ZONES,
    minutes=st.sampled_from([5, 15, 20, 30, 45, 60, 90, 240]),
    capacity=st.integers(0, 20),
    share=st.floats(0, 1),
)
def test_slots_never_overlap_nor_cross_a_break_or_closing_time(
    data: st.DataObject,
    day: date,
    tz: ZoneInfo,
    minutes: int,
    capacity: int,
    share: float,
) -> None:
    calendar = data.draw(calendars(day))
    rules = BookingRules(slot_minutes=minutes, capacity=capacity, walk_in_share=share)

    slots = calendar.slots(day, rules, tz)

    special = calendar.special_days.get(day)
    opening = special if special is not None else calendar.hours.week[WEEKDAYS[day.weekday()]]
    breaks = () if special is not None else calendar.breaks
    midnight = datetime.combine(day, time(0))
    for earlier, later in itertools.pairwise(slots):
        assert earlier.end <= later.start
    for slot in slots:
        assert slot.end - slot.start == rules.slot_length
        assert 0 <= slot.bookable <= slot.capacity == capacity
        begins = slot.start.astimezone(tz).replace(tzinfo=None) - midnight
        ends = slot.end.astimezone(tz).replace(tzinfo=None) - midnight
        assert ends - begins == rules.slot_length  # the wall clock agrees: no jump inside
        assert any(_offset(p.start) <= begins and ends <= _offset(p.end) for p in opening)
        assert all(ends <= _offset(b.start) or _offset(b.end) <= begins for b in breaks)
