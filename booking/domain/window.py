"""The booking window: which days a visitor can book now, and whether a slot is among them.

Day D opens for booking at ``release_time`` (hall time) ``window_days`` days before D and
stays open until each of its slots begins. So with a 7-day window and an 08:00 release, at
07:59 on Monday the furthest bookable day is next Sunday; at 08:00, next Monday.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from .calendar import Slot
from .errors import OutsideWindow
from .rules import BookingRules, describe


def release_moment(day: date, tz: ZoneInfo, rules: BookingRules) -> datetime:
    """The UTC moment at which ``day`` (a hall date) opens for booking.

    A release time that falls in a daylight-saving gap or repeat is read with ``fold=0``.
    """
    released_on = day - timedelta(days=rules.window_days)
    return datetime.combine(released_on, rules.release_time, tzinfo=tz).astimezone(UTC)


def bookable_days(now: datetime, tz: ZoneInfo, rules: BookingRules) -> list[date]:
    """The hall dates open for booking at ``now``, today first (today may have no slots left)."""
    today = now.astimezone(tz).date()
    days = (today + timedelta(days=ahead) for ahead in range(rules.window_days + 1))
    return [day for day in days if release_moment(day, tz, rules) <= now]


def check_bookable(slot: Slot, now: datetime, tz: ZoneInfo, rules: BookingRules) -> None:
    """Return if ``slot`` can be booked at ``now``, else raise ``OutsideWindow`` saying why.

    Only the time is checked here; capacity and per-person limits are the booking's.
    """
    local = slot.start.astimezone(tz)
    if slot.start <= now:
        raise OutsideWindow(
            f"the {local:%H:%M} slot on {local:%Y-%m-%d} has already begun; choose a later one"
        )
    days = bookable_days(now, tz, rules)
    if local.date() in days:
        return
    opens = release_moment(local.date(), tz, rules).astimezone(tz)
    if days:
        open_now = f"bookable now: {days[0].isoformat()} to {days[-1].isoformat()}"
    else:
        open_now = "no day is bookable yet"
    ahead = describe(timedelta(days=rules.window_days)) + " ahead" if rules.window_days else ""
    raise OutsideWindow(
        f"{local:%Y-%m-%d} is not bookable yet: each day opens {ahead or 'on the day'} "
        f"at {rules.release_time:%H:%M} ({tz.key}), this one on {opens:%Y-%m-%d %H:%M}; "
        f"{open_now}"
    )
