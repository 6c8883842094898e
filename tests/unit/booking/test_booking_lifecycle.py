"""Any sequence of actions on a booking, as the clock moves on: a table predicts each answer."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from booking.domain import events as ev
from booking.domain.booking import FINAL_STATES, Booking, BookingState, make_booking
from booking.domain.calendar import Slot
from booking.domain.errors import DomainError, IllegalTransition
from booking.domain.rules import BookingRules, LatePolicy
from booking.domain.window import bookable_days

SHANGHAI = ZoneInfo("Asia/Shanghai")
RULES = BookingRules(capacity=4, walk_in_share=0.25)
MADE_AT = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # Monday 09:00 in Shanghai
FIRST_SLOT = datetime(2026, 3, 3, 2, 0, tzinfo=UTC)  # Tuesday 10:00

EVENT_OF = {
    "cancel": ev.BookingCancelled,
    "reschedule": ev.BookingRescheduled,
    "check_in": ev.BookingCheckedIn,
    "mark_no_show": ev.BookingMarkedNoShow,
}
# Where the clock stands once the booking is made: the day before, around check-in, late.
HEAD_STARTS = st.sampled_from(
    [timedelta(0), FIRST_SLOT - MADE_AT - timedelta(minutes=45), FIRST_SLOT - MADE_AT]
)


def slot(start: datetime) -> Slot:
    return Slot(start, start + timedelta(minutes=30), capacity=4, bookable=3)


def local_day(moment: datetime) -> date:
    return moment.astimezone(SHANGHAI).date()


class BookingMachine(RuleBasedStateMachine):
    """One booking, a clock that only moves forward, and every action at any time."""

    @initialize(head_start=HEAD_STARTS)
    def make(self, head_start: timedelta) -> None:
        self.now = MADE_AT
        self.booking = make_booking(
            hall_id=1,
            service_id=10,
            slot=slot(FIRST_SLOT),
            name="王小明",
            phone="13800138000",
            id_tail=None,
            code="ABCD2345",
            now=self.now,
            tz=SHANGHAI,
            rules=RULES,
            taken=0,
            existing=[],
        )
        self.transitions = 0
        self.now += head_start

    @precondition(lambda self: self.booking.state in FINAL_STATES)
    @rule(head_start=HEAD_STARTS)
    def next_booking(self, head_start: timedelta) -> None:
        """Most runs end a booking early; a fresh one explores the rest again."""
        self.make(head_start)

    @rule(minutes=st.sampled_from([1, 14, 15, 16, 29, 31, 60, 61, 6 * 60, 24 * 60]))
    def wait(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)

    def attempt(self, action: str, allowed: bool, run: Callable[[], object]) -> None:
        booking = self.booking
        before = copy.deepcopy(booking)
        if before.state == BookingState.BOOKED and allowed:
            event(f"{action}: done")
            run()
            self.transitions += 1
            assert type(booking.events[-1]) is EVENT_OF[action]
            assert booking.events[-1].at == self.now
            return
        event(f"{action}: refused")
        try:
            run()
        except DomainError as refused:
            if before.state != BookingState.BOOKED:
                assert type(refused) is IllegalTransition, refused
                assert f"it is {before.state.value}" in str(refused)
            else:
                assert type(refused) is not IllegalTransition, refused
        else:
            raise AssertionError(f"{action} at {self.now} in {before.state} passed")
        assert booking == before
        assert len(booking.events) == len(before.events)

    @rule()
    def cancel(self) -> None:
        start = self.booking.slot_start
        allowed = self.now <= start - RULES.cancel_cutoff
        self.attempt("cancel", allowed, lambda: self.booking.cancel(self.now, RULES))
        if allowed and self.booking.state == BookingState.CANCELLED:
            assert self.booking.slot_start == start

    @rule(
        shift=st.sampled_from(
            [timedelta(0), timedelta(hours=1), timedelta(days=1), timedelta(days=10)]
        )
    )
    def reschedule(self, shift: timedelta) -> None:
        start = self.booking.slot_start
        target = start + shift
        allowed = (
            self.now <= start - RULES.reschedule_cutoff
            and target != start
            and target > self.now
            and local_day(target) in bookable_days(self.now, SHANGHAI, RULES)
        )
        self.attempt(
            "reschedule",
            allowed,
            lambda: self.booking.reschedule(slot(target), self.now, RULES, taken=0, existing=[]),
        )
        if allowed and self.booking.slot_start != start:
            assert self.booking.slot_start == target

    @rule(policy=st.sampled_from(LatePolicy))
    def check_in(self, policy: LatePolicy) -> None:
        rules = replace(RULES, late_policy=policy)
        start = self.booking.slot_start
        allowed = self.now >= start - rules.checkin_early and local_day(self.now) <= local_day(
            start
        )
        was_booked = self.booking.state == BookingState.BOOKED
        self.attempt("check_in", allowed, lambda: self.booking.check_in(self.now, rules))
        if allowed and was_booked:
            late = self.now > start + rules.checkin_late
            if late and policy == LatePolicy.WALK_IN:
                assert self.booking.state == BookingState.EXPIRED_TO_WALK_IN
                assert self.booking.due_at is None
            else:
                assert self.booking.state == BookingState.CHECKED_IN
                assert self.booking.due_at == start

    @rule()
    def mark_no_show(self) -> None:
        allowed = self.now > self.booking.slot_start + RULES.checkin_late
        self.attempt("mark_no_show", allowed, lambda: self.booking.mark_no_show(self.now, RULES))

    @invariant()
    def every_change_is_one_event_in_order(self) -> None:
        booking: Booking = self.booking
        assert len(booking.events) == 1 + self.transitions
        assert type(booking.events[0]) is ev.BookingMade
        assert [e.at for e in booking.events] == sorted(e.at for e in booking.events)

    @invariant()
    def a_final_booking_recorded_its_ending_last(self) -> None:
        ending = {
            BookingState.CANCELLED: ev.BookingCancelled,
            BookingState.NO_SHOW: ev.BookingMarkedNoShow,
            BookingState.CHECKED_IN: ev.BookingCheckedIn,
            BookingState.EXPIRED_TO_WALK_IN: ev.BookingCheckedIn,
        }
        if self.booking.state in FINAL_STATES:
            assert type(self.booking.events[-1]) is ending[self.booking.state]


BookingMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
test_booking_lifecycle = BookingMachine.TestCase
