"""A matter's booking rules: capacity, the walk-in share, and refusing nonsense settings."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from booking.domain.rules import BookingRules, LatePolicy, describe


def test_a_fixed_capacity_ignores_the_counters() -> None:
    assert BookingRules(capacity=6).raw_capacity(counters=3) == 6


def test_capacity_is_derived_from_the_counters_serving_the_matter() -> None:
    rules = BookingRules(per_counter=2)

    assert rules.raw_capacity(counters=3) == 6
    assert rules.raw_capacity(counters=0) == 0


@pytest.mark.parametrize(
    ("raw", "share", "bookable"),
    [
        (10, 0.0, 10),
        (10, 0.3, 7),
        (10, 0.25, 7),  # 7.5 rounds down: the half place goes to walk-ins
        (100, 0.57, 43),  # the decimal the manager wrote, not 0.5699999…
        (100, 0.29, 71),
        (1, 0.1, 0),  # one place and any share: nothing to book
        (5, 1.0, 0),
        (0, 0.3, 0),
    ],
)
def test_the_walk_in_share_is_held_back_rounding_bookings_down(
    raw: int, share: float, bookable: int
) -> None:
    assert BookingRules(walk_in_share=share).bookable_capacity(raw) == bookable


@given(raw=st.integers(0, 500), share=st.floats(0, 1))
def test_bookable_places_are_between_zero_and_the_capacity(raw: int, share: float) -> None:
    bookable = BookingRules(walk_in_share=share).bookable_capacity(raw)

    assert 0 <= bookable <= raw
    assert raw - bookable >= raw * share - 1e-9  # walk-ins get at least their share


@pytest.mark.parametrize(
    ("setting", "shown"),
    [
        ({"slot_minutes": 0}, "slot length 0 min: give 5 to 1440 minutes"),
        ({"capacity": -1}, "capacity -1: give 0 or more"),
        ({"per_counter": -2}, "per-counter capacity -2"),
        ({"walk_in_share": 1.5}, "walk-in share 1.5: give a share from 0 to 1"),
        ({"walk_in_share": -0.1}, "walk-in share -0.1"),
        ({"window_days": -1}, "booking window -1 days"),
        ({"cancel_cutoff": timedelta(minutes=-5)}, "cancel cutoff is negative"),
        ({"checkin_late": timedelta(minutes=-1)}, "checkin late is negative"),
        ({"max_per_day": 0}, "must allow at least 1 booking"),
        ({"late_policy": "ignore"}, "late policy 'ignore': use serve_as_due or walk_in"),
    ],
)
def test_nonsense_settings_are_refused_saying_what_to_give(
    setting: dict[str, Any], shown: str
) -> None:
    with pytest.raises(ValueError) as bad:
        BookingRules(**setting)

    assert shown in str(bad.value)


def test_the_late_policy_can_be_given_as_its_name() -> None:
    assert BookingRules(late_policy="serve_as_due").late_policy == LatePolicy.SERVE_AS_DUE  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("span", "words"),
    [
        (timedelta(minutes=30), "30 min"),
        (timedelta(hours=2), "2 h"),
        (timedelta(minutes=90), "1 h 30 min"),
        (timedelta(days=1), "1 day"),
        (timedelta(days=7), "7 days"),
        (timedelta(0), "0 min"),
    ],
)
def test_durations_are_told_in_the_halls_words(span: timedelta, words: str) -> None:
    assert describe(span) == words
