"""Opening hours, the business day, and what a closed hall tells a visitor."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from queue_server.domain.errors import HallClosed, UnknownPriority
from queue_server.domain.hours import OpeningHours, business_day
from queue_server.domain.model import Hall

SHANGHAI = ZoneInfo("Asia/Shanghai")
WORKDAY = [["08:30", "12:00"], ["13:30", "17:00"]]
WEEK = {day: WORKDAY for day in ("mon", "tue", "wed", "thu", "fri")}


def local(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A moment in March 2026 in Shanghai; 2 March 2026 is a Monday."""
    return datetime(2026, 3, day, hour, minute, second, tzinfo=SHANGHAI)


def hall(hours: dict[str, list[list[str]]] | None = None) -> Hall:
    return Hall(
        id=1,
        name_zh="市民中心",
        name_en="Citizen Centre",
        timezone="Asia/Shanghai",
        opening_hours=OpeningHours.from_json(WEEK if hours is None else hours),
    )


# --- reading the manager's form -----------------------------------------------------------


def test_from_json_reads_each_day_in_order_and_writes_it_back() -> None:
    hours = OpeningHours.from_json({"mon": [["13:30", "17:00"], ["08:30", "12:00"]]})

    assert hours.to_json() == {"mon": [["08:30", "12:00"], ["13:30", "17:00"]]}


def test_24_00_means_the_end_of_the_day_and_survives_a_round_trip() -> None:
    hours = OpeningHours.from_json({"sat": [["00:00", "24:00"]]})

    assert hours.to_json() == {"sat": [["00:00", "24:00"]]}


def test_periods_that_touch_do_not_overlap() -> None:
    hours = OpeningHours.from_json({"mon": [["08:30", "12:00"], ["12:00", "17:00"]]})

    assert hours.is_open(local(2, 12, 0))


@pytest.mark.parametrize("day", ["monday", "Mon", "sun ", "8"])
def test_a_bad_weekday_is_named_with_the_ones_to_use(day: str) -> None:
    with pytest.raises(ValueError) as bad:
        OpeningHours.from_json({day: WORKDAY})

    assert repr(day) in str(bad.value)
    assert "mon, tue, wed, thu, fri, sat, sun" in str(bad.value)


@pytest.mark.parametrize("clock", ["25:61", "24:30", "8", "08:30:00", "ab:cd", "", "08h30"])
def test_a_bad_time_is_named_with_the_format_to_use(clock: str) -> None:
    with pytest.raises(ValueError) as bad:
        OpeningHours.from_json({"mon": [["08:30", "12:00"], [clock, "17:00"]]})

    assert repr(clock) in str(bad.value)
    assert "HH:MM" in str(bad.value)


@pytest.mark.parametrize("period", [["08:30"], ["08:30", "12:00", "13:00"], []])
def test_a_period_must_be_a_start_and_an_end(period: list[str]) -> None:
    with pytest.raises(ValueError, match=r"tue: each period is \[start, end\]"):
        OpeningHours.from_json({"tue": [period]})


def test_overlapping_periods_are_refused_naming_the_day() -> None:
    with pytest.raises(ValueError, match=r"^wed: opening periods overlap"):
        OpeningHours.from_json({"mon": WORKDAY, "wed": [["08:30", "12:00"], ["11:30", "17:00"]]})


def test_a_period_inside_a_longer_one_overlaps() -> None:
    with pytest.raises(ValueError, match="fri: opening periods overlap"):
        OpeningHours.from_json(
            {"fri": [["08:00", "18:00"], ["09:00", "10:00"], ["13:00", "14:00"]]}
        )


@pytest.mark.parametrize(
    ("period", "shown"),
    [(["17:00", "08:30"], "17:00-08:30"), (["12:00", "12:00"], "12:00-12:00")],
)
def test_a_period_that_ends_before_it_starts_is_refused(period: list[str], shown: str) -> None:
    with pytest.raises(ValueError) as bad:
        OpeningHours.from_json({"thu": [period]})

    assert f"opening period {shown} ends before it starts" in str(bad.value)


# --- open or closed -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "is_open"),
    [
        (local(2, 8, 29, 59), False),
        (local(2, 8, 30), True),  # start is inclusive
        (local(2, 11, 59, 59), True),
        (local(2, 12, 0), False),  # end is exclusive
        (local(2, 13, 0), False),  # lunch
        (local(2, 16, 59), True),
        (local(6, 16, 59), True),  # Friday
        (local(7, 10, 0), False),  # Saturday
        (local(8, 10, 0), False),  # Sunday
    ],
)
def test_is_open_follows_the_periods(moment: datetime, is_open: bool) -> None:
    assert OpeningHours.from_json(WEEK).is_open(moment) is is_open


def test_a_period_to_24_00_is_open_until_midnight_only() -> None:
    hours = OpeningHours.from_json({"fri": [["20:00", "24:00"]]})

    assert hours.is_open(local(6, 23, 59, 59))
    assert not hours.is_open(local(7, 0, 0))
    assert not hours.is_open(local(6, 19, 59))


@pytest.mark.parametrize(
    ("moment", "opens"),
    [
        (local(2, 7, 0), local(2, 8, 30)),  # before the morning
        (local(2, 12, 30), local(2, 13, 30)),  # lunch
        (local(2, 8, 30), local(2, 13, 30)),  # strictly after: not the period just started
        (local(2, 17, 0), local(3, 8, 30)),  # evening: next morning
        (local(6, 17, 30), local(9, 8, 30)),  # Friday evening: Monday, across the weekend
        (local(8, 23, 59), local(9, 8, 30)),  # Sunday night
    ],
)
def test_next_opening_finds_the_next_start(moment: datetime, opens: datetime) -> None:
    assert OpeningHours.from_json(WEEK).next_opening(moment) == opens


def test_next_opening_a_week_ahead_when_open_one_day_only() -> None:
    hours = OpeningHours.from_json({"wed": [["09:00", "11:00"]]})

    assert hours.next_opening(local(4, 11, 0)) == local(11, 9, 0)


def test_next_opening_after_a_period_to_24_00_is_the_next_days_midnight() -> None:
    hours = OpeningHours.from_json({"fri": [["20:00", "24:00"]], "sat": [["00:00", "24:00"]]})

    assert hours.next_opening(local(6, 18, 0)) == local(6, 20, 0)
    assert hours.next_opening(local(6, 21, 0)) == local(7, 0, 0)
    assert hours.is_open(local(7, 0, 0))
    assert hours.next_opening(local(7, 12, 0)) == local(13, 20, 0)


def test_never_open_has_no_next_opening() -> None:
    assert OpeningHours.from_json({}).next_opening(local(2, 10, 0)) is None


# --- the business day ---------------------------------------------------------------------


def test_business_day_is_the_halls_date_not_utcs() -> None:
    assert business_day(datetime(2026, 3, 1, 16, 30, tzinfo=UTC), SHANGHAI) == date(2026, 3, 2)
    assert business_day(datetime(2026, 3, 1, 15, 59, tzinfo=UTC), SHANGHAI) == date(2026, 3, 1)


# --- the hall -----------------------------------------------------------------------------


def test_an_open_hall_lets_visitors_in() -> None:
    hall().check_open(datetime(2026, 3, 2, 2, 0, tzinfo=UTC))  # Monday 10:00 in Shanghai


def test_a_closed_hall_says_when_it_opens() -> None:
    with pytest.raises(HallClosed) as closed:
        hall().check_open(datetime(2026, 3, 1, 16, 30, tzinfo=UTC))  # Monday 00:30 local

    message = str(closed.value)
    assert "closed now (00:30 Asia/Shanghai)" in message
    assert "it opens Mon 2026-03-02 08:30" in message


def test_on_saturday_the_hall_points_to_monday() -> None:
    with pytest.raises(HallClosed, match="it opens Mon 2026-03-09 08:30"):
        hall().check_open(datetime(2026, 3, 7, 2, 0, tzinfo=UTC))


def test_a_hall_without_hours_says_it_is_closed() -> None:
    with pytest.raises(HallClosed) as closed:
        hall({}).check_open(datetime(2026, 3, 2, 2, 0, tzinfo=UTC))

    assert "closed now (10:00 Asia/Shanghai)" in str(closed.value)
    assert "opens" not in str(closed.value)


@pytest.mark.parametrize("priority", ["none", "elderly", "disability", "pregnancy"])
def test_the_default_priority_classes_are_known(priority: str) -> None:
    assert hall().check_priority(priority) == priority


def test_an_unknown_priority_class_is_refused_with_the_known_ones() -> None:
    with pytest.raises(UnknownPriority) as refused:
        hall().check_priority("vip")

    assert "'vip'" in str(refused.value)
    assert "none, disability, elderly, pregnancy" in str(refused.value)


def test_a_hall_defines_its_own_priority_classes() -> None:
    veterans_only = hall()
    veterans_only.priority_boosts = {"veteran": 10}

    assert veterans_only.check_priority("veteran") == "veteran"
    with pytest.raises(UnknownPriority, match="use one of: none, veteran"):
        veterans_only.check_priority("elderly")


@pytest.mark.parametrize(
    ("data", "shown"),
    [
        (None, "opening hours are"),
        ({"mon": None}, "mon: give a list"),
        ({"mon": [[8, 12]]}, "is not a time of day"),
        ({"mon": ["08:30-12:00"]}, "each period is [start, end]"),
    ],
)
def test_a_wrongly_shaped_form_is_a_value_error_saying_the_shape(data: object, shown: str) -> None:
    with pytest.raises(ValueError) as bad:
        OpeningHours.from_json(data)  # type: ignore[arg-type]

    assert shown in str(bad.value)


def test_a_stored_week_is_parsed_once_and_read_as_written() -> None:
    """Every issue and call reads its hall's row: the week it stores is parsed once, and
    what it gives is what parsing it gives."""
    from queue_server.db.repository import stored_hours

    stored = {day: [list(p) for p in periods] for day, periods in WEEK.items()}
    first = stored_hours(stored)
    assert first == OpeningHours.from_json(WEEK)
    assert stored_hours({day: [list(p) for p in ps] for day, ps in WEEK.items()}) is first
    other = stored_hours({**stored, "sat": [["09:00", "12:00"]]})
    assert other is not first and other.to_json()["sat"] == [["09:00", "12:00"]]


@pytest.mark.parametrize(
    ("stored", "said"),
    [({"mon": [["8h", "12:00"]]}, "is not a time of day"), ({"mon": [["08:00"]]}, "[start, end]"),
     ({"mon": "all day"}, "list of [start, end]"), ({"monday": []}, "is not a weekday")],
)  # fmt: skip
def test_a_stored_week_that_is_wrong_says_what_is_wrong(stored: Any, said: str) -> None:
    from queue_server.db.repository import stored_hours

    with pytest.raises(ValueError, match=re.escape(said)):
        stored_hours(stored)


def test_a_stored_period_that_is_not_a_start_and_an_end_is_refused() -> None:
    """Read from a row edited by hand, a period must still be a [start, end] list."""
    from queue_server.db.repository import stored_hours

    stored_hours({"mon": [["08:00", "12:00"]]})  # the same times, kept as a week
    for period in ({"08:00": 1, "12:00": 2}, "ab"):
        with pytest.raises(ValueError, match=re.escape("each period is [start, end]")):
            stored_hours({"mon": [period]})  # type: ignore[list-item]
