"""A booking's life: made, then checked in, cancelled, missed or turned into a walk-in.

Each state change is a method that checks the state and the time, changes the booking, and
records an event in ``events``; a change the state does not allow raises
``IllegalTransition``, one that comes too early or too late raises the error saying when.
Once checked in, the visit goes on as a ticket in the queue.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from queue_server.domain.events import Event

from . import events as ev
from .calendar import Slot
from .contact import normalise_id_tail, normalise_name, normalise_phone
from .errors import (
    CheckInClosed,
    CutoffPassed,
    DomainError,
    IllegalTransition,
    LimitReached,
    NotYet,
    SlotFull,
)
from .rules import BookingRules, LatePolicy, describe
from .window import check_bookable


class BookingState(StrEnum):
    BOOKED = "booked"
    CHECKED_IN = "checked_in"
    CANCELLED = "cancelled"
    NO_SHOW = "no_show"
    EXPIRED_TO_WALK_IN = "expired_to_walk_in"


FINAL_STATES = frozenset(set(BookingState) - {BookingState.BOOKED})
# A day's bookings, for the per-day limit: every one but those given back.
COUNTED_PER_DAY = frozenset(set(BookingState) - {BookingState.CANCELLED})


@dataclass(frozen=True)
class CheckInResult:
    """How the visitor joins the queue: due at ``due_at``, or as a walk-in (``due_at`` None)."""

    due_at: datetime | None
    as_walk_in: bool


@dataclass
class Booking:
    """One visitor's appointment for one matter at one slot, named by its ``code``."""

    hall_id: int
    service_id: int
    slot_start: datetime
    name: str
    phone: str | None
    """None for a booking staff made for a visitor without a phone."""
    code: str
    timezone: str
    """The hall's, for telling the visitor times on its clock."""
    made_at: datetime
    id_tail: str | None = None
    id: int | None = None
    state: BookingState = BookingState.BOOKED
    checked_in_at: datetime | None = None
    due_at: datetime | None = None
    events: list[Event] = field(default_factory=list, repr=False, compare=False)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def label(self) -> str:
        return f"booking {self.code}"

    @property
    def day(self) -> date:
        """The hall date of the slot."""
        return self.slot_start.astimezone(self.tz).date()

    def _clock(self, moment: datetime) -> str:
        return f"{moment.astimezone(self.tz):%H:%M}"

    def _when(self) -> str:
        return f"the {self._clock(self.slot_start)} slot on {self.day.isoformat()}"

    def _require(self, action: str, hint: str = "") -> None:
        if self.state != BookingState.BOOKED:
            raise IllegalTransition(self.label, action, str(self.state), hint)

    def _record(self, event_type: type[ev.BookingEvent], now: datetime) -> None:
        self.events.append(
            event_type(self.hall_id, now, self.code, self.service_id, self.slot_start)
        )

    def cancel(self, now: datetime, rules: BookingRules) -> None:
        """Give the place back; allowed until ``rules.cancel_cutoff`` before the slot."""
        self._require("cancel")
        closes = self.slot_start - rules.cancel_cutoff
        if now > closes:
            raise CutoffPassed(
                f"{self.label} can no longer be cancelled online: cancelling closed at "
                f"{self._clock(closes)}, {describe(rules.cancel_cutoff)} before {self._when()}; "
                "if you cannot come, simply do not: the booking lapses"
            )
        self.state = BookingState.CANCELLED
        self._record(ev.BookingCancelled, now)

    def reschedule(
        self,
        new_slot: Slot,
        now: datetime,
        rules: BookingRules,
        *,
        taken: int,
        existing: Iterable[Booking],
    ) -> None:
        """Move to ``new_slot`` (same hall and matter), keeping the code.

        Allowed until ``rules.reschedule_cutoff`` before the current slot, to a different
        slot inside the booking window with a free place (``taken`` are booked already) and
        within the visitor's limits (``existing``: their other bookings; this one is ignored).
        """
        self._require("reschedule")
        closes = self.slot_start - rules.reschedule_cutoff
        if now > closes:
            raise CutoffPassed(
                f"{self.label} can no longer be rescheduled online: rescheduling closed at "
                f"{self._clock(closes)}, {describe(rules.reschedule_cutoff)} before "
                f"{self._when()}"
            )
        if new_slot.start == self.slot_start:
            raise DomainError(f"{self.label} is already for {self._when()}; choose another time")
        check_bookable(new_slot, now, self.tz, rules)
        check_capacity(new_slot, taken, self.tz)
        check_limits(
            existing,
            phone=self.phone,
            id_tail=self.id_tail,
            name=self.name,
            service_id=self.service_id,
            slot=new_slot,
            rules=rules,
            tz=self.tz,
            ignore_code=self.code,
        )
        moved_from = self.slot_start
        self.slot_start = new_slot.start
        self.events.append(
            ev.BookingRescheduled(
                self.hall_id, now, self.code, self.service_id, self.slot_start, moved_from
            )
        )

    def check_in(self, now: datetime, rules: BookingRules) -> CheckInResult:
        """The visitor is in the hall: say how they join the queue.

        From ``checkin_early`` before the slot to ``checkin_late`` after its start they are
        due at the slot time (the queue calls due appointments ahead of walk-ins, and early
        ones once due). Later that day, ``rules.late_policy`` decides: served as due anyway,
        or the booking expires and they queue as a walk-in from now. Not before the window
        opens, and not after the slot's day.
        """
        queued = self.state in (BookingState.CHECKED_IN, BookingState.EXPIRED_TO_WALK_IN)
        self._require(
            "check in", "it is in the queue already" if queued else "take a walk-in ticket"
        )
        opens = self.slot_start - rules.checkin_early
        if now < opens:
            raise CheckInClosed(
                f"check-in for {self._when()} opens at {self._clock(opens)} "
                f"({describe(rules.checkin_early)} before); please come back then"
            )
        if now.astimezone(self.tz).date() > self.day:
            raise CheckInClosed(
                f"{self.label} was for {self._when()}; take a walk-in ticket or book again"
            )
        late = now > self.slot_start + rules.checkin_late
        as_walk_in = late and rules.late_policy == LatePolicy.WALK_IN
        self.checked_in_at = now
        if as_walk_in:
            self.state = BookingState.EXPIRED_TO_WALK_IN
            self.due_at = None
        else:
            self.state = BookingState.CHECKED_IN
            self.due_at = self.slot_start
        self.events.append(
            ev.BookingCheckedIn(
                self.hall_id,
                now,
                self.code,
                self.service_id,
                self.slot_start,
                self.due_at,
                as_walk_in,
            )
        )
        return CheckInResult(self.due_at, as_walk_in)

    def mark_no_show(self, now: datetime, rules: BookingRules) -> None:
        """The visitor did not come: only once the late check-in window has passed."""
        self._require("mark as no-show")
        until = self.slot_start + rules.checkin_late
        if now <= until:
            raise NotYet(
                f"{self.label} can be checked in until {self._clock(until)}; "
                "mark it as a no-show after that"
            )
        self.state = BookingState.NO_SHOW
        self._record(ev.BookingMarkedNoShow, now)


def check_capacity(slot: Slot, taken: int, tz: ZoneInfo) -> None:
    """Return if ``slot`` has a bookable place left with ``taken`` booked, else ``SlotFull``."""
    if taken < slot.bookable:
        return
    local = slot.start.astimezone(tz)
    held = slot.capacity - slot.bookable
    walk_ins = f"; {held} more kept for walk-ins" if held else ""
    raise SlotFull(
        f"the {local:%H:%M} slot on {local:%Y-%m-%d} is fully booked "
        f"({slot.bookable} places{walk_ins}); choose another time"
    )


def check_limits(
    existing: Iterable[Booking],
    *,
    phone: str | None,
    id_tail: str | None,
    name: str,
    service_id: int,
    slot: Slot,
    rules: BookingRules,
    tz: ZoneInfo,
    ignore_code: str | None = None,
) -> None:
    """Raise ``LimitReached`` if one more booking for ``slot`` breaks a per-person limit.

    ``existing`` are the hall's bookings of this phone number or ID tail (others are
    ignored, as is ``ignore_code``, the booking being moved). A booking on another phone
    counts as the same person's only when both the ID tail and the name match: four
    characters alone are shared by one visitor in ten thousand, which in a busy hall would
    refuse strangers. Limits: at most
    ``max_active_per_matter`` bookings still to be used for ``service_id``, and at most
    ``max_per_day`` bookings (cancelled aside) on the slot's hall date.
    """
    mine = [
        b
        for b in existing
        if b.code != ignore_code
        and (
            (phone is not None and b.phone == phone)
            or (id_tail is not None and (b.id_tail, b.name) == (id_tail, name))
        )
    ]

    def whose(bookings: list[Booking]) -> str:
        if phone is not None and any(b.phone == phone for b in bookings):
            return "this phone number"
        return "this ID"

    active = [b for b in mine if b.service_id == service_id and b.state == BookingState.BOOKED]
    if len(active) >= rules.max_active_per_matter:
        first = min(active, key=lambda b: b.slot_start)
        at = first.slot_start.astimezone(tz)
        raise LimitReached(
            f"{whose(active)} already has {len(active)} active booking(s) for this matter, "
            f"the most allowed is {rules.max_active_per_matter}; use, reschedule or cancel "
            f"booking {first.code} ({at:%Y-%m-%d %H:%M}) first"
        )
    day = slot.start.astimezone(tz).date()
    same_day = [
        b for b in mine if b.state in COUNTED_PER_DAY and b.slot_start.astimezone(tz).date() == day
    ]
    if len(same_day) >= rules.max_per_day:
        raise LimitReached(
            f"{whose(same_day)} already has {len(same_day)} bookings on {day.isoformat()}, "
            f"the most allowed in a day is {rules.max_per_day}; choose another day"
        )


def make_booking(
    *,
    hall_id: int,
    service_id: int,
    slot: Slot,
    name: str,
    phone: str | None,
    id_tail: str | None,
    code: str,
    now: datetime,
    tz: ZoneInfo,
    rules: BookingRules,
    taken: int,
    existing: Iterable[Booking],
) -> Booking:
    """A new booking for ``slot``, with its ``BookingMade`` event, if every rule allows it.

    Checks, in this order: the contact details (normalised), the booking window, a free
    place (``taken`` are booked already), and the per-person limits against ``existing``
    (the hall's bookings of this phone number or ID tail). Each refusal says what to change.
    ``phone`` None is for staff booking on behalf of a visitor without a phone (the online
    channel always asks for one).
    """
    clean_phone = normalise_phone(phone) if phone is not None else None
    clean_tail = normalise_id_tail(id_tail) if id_tail else None
    clean_name = normalise_name(name)
    check_bookable(slot, now, tz, rules)
    check_capacity(slot, taken, tz)
    check_limits(
        existing,
        phone=clean_phone,
        id_tail=clean_tail,
        name=clean_name,
        service_id=service_id,
        slot=slot,
        rules=rules,
        tz=tz,
    )
    booking = Booking(
        hall_id=hall_id,
        service_id=service_id,
        slot_start=slot.start,
        name=clean_name,
        phone=clean_phone,
        code=code,
        timezone=tz.key,
        made_at=now,
        id_tail=clean_tail,
    )
    booking._record(ev.BookingMade, now)
    return booking
