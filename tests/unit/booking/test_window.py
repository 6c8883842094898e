"""The booking window: days open for booking, the daily release, and what a refusal says."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from booking.domain.calendar import Slot
from booking.domain.errors import OutsideWindow
from booking.domain.rules import BookingRules
from booking.domain.window import bookable_days, check_bookable, release_moment

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
WEEK_AHEAD = BookingRules(window_days=7, release_time=time(8, 0), capacity=4)


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def slot_at(local: datetime) -> Slot:
    start = local.astimezone(UTC)
    return Slot(start, start + timedelta(minutes=30), capacity=4, bookable=4)


# --- which days: a Shanghai hall on a server that runs in UTC -----------------------------


def test_before_the_release_the_furthest_day_is_one_less() -> None:
    now = datetime(2026, 3, 1, 23, 59, tzinfo=UTC)  # Monday 2 March, 07:59 in Shanghai

    assert bookable_days(now, SHANGHAI, WEEK_AHEAD) == days(date(2026, 3, 2), date(2026, 3, 8))


def test_at_the_release_time_a_new_day_opens() -> None:
    now = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai

    assert bookable_days(now, SHANGHAI, WEEK_AHEAD) == days(date(2026, 3, 2), date(2026, 3, 9))


def test_the_window_follows_the_halls_midnight_not_utcs() -> None:
    before_midnight = datetime(2026, 3, 1, 15, 59, tzinfo=UTC)  # Sunday 23:59 in Shanghai
    after_midnight = datetime(2026, 3, 1, 16, 0, tzinfo=UTC)  # Monday 00:00 in Shanghai

    assert bookable_days(before_midnight, SHANGHAI, WEEK_AHEAD) == days(
        date(2026, 3, 1), date(2026, 3, 8)
    )
    assert bookable_days(after_midnight, SHANGHAI, WEEK_AHEAD) == days(
        date(2026, 3, 2), date(2026, 3, 8)
    )


def test_a_same_day_window_opens_today_at_the_release_time() -> None:
    same_day = BookingRules(window_days=0, release_time=time(7, 30))

    assert bookable_days(datetime(2026, 3, 1, 23, 29, tzinfo=UTC), SHANGHAI, same_day) == []
    assert bookable_days(datetime(2026, 3, 1, 23, 30, tzinfo=UTC), SHANGHAI, same_day) == [
        date(2026, 3, 2)
    ]


def test_the_release_stays_at_08_00_berlin_time_across_the_clock_change() -> None:
    assert release_moment(date(2026, 4, 3), BERLIN, WEEK_AHEAD) == datetime(
        2026, 3, 27, 7, 0, tzinfo=UTC
    )  # 08:00 CET
    assert release_moment(date(2026, 4, 6), BERLIN, WEEK_AHEAD) == datetime(
        2026, 3, 30, 6, 0, tzinfo=UTC
    )  # 08:00 CEST
    sunday_0759 = datetime(2026, 3, 29, 5, 59, tzinfo=UTC)

    assert bookable_days(sunday_0759, BERLIN, WEEK_AHEAD)[-1] == date(2026, 4, 4)
    assert bookable_days(sunday_0759 + timedelta(minutes=1), BERLIN, WEEK_AHEAD)[-1] == date(
        2026, 4, 5
    )


# --- is this slot bookable ----------------------------------------------------------------

MONDAY_0900 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai


def test_a_slot_inside_the_window_is_bookable() -> None:
    check_bookable(
        slot_at(datetime(2026, 3, 9, 16, 30, tzinfo=SHANGHAI)), MONDAY_0900, SHANGHAI, WEEK_AHEAD
    )


def test_a_slot_later_today_is_bookable() -> None:
    check_bookable(
        slot_at(datetime(2026, 3, 2, 9, 30, tzinfo=SHANGHAI)), MONDAY_0900, SHANGHAI, WEEK_AHEAD
    )


@pytest.mark.parametrize("minutes_ago", [0, 20, 60 * 24 * 3])
def test_a_slot_that_has_begun_is_refused(minutes_ago: int) -> None:
    start = datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI) - timedelta(minutes=minutes_ago)

    with pytest.raises(OutsideWindow) as refused:
        check_bookable(slot_at(start), MONDAY_0900, SHANGHAI, WEEK_AHEAD)

    assert "slot on" in str(refused.value)
    assert "has already begun; choose a later one" in str(refused.value)


def test_a_day_beyond_the_window_is_refused_naming_the_window_and_when_it_opens() -> None:
    with pytest.raises(OutsideWindow) as refused:
        check_bookable(
            slot_at(datetime(2026, 3, 12, 9, 0, tzinfo=SHANGHAI)), MONDAY_0900, SHANGHAI, WEEK_AHEAD
        )

    assert str(refused.value) == (
        "2026-03-12 is not bookable yet: each day opens 7 days ahead at 08:00 "
        "(Asia/Shanghai), this one on 2026-03-05 08:00; "
        "bookable now: 2026-03-02 to 2026-03-09"
    )


def test_a_same_day_window_before_its_release_says_nothing_is_bookable_yet() -> None:
    same_day = BookingRules(window_days=0, release_time=time(10, 0))

    with pytest.raises(OutsideWindow) as refused:
        check_bookable(
            slot_at(datetime(2026, 3, 2, 11, 0, tzinfo=SHANGHAI)), MONDAY_0900, SHANGHAI, same_day
        )

    assert "each day opens on the day at 10:00" in str(refused.value)
    assert str(refused.value).endswith("no day is bookable yet")
