"""Online bookings as part of a fault scenario's load: visitors book slots of a hall of
their own (one booking per phone and matter), and ask again with the same request when no
answer came. Booking has no Idempotency-Key: a retry after a booking that did commit is
refused by the per-person limit, and the visitor finds it with "My booking". So after the
fault every phone holds at most one booking, every booking answered is stored, and no slot
is over its places."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from .. import hall
from ..booking.hall_setup import hall_timezone
from ..checks import Database
from ..server import ADMIN_PASSWORD, ADMIN_USERNAME
from ..stats import _listed
from .clients import GIVE_UP_AFTER_S, Tally, retry_after, send

DAYS = 3
SLOTS_PER_DAY = 16
CAPACITY = 20


@dataclass(frozen=True)
class BookingHall:
    hall_id: int
    service_id: int
    slots: list[str]


@dataclass
class Bookings:
    """What the bookers saw."""

    codes: dict[str, str] = field(default_factory=dict)
    """Phone → the booking code answered."""
    found_booked: list[str] = field(default_factory=list)
    """Phones refused on a retry because an unanswered try had booked."""
    full: int = 0


async def booking_hall(base_url: str) -> BookingHall:
    """A hall whose one matter books ``SLOTS_PER_DAY`` slots a day for ``DAYS`` days."""
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as admin:
        csrf = await hall.login(admin, ADMIN_USERNAME, ADMIN_PASSWORD)
        hours = {day: [["09:00", "17:00"]] for day in hall.DAYS}
        body = {"name_zh": "预约大厅", "name_en": "Booking hall", "opening_hours": hours,
                "timezone": hall_timezone(datetime.now(UTC))}  # fmt: skip
        hall_id = int((await hall.post(admin, "/api/halls", body, csrf))["id"])
        matter = {"name_zh": "社会保险", "name_en": "Social insurance", "prefix": "S",
                  "typical_minutes": 10}  # fmt: skip
        service_id = int(
            (await hall.post(admin, f"/api/halls/{hall_id}/services", matter, csrf))["id"]
        )
        rules = {"slot_minutes": 30, "capacity": CAPACITY, "walk_in_share": 0,
                 "window_days": DAYS - 1, "release_time": "00:00", "max_active_per_matter": 1,
                 "max_per_day": 3}  # fmt: skip
        path = f"/api/halls/{hall_id}/services/{service_id}/booking"
        answer = await admin.put(path, json=rules, headers={"X-CSRF-Token": csrf})
        if not answer.is_success:
            raise hall.SetupError(f"PUT {path}: {answer.status_code} {answer.text[:300]}")
        answer = await admin.get(
            f"/api/public/halls/{hall_id}/services/{service_id}/slots?days={DAYS}"
        )
        slots = [str(s["start"]) for day in answer.json()["days"] for s in day["slots"]]
    if not slots:
        raise hall.SetupError("the booking hall offers no slots")
    return BookingHall(hall_id, service_id, slots)


async def book_one(
    client: httpx.AsyncClient, place: BookingHall, tally: Tally, seen: Bookings, phone: str
) -> None:
    """Book some slot for ``phone``, asking again (same slot) when no answer came."""
    slot = random.choice(place.slots)
    body = {"service_id": place.service_id, "slot_start": slot, "name": "王小明", "phone": phone}
    deadline, tries = time.monotonic() + GIVE_UP_AFTER_S, 0
    while time.monotonic() < deadline:
        tries += 1
        answer = await send(client, tally, f"/api/public/halls/{place.hall_id}/bookings", json=body)
        if answer is not None and answer.status_code in (200, 201):
            seen.codes[phone] = str(answer.json()["code"])
            tally.ok_at.append(time.monotonic())
            return
        if answer is not None and answer.status_code == 409:
            reason = answer.json().get("extra", {}).get("reason", "")
            if tries > 1 and reason == "limit_reached":
                seen.found_booked.append(phone)  # an earlier try had booked: "My booking"
            elif reason == "slot_full":
                seen.full += 1
            else:
                tally.gave_up.append(f"{phone}: 409 {answer.text[:120]}")
            return
        if answer is not None and answer.status_code < 500:
            tally.gave_up.append(f"{phone}: {answer.status_code} {answer.text[:120]}")
            return
        await asyncio.sleep(retry_after(answer))
    tally.gave_up.append(f"{phone}: no answer after {GIVE_UP_AFTER_S:.0f} s")


async def booker_loop(
    base_url: str, place: BookingHall, tally: Tally, seen: Bookings, stop: asyncio.Event, first: int
) -> None:
    """Visitors one after another (each a new phone number) until ``stop``."""
    async with httpx.AsyncClient(base_url=base_url) as client:
        n = first
        while not stop.is_set():
            n += 1
            await book_one(client, place, tally, seen, f"139{n:08d}")
            await asyncio.sleep(0.05)


def booking_problems(
    db: Database, place: BookingHall, seen: Bookings
) -> tuple[int, int, list[str]]:
    """(lost, duplicated, problems): answered bookings stored, one per phone, no slot over."""
    problems = []
    stored = dict(db.rows("SELECT phone, code FROM bookings WHERE hall_id = $1", place.hall_id))
    twice = db.rows(
        "SELECT phone, count(*) FROM bookings WHERE hall_id = $1 "
        "GROUP BY phone HAVING count(*) > 1",
        place.hall_id,
    )
    over = db.rows(
        "SELECT s.id, s.bookable, count(b.id) FROM slots s JOIN bookings b ON b.slot_id = s.id "
        "AND b.state NOT IN ('cancelled') WHERE s.hall_id = $1 GROUP BY s.id, s.bookable "
        "HAVING count(b.id) > s.bookable",
        place.hall_id,
    )
    lost = sorted(p for p, code in seen.codes.items() if stored.get(p) != code)
    unfound = sorted(p for p in seen.found_booked if p not in stored)
    if lost:
        problems.append(f"bookings answered but not stored: phones {_listed(lost)}")
    if unfound:
        problems.append(f"refused as already booked, yet no booking: phones {_listed(unfound)}")
    if twice:
        problems.append(f"phones with two bookings: {_listed(sorted(p for p, _ in twice))}")
    if over:
        problems.append(f"slots over their places: {_listed(sorted(s for s, _, _ in over))}")
    return len(lost) + len(unfound), len(twice) + len(over), problems
