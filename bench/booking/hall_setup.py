"""The hall and its slots: the hall's clock, opening hours and booking rules, and their
set-up over the API, checked against the public slot list."""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import time as clock_time

import httpx

from .. import hall
from ..server import ADMIN_PASSWORD, ADMIN_USERNAME
from .options import SLOT_MINUTES, Sizes
from .plan import RushOutcome, RushPlan

OPENS = clock_time(9, 0)
PREFERRED_TIMEZONE = "Asia/Shanghai"
SAFE_LOCAL = (clock_time(1, 0), clock_time(7, 0))
"""The hall's clock must read between these when the run starts: after the release time
(00:00) of the window's last day, and hours before the first slot (09:00) of today."""
TARGET_LOCAL_MINUTES = 4 * 60


def hall_timezone(now: datetime) -> str:
    """A timezone whose clock reads between SAFE_LOCAL at ``now``: Asia/Shanghai if it
    does, else the whole-hour ``Etc/GMT`` zone nearest 04:00. Then every slot of today and
    of the window's other days lies ahead and is released, whatever time the run starts."""
    low, high = (t.hour * 60 + t.minute for t in SAFE_LOCAL)
    if low <= hall.local_minutes(now, PREFERRED_TIMEZONE) < high:
        return PREFERRED_TIMEZONE
    return hall.nearest_zone(now, TARGET_LOCAL_MINUTES)


def opening_hours(sizes: Sizes) -> dict[str, list[list[str]]]:
    """Every day from OPENS for ``slots_per_day`` slots."""
    opens = datetime.combine(datetime(2000, 1, 1), OPENS)
    closes = opens + timedelta(minutes=SLOT_MINUTES * sizes.slots_per_day)
    end = "24:00" if closes.day != opens.day else f"{closes:%H:%M}"
    return {day: [[f"{opens:%H:%M}", end]] for day in hall.DAYS}


def booking_rules(sizes: Sizes) -> dict[str, object]:
    """Today and the next ``days - 1`` days released (at 00:00), one booking per phone."""
    return {
        "slot_minutes": SLOT_MINUTES,
        "capacity": sizes.capacity,
        "walk_in_share": 0,
        "window_days": sizes.days - 1,
        "release_time": "00:00",
        "max_active_per_matter": 1,
        "max_per_day": 3,
    }


# Run by the load generator (its own process), before the rush.


async def set_up(client: httpx.AsyncClient, plan: RushPlan, outcome: RushOutcome) -> None:
    """As the admin: the hall, its matter opened to booking; then the public slot list,
    which must offer exactly the planned slots, every place free."""
    sizes = plan.sizes
    csrf = await hall.login(client, ADMIN_USERNAME, ADMIN_PASSWORD)
    body = {
        "name_zh": "预约压测大厅",
        "name_en": "Booking rush hall",
        "opening_hours": opening_hours(sizes),
        "timezone": plan.timezone,
    }
    outcome.hall_id = int((await hall.post(client, "/api/halls", body, csrf))["id"])
    matter = {"name_zh": "社会保险", "name_en": "Social insurance", "prefix": "A",
              "typical_minutes": 10}  # fmt: skip
    path = f"/api/halls/{outcome.hall_id}/services"
    outcome.service_id = int((await hall.post(client, path, matter, csrf))["id"])
    path = f"/api/halls/{outcome.hall_id}/services/{outcome.service_id}/booking"
    answer = await client.put(path, json=booking_rules(sizes), headers={"X-CSRF-Token": csrf})
    if not answer.is_success:
        raise hall.SetupError(f"PUT {path} answered {answer.status_code}: {answer.text[:300]}")
    path = (
        f"/api/public/halls/{outcome.hall_id}/services/{outcome.service_id}/slots?days={sizes.days}"
    )
    answer = await client.get(path)
    if not answer.is_success:
        raise hall.SetupError(f"GET {path} answered {answer.status_code}: {answer.text[:300]}")
    slots = [s for day in answer.json()["days"] for s in day["slots"]]
    outcome.offered = [str(s["start"]) for s in slots]
    outcome.offered_places = sum(int(s["places"]) for s in slots)
    busy = [s for s in slots if s["free"] != s["places"]]
    if len(slots) != sizes.slots or outcome.offered_places != sizes.places or busy:
        raise hall.SetupError(
            f"the slot list offers {len(slots)} slots with {outcome.offered_places} places "
            f"({len(busy)} not all free); planned {sizes.slots} slots with {sizes.places}"
        )
