"""A matter's booking rules, as the hall manager sets them."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
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
    """Visitors per slot. None: derived from the counters serving the matter."""
    per_counter: int | None = None
    """Visitors per slot for each counter serving the matter, when ``capacity`` is None.
    None: what the counters can really serve in a slot (``slot_throughput``): each counter
    serving the matter at primary level gives it an equal part of its time, and a visit
    takes the matter's typical minutes."""
    walk_in_share: float = 0.0
    """Share (0..1) of each slot's capacity held back for walk-ins; rounded in their favour.
    Not used when ``target_load`` plans the places from the walk-ins expected."""
    target_load: float | None = None
    """None: every slot holds back ``walk_in_share``. A share (0.1..1): plan each slot's
    places from the walk-ins the hall expects then (``booking.domain.capacity``), filling
    the counters up to this share of what they can serve, walk-ins first; this wins over
    ``per_counter`` and ``walk_in_share`` (a fixed ``capacity`` wins over it)."""
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
        if self.per_counter is not None and self.per_counter < 0:
            raise ValueError(f"per-counter capacity {self.per_counter}: give 0 or more")
        if not 0 <= self.walk_in_share <= 1:
            raise ValueError(
                f"walk-in share {self.walk_in_share}: give a share from 0 to 1, e.g. 0.3"
            )
        if self.target_load is not None and not 0.1 <= self.target_load <= 1:
            raise ValueError(
                f"target load {self.target_load}: give a share from 0.1 to 1, e.g. 0.9, or none"
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

    def raw_capacity(self, counters: int, throughput: float = 0.0) -> int:
        """Visitors per slot before the walk-in share: fixed, ``per_counter`` for each of
        the ``counters`` serving the matter, or the ``throughput`` those counters can serve
        in a slot (see ``slot_throughput``), rounded down."""
        if self.capacity is not None:
            return self.capacity
        if self.per_counter is not None:
            return max(0, counters) * self.per_counter
        # Rounded before the floor so float noise (2.9999999) does not lose a place.
        return max(0, math.floor(round(throughput, 6)))

    def bookable_capacity(self, raw: int) -> int:
        """Places of a slot of ``raw`` capacity open to booking: ⌊raw × (1 − share)⌋, ≥ 0.

        Rounding down holds back at least the share for walk-ins (who often have no phone).
        The share is taken as the decimal the manager wrote (``0.3``, not 0.29999…).
        """
        share = Fraction(repr(float(self.walk_in_share)))
        return max(0, math.floor(max(0, raw) * (1 - share)))


def slot_throughput(
    slot_minutes: float, typical_minutes: float, counter_shares: Iterable[float]
) -> float:
    """Visitors of a matter its counters can serve in one slot: the slot's minutes times
    each counter's share of its time for the matter (1 for a counter serving only it, 1/n
    for a counter with n primary matters), over the minutes one visit typically takes."""
    if typical_minutes <= 0:
        return 0.0
    return slot_minutes * sum(counter_shares) / typical_minutes


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
        elif key == "target_load":
            if value is not None and (
                not isinstance(value, int | float) or isinstance(value, bool)
            ):
                raise ValueError("target_load must be a share from 0.1 to 1, e.g. 0.9, or null")
            values[key] = None if value is None else float(value)
        elif key in ("capacity", "per_counter") and value is None:
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
