"""The booking side's scheduled work. Every job is idempotent: run twice, it does it once.

- ``release_window``: store the slots of every bookable day (the newly released one at its
  release time) and announce a new day; booking works without it (a slot row is made on
  first booking), so the job only makes the rush at release time cheaper and visible.
- ``sweep_no_shows``: bookings not checked in by the end of their late window become
  no-shows and give their place back.
- ``claim_reminders`` + ``send_reminders``: one reminder per booking, ahead of its slot.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, select

from booking.calendar_change import claim_notices, unclaim_notice
from booking.context import demand_of, load_hall, load_matter, rules_of
from booking.domain.errors import NotYet
from booking.domain.events import BookingDayReleased
from booking.domain.rules import rules_from_json
from booking.domain.window import bookable_days
from booking.notify import Notifier, Reminder
from booking.store import BookingStore, apply_booking, booking_from_row
from queue_server.db.tables import HallRow, ServiceRow
from queue_server.service.bus import Bus
from queue_server.service.unit_of_work import UnitOfWork

log = logging.getLogger("onedoor.booking.jobs")
REMINDER_HORIZON = timedelta(days=2)


async def release_window(uow: UnitOfWork, hall_id: int) -> int:
    """Store the slots of each bookable day of the hall's bookable matters; return how many
    slots were new. A day whose slots appear for the first time is announced."""
    created = await store_released_slots(uow, hall_id, announce=True)
    await uow.commit()
    return created


async def store_released_slots(uow: UnitOfWork, hall_id: int, *, announce: bool = False) -> int:
    """``release_window``'s work inside the caller's transaction (also run, unannounced,
    when a manager changes rules or the calendar, so stored places follow at once)."""
    hall_row = await load_hall(uow, hall_id)
    tz = ZoneInfo(hall_row.timezone)
    store = BookingStore(uow.session)
    now = uow.clock.now()
    services = (
        await uow.session.execute(
            select(ServiceRow).where(
                ServiceRow.hall_id == hall_id,
                ServiceRow.active.is_(True),
                ServiceRow.booking.is_not(None),
            )
        )
    ).scalars()
    created = 0
    for service in list(services):
        if service.booking is None:  # JSON null on some backends
            continue
        matter = await load_matter(uow, hall_id, service.id, for_booking=False)
        for day in bookable_days(now, tz, matter.rules):
            slots = matter.slots(day, await demand_of(uow, matter, day))
            new = await store.ensure_slots(hall_id, service.id, slots)
            created += new
            if new and announce:
                uow.collect(
                    [
                        BookingDayReleased(
                            hall_id, now, service.id, day.isoformat(), len(slots),
                            sum(s.bookable for s in slots),
                        )
                    ]
                )  # fmt: skip
    return created


async def sweep_no_shows(uow: UnitOfWork) -> int:
    """Mark bookings not checked in by the end of their late window as no-shows, giving
    their places back; return how many."""
    store = BookingStore(uow.session)
    now = uow.clock.now()
    zones: dict[int, str] = {}
    services: dict[int, ServiceRow] = {}
    marked = 0
    for row in await store.overdue(now):
        if row.hall_id not in zones:
            zones[row.hall_id] = (await load_hall(uow, row.hall_id)).timezone
        if row.service_id not in services:
            service = await uow.session.get(ServiceRow, row.service_id)
            assert service is not None  # bookings cascade with their matter
            services[row.service_id] = service
        booking = booking_from_row(row, zones[row.hall_id])
        try:
            booking.mark_no_show(now, rules_of(services[row.service_id]))
        except NotYet:
            continue
        apply_booking(row, booking)
        row.ended_at = now
        await store.give_back_place(row.slot_id)
        uow.collect(booking.events)
        marked += 1
    await uow.commit()
    return marked


async def claim_reminders(uow: UnitOfWork, base_url: str) -> list[Reminder]:
    """Take the bookings due a reminder now and mark them reminded (in one transaction, so
    two runs never remind twice); return what to send."""
    now = uow.clock.now()
    store = BookingStore(uow.session)
    due: list[Reminder] = []
    rows = await store.to_remind(now, now + REMINDER_HORIZON)
    for row in rows:
        if row.phone is None:
            continue
        service = await uow.session.get(ServiceRow, row.service_id)
        hall = await uow.session.get(HallRow, row.hall_id)
        assert service is not None and hall is not None
        rules = rules_of(service)
        send_at = row.slot_start - rules.remind_before
        # Nothing for a matter without reminders, before its time, or for a booking made
        # after that moment (the visitor has just seen the details).
        if not rules.remind_before or now < send_at or row.made_at >= send_at:
            continue
        local = row.slot_start.astimezone(ZoneInfo(hall.timezone))
        row.reminded_at = now
        due.append(
            Reminder(
                code=row.code, phone=row.phone, name=row.name, hall_zh=hall.name_zh,
                hall_en=hall.name_en, matter_zh=service.name_zh, matter_en=service.name_en,
                local_date=local.date().isoformat(), local_time=f"{local:%H:%M}",
                manage_url=f"{base_url}/b/{row.code}",
            )
        )  # fmt: skip
    await uow.commit()
    return due


async def _unclaim(uow: UnitOfWork, code: str) -> None:
    row = await BookingStore(uow.session).by_code(code, lock=True)
    if row is not None:
        row.reminded_at = None
    await uow.commit()


async def send_reminders(bus: Bus, notifier: Notifier, base_url: str) -> tuple[int, int]:
    """Send the reminders due now, and the notices of bookings the hall cancelled; return
    (sent, failed). A failed one is released to be tried on the next run."""
    sent = failed = 0
    for claim, unclaim in ((claim_reminders, _unclaim), (claim_notices, unclaim_notice)):
        for message in await bus.run(claim, base_url):
            try:
                await notifier.send(message)
                sent += 1
            except Exception as exc:  # any adapter failure: try again next run
                failed += 1
                log.warning("%s for booking %s failed: %s", message.kind, message.code, exc)
                await bus.run(unclaim, message.code)
    return sent, failed


@dataclass(frozen=True)
class HallTimes:
    """When a hall's daily jobs run, on its own clock."""

    hall_id: int
    timezone: str
    day_close: str
    releases: tuple[str, ...]
    """The distinct release times (HH:MM) of its bookable matters."""


async def hall_times(uow: UnitOfWork) -> list[HallTimes]:
    rows = await uow.session.execute(
        select(HallRow.id, HallRow.timezone, HallRow.day_close_time, ServiceRow.booking)
        .join(
            ServiceRow,
            and_(ServiceRow.hall_id == HallRow.id, ServiceRow.active.is_(True)),
            isouter=True,
        )
        .order_by(HallRow.id)
    )
    halls: dict[int, tuple[str, str, set[str]]] = {}
    for hall_id, timezone, day_close, booking in rows:
        _, _, times = halls.setdefault(hall_id, (timezone, day_close, set()))
        if booking is not None:
            times.add(rules_from_json(booking).release_time.strftime("%H:%M"))
    return [HallTimes(h, tz, close, tuple(sorted(t))) for h, (tz, close, t) in halls.items()]
