"""What managers send and the database keeps: booking rules and the hall calendar as JSON,
and booking codes as people type or scanners read them."""

from __future__ import annotations

from datetime import date, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from booking.domain.calendar import HallCalendar
from booking.domain.codes import ALPHABET, CODE_LENGTH, new_code, normalise_code
from booking.domain.contact import mask_phone
from booking.domain.rules import BookingRules, LatePolicy, rules_from_json, rules_to_json
from queue_server.domain.hours import OpeningHours, Period


def test_rules_round_trip_through_their_stored_form() -> None:
    rules = BookingRules(
        slot_minutes=20, capacity=None, per_counter=3, walk_in_share=0.25, window_days=14,
        release_time=time(7, 30), cancel_cutoff=timedelta(hours=2), checkin_late=timedelta(0),
        late_policy=LatePolicy.SERVE_AS_DUE, remind_before=timedelta(hours=24),
    )  # fmt: skip
    stored = rules_to_json(rules)

    assert stored["release_time"] == "07:30"
    assert stored["cancel_cutoff_minutes"] == 120
    assert stored["late_policy"] == "serve_as_due"
    assert rules_from_json(stored) == rules


def test_missing_rules_take_the_defaults() -> None:
    assert rules_from_json({}) == BookingRules()
    assert rules_from_json({"capacity": 4}).capacity == 4


@pytest.mark.parametrize(
    ("data", "shown"),
    [
        ({"slot_length": 30}, "unknown booking setting 'slot_length'"),
        ({"capacity": "five"}, "capacity must be a whole number"),
        ({"walk_in_share": "30%"}, "walk_in_share must be a number from 0 to 1"),
        ({"release_time": "8am"}, "release_time '8am': write it as HH:MM"),
        ({"late_policy": "ignore"}, "late_policy 'ignore': use serve_as_due or walk_in"),
        ({"cancel_cutoff_minutes": 1.5}, "cancel_cutoff_minutes must be a whole number"),
        ({"checkin_late_minutes": -5}, "checkin late is negative"),
        ({"slot_minutes": 2}, "slot length 2 min: give 5 to 1440 minutes"),
        ({"max_per_day": True}, "max_per_day must be a whole number"),
    ],
)
def test_bad_rules_say_what_to_fix(data: dict[str, object], shown: str) -> None:
    with pytest.raises(ValueError, match=shown):
        rules_from_json(data)


HOURS = OpeningHours.from_json({"mon": [["09:00", "17:00"]]})


def test_the_calendar_round_trips() -> None:
    data = {
        "breaks": [["12:00", "13:30"]],
        "holidays": ["2026-10-01", "2026-10-02"],
        "special_days": {"2026-09-27": [["09:00", "12:00"]]},
    }
    calendar = HallCalendar.from_json(HOURS, data)

    assert calendar.breaks == (Period(time(12), time(13, 30)),)
    assert date(2026, 10, 1) in calendar.holidays
    assert calendar.to_json() == data
    assert HallCalendar.from_json(HOURS, {}).to_json() == {
        "breaks": [], "holidays": [], "special_days": {}
    }  # fmt: skip


@pytest.mark.parametrize(
    ("data", "shown"),
    [
        ({"holiday": []}, "unknown calendar entry 'holiday'"),
        ({"holidays": ["1 Oct"]}, "holidays: '1 Oct' is not a date; write it as YYYY-MM-DD"),
        ({"breaks": [["13:00", "12:00"]]}, "ends before it starts"),
        ({"breaks": [["12:00"]]}, "each period is \\[start, end\\]"),
        ({"breaks": [["11:00", "13:00"], ["12:00", "14:00"]]}, "breaks: periods overlap"),
        ({"holidays": ["2026-10-01"], "special_days": {"2026-10-01": []}}, "both a holiday"),
        ({"special_days": []}, "special_days: give"),
    ],
)
def test_a_bad_calendar_says_what_to_fix(data: dict[str, object], shown: str) -> None:
    with pytest.raises(ValueError, match=shown):
        HallCalendar.from_json(HOURS, data)


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("K7QM4XRT", "K7QM4XRT"),
        (" k7qm-4xrt ", "K7QM4XRT"),
        ("https://hall.example.org/b/K7QM4XRT", "K7QM4XRT"),
        ("https://hall.example.org/b/K7QM4XRT/", "K7QM4XRT"),
        ("K7QM4XR", None),  # one short
        ("K7QM4XR0", None),  # 0 is never in a code: refused, not guessed as O
        ("", None),
    ],
)
def test_codes_as_typed_or_scanned(typed: str, code: str | None) -> None:
    assert normalise_code(typed) == code


@given(st.randoms())
def test_every_new_code_reads_back(rng: object) -> None:
    code = new_code(rng.randrange)  # type: ignore[attr-defined]
    assert len(code) == CODE_LENGTH and set(code) <= set(ALPHABET)
    assert normalise_code(code.lower()) == code


def test_a_phone_on_a_shared_screen_is_masked() -> None:
    assert mask_phone("13800138000") == "138****8000"
    assert mask_phone(None) is None
