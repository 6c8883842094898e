"""A matter's booking rules, as the hall manager sets them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import time, timedelta
from enum import StrEnum
from fractions import Fraction
from typing import Any

DURATIONS = ("cancel_cutoff", "reschedule_cutoff", "checkin_early", "checkin_late", "remind_before")


class LatePolicy(StrEnum):
    """What a visitor who checks in after the late window gets."""

    SERVE_AS_DUE = "serve_as_due"
    """Queued as due at their slot time anyway, as if they had come within the window."""
    WALK_IN = "walk_in"
    """The booking expires; they queue as a walk-in from the moment they arrive."""


def describe(span: timedelta) -> str:
    """A duration in the hall's words: ``30 min``, ``2 h``, ``1 h 30 min``, ``7 days``."""
    minutes = int(span.total_seconds() // 60)
    if minutes and minutes % 1440 == 0:
        days = minutes // 1440
        return f"{days} day" if days == 1 else f"{days} days"
    hours, rest = divmod(minutes, 60)
    if not hours:
        return f"{rest} min"
    return f"{hours} h" if not rest else f"{hours} h {rest} min"


@dataclass(frozen=True)
class BookingRules:
    """How one matter of one hall is booked. Invalid values raise ValueError saying the fix."""

    slot_minutes: int = 30
    """Length of a slot; slots start at each opening and follow each other without gaps."""
    capacity: int | None = None
    """Visitors per slot. None: derived, ``per_counter`` for each counter serving the matter."""
    per_counter: int = 1
    """Visitors per slot for each counter serving the matter, when ``capacity`` is None."""
    walk_in_share: float = 0.0
    """Share (0..1) of each slot's capacity held back for walk-ins; rounded in their favour."""
    window_days: int = 7
    """A day is bookable from ``release_time`` this many days before it (0: the same day)."""
    release_time: time = time(8, 0)
    """Hall time at which each new day opens for booking."""
    cancel_cutoff: timedelta = timedelta(hours=1)
    """Online cancellation closes this long before the slot starts."""
    reschedule_cutoff: timedelta = timedelta(hours=1)
    """Online rescheduling closes this long before the (current) slot starts."""
    checkin_early: timedelta = timedelta(minutes=30)
    """Check-in opens this long before the slot starts."""
    checkin_late: timedelta = timedelta(minutes=15)
    """Arrivals up to this long after the slot start are served as due; later is "late"."""
    late_policy: LatePolicy = LatePolicy.WALK_IN
    """What a late arrival (after ``checkin_late``) gets."""
    max_active_per_matter: int = 1
    """Bookings not yet used or cancelled that one phone number or ID may hold for the matter."""
    max_per_day: int = 3
    """Bookings (of any matter of the hall, cancelled ones aside) per phone or ID per day."""
    remind_before: timedelta = timedelta(hours=2)
    """A reminder goes out this long before the slot (0: none)."""

    def __post_init__(self) -> None:
        if not 5 <= self.slot_minutes <= 24 * 60:
            raise ValueError(f"slot length {self.slot_minutes} min: give 5 to 1440 minutes")
        if self.capacity is not None and self.capacity < 0:
            raise ValueError(f"capacity {self.capacity}: give 0 or more visitors per slot")
        if self.per_counter < 0:
            raise ValueError(f"per-counter capacity {self.per_counter}: give 0 or more")
        if not 0 <= self.walk_in_share <= 1:
            raise ValueError(
                f"walk-in share {self.walk_in_share}: give a share from 0 to 1, e.g. 0.3"
            )
        if self.window_days < 0:
            raise ValueError(f"booking window {self.window_days} days: give 0 or more days")
        for name in DURATIONS:
            if getattr(self, name) < timedelta(0):
                raise ValueError(f"{name.replace('_', ' ')} is negative; give 0 or more")
        if self.max_active_per_matter < 1 or self.max_per_day < 1:
            raise ValueError("booking limits per phone or ID must allow at least 1 booking")
        if self.late_policy not in set(LatePolicy):
            choices = " or ".join(policy.value for policy in LatePolicy)
            raise ValueError(f"late policy {self.late_policy!r}: use {choices}")

    @property
    def slot_length(self) -> timedelta:
        return timedelta(minutes=self.slot_minutes)

    def raw_capacity(self, counters: int) -> int:
        """Visitors per slot before the walk-in share: fixed, or from ``counters`` serving it."""
        if self.capacity is not None:
            return self.capacity
        return max(0, counters) * self.per_counter

    def bookable_capacity(self, raw: int) -> int:
        """Places of a slot of ``raw`` capacity open to booking: ⌊raw × (1 − share)⌋, ≥ 0.

        Rounding down holds back at least the share for walk-ins (who often have no phone).
        The share is taken as the decimal the manager wrote (``0.3``, not 0.29999…).
        """
        share = Fraction(repr(float(self.walk_in_share)))
        return max(0, math.floor(max(0, raw) * (1 - share)))


def rules_to_json(rules: BookingRules) -> dict[str, Any]:
    """The stored form: durations as ``<name>_minutes``, the release time as ``HH:MM``."""
    data: dict[str, Any] = {}
    for name, value in asdict(rules).items():
        if name in DURATIONS:
            data[f"{name}_minutes"] = int(value.total_seconds() // 60)
        elif name == "release_time":
            data[name] = value.strftime("%H:%M")
        else:
            data[name] = str(value) if name == "late_policy" else value
    return data


def rules_from_json(data: Mapping[str, Any]) -> BookingRules:
    """Rules from their stored (or a manager's) JSON; missing keys take the defaults.

    Raises ValueError naming the setting and what to give instead.
    """
    if not isinstance(data, Mapping):
        raise ValueError('booking rules are an object, e.g. {"slot_minutes": 30}')
    known = {f.name for f in fields(BookingRules)} - set(DURATIONS)
    known |= {f"{name}_minutes" for name in DURATIONS}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"unknown booking setting {unknown[0]!r}; known: {', '.join(sorted(known))}"
        )
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key.endswith("_minutes") and key[: -len("_minutes")] in DURATIONS:
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{key} must be a whole number of minutes")
            values[key[: -len("_minutes")]] = timedelta(minutes=value)
        elif key == "release_time":
            values[key] = _clock(value)
        elif key == "late_policy":
            if value not in {p.value for p in LatePolicy}:
                choices = " or ".join(policy.value for policy in LatePolicy)
                raise ValueError(f"late_policy {value!r}: use {choices}")
            values[key] = LatePolicy(value)
        elif key == "walk_in_share":
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError("walk_in_share must be a number from 0 to 1, e.g. 0.3")
            values[key] = float(value)
        elif key == "capacity" and value is None:
            values[key] = None
        else:
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{key} must be a whole number")
            values[key] = value
    return BookingRules(**values)


def _clock(value: Any) -> time:
    try:
        hour, minute = str(value).split(":")
        return time(int(hour), int(minute))
    except ValueError:
        raise ValueError(f"release_time {value!r}: write it as HH:MM, e.g. 08:00") from None
