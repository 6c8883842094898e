"""Making a booking and each step after it: every rule, and what each refusal says."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from booking.domain import events as ev
from booking.domain.booking import (
    Booking,
    BookingState,
    CheckInResult,
    check_capacity,
    check_limits,
    make_booking,
)
from booking.domain.calendar import Slot
from booking.domain.errors import (
    CheckInClosed,
    CutoffPassed,
    DomainError,
    IllegalTransition,
    InvalidContact,
    LimitReached,
    NotYet,
    OutsideWindow,
    SlotFull,
)
from booking.domain.rules import BookingRules, LatePolicy

SHANGHAI = ZoneInfo("Asia/Shanghai")
HALL, PASSPORTS, RESIDENCE = 1, 10, 11
RULES = BookingRules(capacity=4, walk_in_share=0.25)  # 3 bookable places a slot
PHONE = "13800138000"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI)  # Monday


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment in March 2026 in Shanghai."""
    return datetime(2026, 3, day, hour, minute, tzinfo=SHANGHAI)


def slot(start: datetime, capacity: int = 4, bookable: int = 3) -> Slot:
    begins = start.astimezone(UTC)
    return Slot(begins, begins + timedelta(minutes=30), capacity, bookable)


TUESDAY_10 = slot(local(3, 10))


def book(
    at: Slot = TUESDAY_10,
    *,
    service_id: int = PASSPORTS,
    phone: str | None = PHONE,
    id_tail: str | None = None,
    code: str = "ABCD2345",
    now: datetime = NOW,
    rules: BookingRules = RULES,
    taken: int = 0,
    existing: Iterable[Booking] = (),
) -> Booking:
    return make_booking(
        hall_id=HALL,
        service_id=service_id,
        slot=at,
        name="王小明",
        phone=phone,
        id_tail=id_tail,
        code=code,
        now=now,
        tz=SHANGHAI,
        rules=rules,
        taken=taken,
        existing=existing,
    )


# --- making a booking ---------------------------------------------------------------------


def test_a_booking_keeps_clean_contact_details_and_records_that_it_was_made() -> None:
    booking = book(phone="+86 138-0013-8000", id_tail="11010519491231002x")

    assert (booking.phone, booking.id_tail, booking.state) == (PHONE, "002X", BookingState.BOOKED)
    assert booking.slot_start == local(3, 10)
    assert booking.timezone == "Asia/Shanghai"
    assert booking.events == [
        ev.BookingMade(HALL, NOW, "ABCD2345", PASSPORTS, local(3, 10).astimezone(UTC))
    ]
    assert booking.events[0].payload()["slot_start"] == "2026-03-03T02:00:00+00:00"


def test_a_booking_needs_a_valid_phone_number() -> None:
    with pytest.raises(InvalidContact, match="not a mainland China mobile number"):
        book(phone="12345")


def test_a_booking_outside_the_window_is_refused() -> None:
    with pytest.raises(OutsideWindow, match="2026-03-12 is not bookable yet"):
        book(slot(local(12, 10)))


def test_the_last_bookable_place_can_be_taken() -> None:
    assert book(taken=2).state == BookingState.BOOKED


def test_a_full_slot_is_refused_saying_how_many_places_and_that_walk_ins_keep_theirs() -> None:
    with pytest.raises(SlotFull) as refused:
        book(taken=3)

    assert str(refused.value) == (
        "the 10:00 slot on 2026-03-03 is fully booked (3 places; 1 more kept for walk-ins); "
        "choose another time"
    )


def test_a_slot_with_no_bookable_place_is_full_from_the_start() -> None:
    with pytest.raises(SlotFull, match=r"fully booked \(0 places; 1 more kept for walk-ins\)"):
        check_capacity(slot(local(3, 10), capacity=1, bookable=0), 0, SHANGHAI)


# --- per phone and per ID limits ----------------------------------------------------------


def test_one_active_booking_per_matter_names_the_one_held() -> None:
    held = book(slot(local(4, 9)), code="HELD2345")

    with pytest.raises(LimitReached) as refused:
        book(existing=[held])

    assert str(refused.value) == (
        "this phone number already has 1 active booking(s) for this matter, the most allowed "
        "is 1; use, reschedule or cancel booking HELD2345 (2026-03-04 09:00) first"
    )


def test_the_same_id_on_another_phone_counts_too() -> None:
    held = book(slot(local(4, 9)), phone="13900139000", id_tail="002X")

    with pytest.raises(LimitReached, match=r"^this ID already has 1 active booking"):
        book(id_tail="002x", existing=[held])


def test_other_peoples_bookings_do_not_count() -> None:
    someone_else = book(phone="13900139000", id_tail="1234")

    assert book(id_tail="002X", existing=[someone_else]).state == BookingState.BOOKED


def test_a_shared_id_tail_under_another_name_is_someone_else() -> None:
    # Four characters are shared by one person in ten thousand: a stranger with the same
    # tail on another phone must not use up this visitor's limit.
    stranger = book(slot(local(4, 9)), phone="13900139000", id_tail="002X")
    stranger.name = "李四"

    assert book(id_tail="002X", existing=[stranger]).state == BookingState.BOOKED


def test_another_matter_or_a_cancelled_or_used_booking_is_not_active() -> None:
    other_matter = book(service_id=RESIDENCE, code="OTHR2345")
    cancelled = book(slot(local(4, 9)), code="GONE2345")
    cancelled.cancel(NOW, RULES)
    used = replace(book(slot(local(2, 9, 30)), code="USED2345"), state=BookingState.CHECKED_IN)

    assert book(existing=[other_matter, cancelled, used]).state == BookingState.BOOKED


def test_three_bookings_a_day_at_most_cancelled_ones_aside() -> None:
    rules = replace(RULES, max_active_per_matter=5)
    same_day = [book(slot(local(3, h)), code=f"DAY{h}2345", rules=rules) for h in (9, 14, 15)]
    next_day = book(slot(local(4, 9)), rules=rules)

    with pytest.raises(LimitReached) as refused:
        book(rules=rules, existing=[*same_day, next_day])
    same_day[0].cancel(NOW, rules)

    assert str(refused.value) == (
        "this phone number already has 3 bookings on 2026-03-03, the most allowed in a day "
        "is 3; choose another day"
    )
    assert book(rules=rules, existing=[*same_day, next_day]).state == BookingState.BOOKED


def test_the_day_of_the_limit_is_the_halls_date() -> None:
    rules = replace(RULES, max_active_per_matter=5, max_per_day=1)
    early = slot(local(3, 7, 30))  # 2026-03-02 23:30 UTC: still Tuesday in the hall
    held = book(early, rules=rules)

    with pytest.raises(LimitReached, match="bookings on 2026-03-03"):
        check_limits(
            [held],
            phone=PHONE,
            id_tail=None,
            name="王小明",
            service_id=RESIDENCE,
            slot=TUESDAY_10,
            rules=rules,
            tz=SHANGHAI,
        )


# --- cancelling ---------------------------------------------------------------------------


def test_cancelling_before_the_cutoff_gives_the_place_back() -> None:
    booking = book()

    booking.cancel(local(3, 9), RULES)  # exactly one hour before: still allowed

    assert booking.state == BookingState.CANCELLED
    assert [e.name for e in booking.events] == ["BookingMade", "BookingCancelled"]


def test_cancelling_after_the_cutoff_says_when_it_closed() -> None:
    booking = book()

    with pytest.raises(CutoffPassed) as refused:
        booking.cancel(local(3, 9, 1), RULES)

    assert str(refused.value) == (
        "booking ABCD2345 can no longer be cancelled online: cancelling closed at 09:00, "
        "1 h before the 10:00 slot on 2026-03-03; if you cannot come, simply do not: "
        "the booking lapses"
    )
    assert booking.state == BookingState.BOOKED
    assert len(booking.events) == 1


def test_a_cancelled_booking_cannot_be_cancelled_again() -> None:
    booking = book()
    booking.cancel(NOW, RULES)

    with pytest.raises(
        IllegalTransition, match=r"^cannot cancel booking ABCD2345: it is cancelled$"
    ):
        booking.cancel(NOW, RULES)


# --- rescheduling -------------------------------------------------------------------------


def test_rescheduling_moves_the_booking_and_keeps_its_code() -> None:
    booking = book()
    later = slot(local(5, 14))

    booking.reschedule(later, NOW, RULES, taken=0, existing=[booking])

    assert booking.slot_start == later.start
    assert booking.code == "ABCD2345"
    assert booking.events[-1] == ev.BookingRescheduled(
        HALL, NOW, "ABCD2345", PASSPORTS, later.start, TUESDAY_10.start
    )


def test_rescheduling_after_its_cutoff_is_refused() -> None:
    booking = book()
    rules = replace(RULES, reschedule_cutoff=timedelta(hours=24))

    with pytest.raises(CutoffPassed) as refused:
        booking.reschedule(slot(local(5, 14)), local(2, 10, 1), rules, taken=0, existing=[])

    assert str(refused.value) == (
        "booking ABCD2345 can no longer be rescheduled online: rescheduling closed at 10:00, "
        "1 day before the 10:00 slot on 2026-03-03"
    )


def test_rescheduling_to_the_same_slot_asks_for_another_time() -> None:
    with pytest.raises(DomainError, match="is already for the 10:00 slot on 2026-03-03; choose"):
        book().reschedule(TUESDAY_10, NOW, RULES, taken=0, existing=[])


def test_rescheduling_checks_the_window_the_places_and_the_limits() -> None:
    booking = book()
    other = book(slot(local(4, 9)), service_id=RESIDENCE, code="OTHR2345")
    strict = replace(RULES, max_per_day=1)

    with pytest.raises(OutsideWindow):
        booking.reschedule(slot(local(20, 9)), NOW, RULES, taken=0, existing=[])
    with pytest.raises(SlotFull):
        booking.reschedule(slot(local(5, 9)), NOW, RULES, taken=3, existing=[])
    with pytest.raises(LimitReached, match="bookings on 2026-03-04"):
        booking.reschedule(slot(local(4, 11)), NOW, strict, taken=0, existing=[booking, other])
    assert booking.slot_start == TUESDAY_10.start
    assert len(booking.events) == 1


# --- checking in --------------------------------------------------------------------------


def test_check_in_before_the_window_says_when_it_opens() -> None:
    with pytest.raises(CheckInClosed) as refused:
        book().check_in(local(3, 9, 29), RULES)

    assert str(refused.value) == (
        "check-in for the 10:00 slot on 2026-03-03 opens at 09:30 (30 min before); "
        "please come back then"
    )


@pytest.mark.parametrize(
    "arrival", [local(3, 9, 30), local(3, 9, 59), local(3, 10), local(3, 10, 15)]
)
def test_within_the_window_the_visitor_is_due_at_the_slot(arrival: datetime) -> None:
    booking = book()

    result = booking.check_in(arrival, RULES)

    assert result == CheckInResult(due_at=TUESDAY_10.start, as_walk_in=False)
    assert booking.state == BookingState.CHECKED_IN
    assert booking.checked_in_at == arrival
    assert booking.events[-1] == ev.BookingCheckedIn(
        HALL, arrival, "ABCD2345", PASSPORTS, TUESDAY_10.start, TUESDAY_10.start, False
    )


def test_after_the_window_a_late_visitor_becomes_a_walk_in() -> None:
    booking = book()

    result = booking.check_in(local(3, 10, 16), RULES)

    assert result == CheckInResult(due_at=None, as_walk_in=True)
    assert booking.state == BookingState.EXPIRED_TO_WALK_IN


def test_a_hall_may_serve_late_visitors_as_due_anyway() -> None:
    lenient = replace(RULES, late_policy=LatePolicy.SERVE_AS_DUE)
    booking = book()

    result = booking.check_in(local(3, 16), lenient)

    assert result == CheckInResult(due_at=TUESDAY_10.start, as_walk_in=False)
    assert booking.state == BookingState.CHECKED_IN


def test_check_in_on_a_later_day_is_refused() -> None:
    lenient = replace(RULES, late_policy=LatePolicy.SERVE_AS_DUE)

    with pytest.raises(CheckInClosed) as refused:
        book().check_in(local(4, 9), lenient)

    assert str(refused.value) == (
        "booking ABCD2345 was for the 10:00 slot on 2026-03-03; take a walk-in ticket or book again"
    )


def test_a_booking_checks_in_once() -> None:
    booking = book()
    booking.check_in(local(3, 10), RULES)

    with pytest.raises(IllegalTransition) as refused:
        booking.check_in(local(3, 10, 1), RULES)

    assert str(refused.value) == (
        "cannot check in booking ABCD2345: it is checked_in; it is in the queue already"
    )


# --- no-shows -----------------------------------------------------------------------------


def test_a_no_show_only_after_the_late_window() -> None:
    booking = book()

    with pytest.raises(NotYet) as refused:
        booking.mark_no_show(local(3, 10, 15), RULES)
    booking.mark_no_show(local(3, 10, 16), RULES)

    assert str(refused.value) == (
        "booking ABCD2345 can be checked in until 10:15; mark it as a no-show after that"
    )
    assert booking.state == BookingState.NO_SHOW
    assert [e.name for e in booking.events] == ["BookingMade", "BookingMarkedNoShow"]


def test_after_a_no_show_the_visitor_is_sent_to_the_kiosk() -> None:
    booking = book()
    booking.mark_no_show(local(3, 11), RULES)

    with pytest.raises(IllegalTransition, match=r"it is no_show; take a walk-in ticket$"):
        booking.check_in(local(3, 11, 30), RULES)


def test_staff_may_book_for_a_visitor_without_a_phone() -> None:
    booking = book(phone=None, id_tail="110105194912310021")

    assert (booking.phone, booking.id_tail) == (None, "0021")


def test_without_a_phone_the_id_and_name_hold_the_limits() -> None:
    held = book(slot(local(4, 9)), phone=None, id_tail="0021")

    with pytest.raises(LimitReached, match=r"^this ID already has 1 active booking"):
        book(phone=None, id_tail="0021", existing=[held])
    # Another visitor without a phone is someone else.
    assert book(phone=None, id_tail="9999", existing=[held]).phone is None
