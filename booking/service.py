"""Booking a slot, and managing it after: view, cancel, reschedule (online or by staff).

Each command is one transaction. A booking takes its place with the slot row's conditional
update (``BookingStore.take_place``) after locking its holder rows, so neither the slot's
capacity nor a person's limits can be beaten by racing requests. On PostgreSQL a booking is
two statements: the matter, the slot and the holder's lock and bookings, then the place,
the booking and its events (``BookingStore.book_in_one``). A slot the process knows is full
(``slot_memory``) is refused without a transaction.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from booking.context import (
    Matter,
    current_config,
    current_matter,
    demand_of,
    load_hall,
    load_matter,
    load_matter_for_booking,
)
from booking.domain import contact
from booking.domain.booking import Booking, make_booking
from booking.domain.calendar import Slot
from booking.domain.codes import new_code, normalise_code
from booking.domain.errors import DomainError, SlotFull
from booking.domain.rules import BookingRules
from booking.domain.window import bookable_days, check_bookable, release_moment
from booking.slot_memory import Reading, SlotMemory, memory_of
from booking.store import (
    BookingStore,
    SlotCount,
    Taken,
    apply_booking,
    book_at_once,
    booking_from_row,
    holder_keys,
)
from queue_server.db.tables import BookingRow, TicketRow, VisitRow
from queue_server.service.bus import Bus
from queue_server.service.errors import Conflict, Invalid, NotFound, RetryTransaction
from queue_server.service.unit_of_work import UnitOfWork

if TYPE_CHECKING:
    from litestar.channels import ChannelsPlugin

NEXT_FREE = 5
FREE_LIST_LIMIT = 256
"""Free slots read at once for a matter's refusals to suggest from (kept in memory)."""
MAX_DAYS_LISTED = 31


@dataclass(frozen=True)
class BookSlot:
    """Book ``slot_start`` of a matter for a visitor; ``staff_id`` when staff book for them."""

    hall_id: int
    service_id: int
    slot_start: datetime
    name: str
    phone: str | None
    id_tail: str | None = None
    staff_id: int | None = None


@dataclass(frozen=True)
class CancelBooking:
    """Cancel by code: with the phone number online, or by staff of ``hall_id``."""

    code: str
    phone: str | None = None
    hall_id: int | None = None


@dataclass(frozen=True)
class RescheduleBooking:
    code: str
    slot_start: datetime
    phone: str | None = None
    hall_id: int | None = None


@dataclass(frozen=True)
class SlotOut:
    start: datetime
    end: datetime
    time: str
    """Start on the hall's clock, HH:MM."""
    places: int
    """Places open to booking (walk-ins' share held back)."""
    free: int


@dataclass(frozen=True)
class DayOut:
    date: str
    slots: list[SlotOut]


@dataclass(frozen=True)
class SlotsOut:
    hall_id: int
    service_id: int
    timezone: str
    days: list[DayOut]
    next_release: datetime | None = None
    """When the next day opens for booking (the day after the last one listed as bookable)."""


@dataclass(frozen=True)
class MatterRef:
    id: int
    name_zh: str
    name_en: str
    documents: list[str] = field(default_factory=list)
    """The materials to bring."""


@dataclass(frozen=True)
class BookingOut:
    code: str
    state: str
    hall_id: int
    hall_name_zh: str
    hall_name_en: str
    timezone: str
    service: MatterRef
    slot_start: datetime
    slot_end: datetime
    local_date: str
    local_time: str
    name: str
    phone: str | None
    """Masked (138****8000): the answer may be shown on a shared screen."""
    channel: str
    made_at: datetime
    cancel_until: datetime
    reschedule_until: datetime
    checkin_opens: datetime
    checkin_until: datetime
    """After this, a late arrival is served per the matter's late policy."""
    ticket_id: int | None = None
    qr_url: str = ""
    """Filled in by the API: the link in the booking's QR code (a kiosk scanner reads it)."""
    follow_token: str | None = None
    """Once checked in: the token of the ticket's follow link (``/t/{token}``)."""
    follow_url: str = ""
    """Filled in by the API from ``follow_token``."""


def booking_out(row: BookingRow, matter: Matter) -> BookingOut:
    rules, tz = matter.rules, matter.tz
    local = row.slot_start.astimezone(tz)
    service = matter.service
    return BookingOut(
        code=row.code,
        state=row.state,
        hall_id=row.hall_id,
        hall_name_zh=matter.hall_row.name_zh,
        hall_name_en=matter.hall_row.name_en,
        timezone=tz.key,
        service=MatterRef(service.id, service.name_zh, service.name_en, list(service.documents)),
        slot_start=row.slot_start,
        slot_end=row.slot_start + rules.slot_length,
        local_date=local.date().isoformat(),
        local_time=f"{local:%H:%M}",
        name=row.name,
        phone=contact.mask_phone(row.phone),
        channel=row.channel,
        made_at=row.made_at,
        cancel_until=row.slot_start - rules.cancel_cutoff,
        reschedule_until=row.slot_start - rules.reschedule_cutoff,
        checkin_opens=row.slot_start - rules.checkin_early,
        checkin_until=row.slot_start + rules.checkin_late,
        ticket_id=row.ticket_id,
    )


async def _slot(uow: UnitOfWork, matter: Matter, start: datetime) -> Slot:
    demand = await demand_of(uow, matter, start.astimezone(matter.tz).date())
    slot = matter.slot_at(start, demand)
    if slot is None:
        local = start.astimezone(matter.tz)
        raise Invalid(
            "slot_start",
            f"matter {matter.service.name_en} has no slot starting {local:%Y-%m-%d %H:%M} "
            f"({matter.tz.key}); choose one from the slot list",
        )
    return slot


def _window_end(matter: Matter, now: datetime) -> datetime | None:
    """The end of the booking window (UTC), or None while no day is bookable."""
    days = matter.open_days(now)
    if not days:
        return None
    end = datetime.combine(days[-1] + timedelta(days=1), time(0), tzinfo=matter.tz)
    return end.astimezone(UTC)


def _check_bookable(slot: Slot, now: datetime, matter: Matter) -> None:
    """``check_bookable``, answered from the matter's remembered open days when it passes."""
    if slot.start > now and slot.start.astimezone(matter.tz).date() in matter.open_days(now):
        return
    check_bookable(slot, now, matter.tz, matter.rules)


def _suggested(
    starts: Iterable[datetime], after: datetime, matter: Matter, memory: SlotMemory | None
) -> list[datetime]:
    """The first ``NEXT_FREE`` of ``starts`` after ``after`` that are not known full."""
    hall_id, service_id = matter.hall.id, matter.service.id
    found = []
    for start in starts:
        if start <= after or (memory and memory.is_full(hall_id, service_id, start)):
            continue
        found.append(start)
        if len(found) == NEXT_FREE:
            break
    return found


def _as_free(starts: list[datetime], matter: Matter) -> list[dict[str, str]]:
    return [dict(_free_entry(start, matter.tz)) for start in starts]


@lru_cache(maxsize=4096)
def _free_entry(start: datetime, tz: ZoneInfo) -> tuple[tuple[str, str], tuple[str, str]]:
    """A suggested slot as answered (remembered: a rush suggests the same ones again)."""
    return (("start", start.isoformat()), ("local", f"{start.astimezone(tz):%Y-%m-%d %H:%M}"))


def _remembered_next_free(
    memory: SlotMemory, matter: Matter, after: datetime, now: datetime
) -> list[dict[str, str]] | None:
    """``_next_free`` from the matter's free list in memory; None if it must be read."""
    until = _window_end(matter, now)
    if until is None:
        return []
    free = memory.free_list(matter.hall.id, matter.service.id, until)
    if free is None:
        return None
    found = _suggested(free.starts, max(after, now), matter, memory)
    if len(found) < NEXT_FREE and not free.complete:
        return None
    return _as_free(found, matter)


async def _next_free(
    uow: UnitOfWork,
    matter: Matter,
    after: datetime,
    memory: SlotMemory | None = None,
    epoch: int | None = None,
) -> list[dict[str, str]]:
    """The next slots with a free place, for a refusal to offer instead: from the matter's
    free list (read once, kept until a slot of the hall frees or ``slot_memory.TTL``),
    less the slots known full since."""
    now = uow.clock.now()
    if memory is not None:
        remembered = _remembered_next_free(memory, matter, after, now)
        if remembered is not None:
            return remembered
    until = _window_end(matter, now)
    if until is None:
        return []
    store = BookingStore(uow.session)
    starts = await store.free_slots_after(matter.service.id, now, until, FREE_LIST_LIMIT)
    complete = len(starts) < FREE_LIST_LIMIT
    if memory is not None:
        memory.keep_free_list(matter.hall.id, matter, until, starts, complete, epoch)
    found = _suggested(starts, max(after, now), matter, memory)
    if len(found) < NEXT_FREE and not complete:
        found = await store.free_slots_after(matter.service.id, max(after, now), until, NEXT_FREE)
    return _as_free(found, matter)


def _contact(c: BookSlot) -> tuple[str | None, str | None, str]:
    """The visitor's details in stored form (the domain says what is wrong with them)."""
    phone = contact.normalise_phone(c.phone) if c.phone is not None else None
    tail = contact.normalise_id_tail(c.id_tail) if c.id_tail else None
    return phone, tail, contact.normalise_name(c.name)


def slot_memory_of(channels: ChannelsPlugin, bus: Bus) -> SlotMemory:
    """The app's slot memory (one per channels plugin), reading its halls through ``bus``."""

    async def refresh(hall_id: int, matters: list[Matter]) -> dict[int, Reading]:
        return await bus.run(_read_again, hall_id, matters)

    return memory_of(channels, refresh)


async def _read_again(uow: UnitOfWork, hall_id: int, matters: list[Matter]) -> dict[int, Reading]:
    """What the slot memory holds for these matters, read again: their configuration now
    and their free slots in the booking window."""
    now = uow.clock.now()
    store = BookingStore(uow.session)
    readings = {}
    for known in matters:
        service_id = known.service.id
        try:
            matter = await load_matter(uow, hall_id, service_id)
        except (NotFound, DomainError):
            readings[service_id] = Reading(None, None, (), True)
            continue
        until = _window_end(matter, now)
        starts = (
            await store.free_slots_after(service_id, now, until, FREE_LIST_LIMIT) if until else []
        )
        readings[service_id] = Reading(matter, until, starts, len(starts) < FREE_LIST_LIMIT)
    return readings


def refuse_if_known_full(memory: SlotMemory | None, c: BookSlot, now: datetime) -> None:
    """Answer, without a transaction, what ``book_slot`` would answer for a slot this
    process knows is full (the same checks in the same order, then 409 slot full with the
    next free slots); return if the slot is not known full or its suggestions are not in
    memory: the booking goes on to the database."""
    if memory is None:
        return
    matter = memory.full_matter(c.hall_id, c.service_id, c.slot_start)
    if matter is None or matter is not current_matter(c.hall_id, c.service_id):
        return  # not known full, or the configuration was read anew since
    if matter.service.booking is None or not matter.service.active:
        return
    slot = matter.slot_at(c.slot_start)
    if slot is None:
        return
    phone, _, _ = _contact(c)
    if phone is None and c.staff_id is None:
        raise Invalid("phone", "give a mobile number: the booking is managed with it")
    _check_bookable(slot, now, matter)
    suggestions = _remembered_next_free(memory, matter, slot.start, now)
    if suggestions is None:
        return
    raise Conflict(_full_message(matter, slot), reason="slot_full", next_free=suggestions)


def known_full_refusal(
    memory: SlotMemory | None, c: BookSlot, now: datetime
) -> DomainError | Conflict | Invalid | None:
    """What ``refuse_if_known_full`` would raise now, or None: asked again for a booking
    waiting its turn at the booking gate, which is refused as soon as its slot is known
    full."""
    try:
        refuse_if_known_full(memory, c, now)
    except (DomainError, Conflict, Invalid) as refusal:
        return refusal
    return None


async def book_slot(uow: UnitOfWork, c: BookSlot, memory: SlotMemory | None = None) -> BookingOut:
    """Book the slot, or refuse with what to change: 409 slot full (with the next free
    slots), outside the booking window, or a per-person limit reached. ``memory``: the
    process's slot memory, which answers for slots known full and learns from this."""
    now = uow.clock.now()
    refuse_if_known_full(memory, c, now)  # e.g. learned while this one waited its turn
    epoch = memory.epoch(c.hall_id) if memory is not None else None  # before any read
    made = await _book_at_once(uow, c, now, memory, epoch)
    if made is not None:
        return made
    store = BookingStore(uow.session)
    phone = tail = None
    keys: list[str] = []
    try:
        phone, tail, name = _contact(c)
        keys = holder_keys(phone, tail, name)
    except DomainError:
        pass  # refused below, after what the matter and the slot have to say
    # One statement reads the matter's configuration and the slot's counter (on
    # PostgreSQL also locking the holder's rows and reading their bookings).
    matter, stored, holder = await load_matter_for_booking(
        uow, c.hall_id, c.service_id, c.slot_start, keys=keys, phone=phone, id_tail=tail
    )
    if memory is not None:
        memory.listen(c.hall_id)  # a hall that exists, with a matter booked online
    slot = await _slot(uow, matter, c.slot_start)
    phone, tail, name = _contact(c)
    if phone is None and c.staff_id is None:
        raise Invalid("phone", "give a mobile number: the booking is managed with it")
    _check_bookable(slot, now, matter)
    if stored is None:  # the release job has not stored it yet
        slot_id = await store.slot_id(c.hall_id, c.service_id, slot)
        booked, bookable = await store.booked(slot_id)
    else:
        slot_id, booked, bookable = stored.slot_id, stored.booked, stored.bookable
    postgres = uow.session.get_bind().dialect.name == "postgresql"
    taken: Taken | None = None
    try:
        if booked >= bookable:  # refuse a full slot before taking any lock
            raise SlotFull(_full_message(matter, slot))
        if holder is not None and holder.locked:
            existing = holder.bookings
        else:
            await store.lock_holder(c.hall_id, holder_keys(phone, tail, name), now)
            existing = [
                booking_from_row(r, matter.tz.key)
                for r in await store.bookings_of(c.hall_id, phone, tail)
            ]
        booking = make_booking(
            hall_id=c.hall_id, service_id=c.service_id, slot=slot, name=name, phone=phone,
            id_tail=tail, code=new_code(secrets.randbelow), now=now, tz=matter.tz,
            rules=matter.rules, taken=booked, existing=existing,
        )  # fmt: skip
        values = _booking_values(c, slot_id, slot, booking, now)
        try:
            if postgres:
                taken = await store.book_in_one(booking.events, **values)
            else:
                taken = await store.take_place(slot_id)
                if taken is not None:
                    row = await store.add_booking(**values)
        except IntegrityError as exc:  # the random code clashed with a stored one: draw again
            raise RetryTransaction from exc
        if taken is None:
            raise SlotFull(_full_message(matter, slot))
    except SlotFull as exc:
        if memory is not None:
            memory.learned_full(c.hall_id, matter, slot.start, epoch)
        raise Conflict(
            str(exc), reason="slot_full",
            next_free=await _next_free(uow, matter, slot.start, memory, epoch),
        ) from None  # fmt: skip
    if postgres:
        row = BookingRow(id=taken.booking_id, **values)
        booking.events.clear()  # logged by the statement itself
        uow.note_recorded()
    else:
        uow.collect(booking.events)
    await uow.commit()
    if taken.filled and memory is not None:  # this one took the last place
        memory.learned_full(c.hall_id, matter, slot.start, epoch)
    return booking_out(row, matter)


DAY_MARGIN = timedelta(hours=2)
"""The per-day limit's day, widened for the one-statement booking (stricter, never laxer)."""


async def _book_at_once(
    uow: UnitOfWork, c: BookSlot, now: datetime, memory: SlotMemory | None, epoch: int | None
) -> BookingOut | None:
    """PostgreSQL, with the matter's configuration read before: try the whole booking in one
    statement (``store.book_at_once``) after the checks that need no database. None when it
    could not book (or was not tried): ``book_slot`` then books in a transaction, which
    decides again and says why."""
    known = current_config(c.hall_id, c.service_id)
    engine = uow.session.bind
    if known is None or not isinstance(engine, AsyncEngine):
        return None
    if engine.dialect.name != "postgresql":
        return None
    matter, config = known
    rules = matter.rules
    if (
        matter.service.booking is None
        or not matter.service.active
        or (rules.target_load is not None and rules.capacity is None)  # places planned
    ):
        return None
    slot = matter.slot_at(c.slot_start)
    if slot is None:
        return None
    try:
        phone, tail, name = _contact(c)
        if phone is None and c.staff_id is None:
            return None
        _check_bookable(slot, now, matter)
        booking = make_booking(
            hall_id=c.hall_id, service_id=c.service_id, slot=slot, name=name, phone=phone,
            id_tail=tail, code=new_code(secrets.randbelow), now=now, tz=matter.tz,
            rules=rules, taken=0, existing=[],
        )  # fmt: skip
    except DomainError:
        return None
    day = slot.start.astimezone(matter.tz).date()
    day_from = datetime.combine(day, time(0), tzinfo=matter.tz).astimezone(UTC) - DAY_MARGIN
    day_until = day_from + timedelta(days=1) + 2 * DAY_MARGIN
    keys = holder_keys(phone, tail, name)
    values = _booking_values(c, 0, slot, booking, now)
    del values["slot_id"]
    if memory is not None:
        memory.listen(c.hall_id)
    try:
        taken = await book_at_once(
            engine, booking.events, **values, config=config, keys=keys,
            key_count=len(keys), max_active=rules.max_active_per_matter,
            max_per_day=rules.max_per_day, day_from=day_from, day_until=day_until,
            places=slot.bookable,
        )  # fmt: skip
    except IntegrityError as exc:  # the random code clashed with a stored one: draw again
        raise RetryTransaction from exc
    if taken is None:
        return None
    uow.note_recorded()  # the statement wrote the events and committed
    await uow.commit()
    if taken.filled and memory is not None:
        memory.learned_full(c.hall_id, matter, slot.start, epoch)
    assert taken.slot_id is not None
    return booking_out(BookingRow(id=taken.booking_id, **values, slot_id=taken.slot_id), matter)


def _booking_values(
    c: BookSlot, slot_id: int, slot: Slot, booking: Booking, now: datetime
) -> dict[str, Any]:
    """The new booking's row."""
    return {
        "hall_id": c.hall_id, "service_id": c.service_id, "slot_id": slot_id,
        "slot_start": slot.start, "code": booking.code, "name": booking.name,
        "phone": booking.phone, "id_tail": booking.id_tail, "state": str(booking.state),
        "channel": "staff" if c.staff_id else "online", "made_by_user_id": c.staff_id,
        "made_at": now,
    }  # fmt: skip


def _full_message(matter: Matter, slot: Slot) -> str:
    return _full_text(slot.start, matter.tz)


@lru_cache(maxsize=4096)
def _full_text(start: datetime, tz: ZoneInfo) -> str:
    """Remembered: a rush refuses the same slots over and over."""
    local = start.astimezone(tz)
    return (
        f"the {local:%H:%M} slot on {local:%Y-%m-%d} is fully booked; "
        "choose another time (the next free ones are listed)"
    )


async def find_booking(
    uow: UnitOfWork, code: str, phone: str | None, hall_id: int | None, *, lock: bool = False
) -> BookingRow:
    """The booking of ``code``: online only with its phone number, for staff in their hall.
    A wrong phone answers like an unknown code, so codes cannot be probed."""
    clean = normalise_code(code)
    row = await BookingStore(uow.session).by_code(clean, lock=lock) if clean else None
    if hall_id is not None:
        if row is None or row.hall_id != hall_id:
            raise NotFound(f"hall {hall_id} has no booking with code {code!r}")
        return row
    given = contact.normalise_phone(phone or "") if phone else None
    if row is None or given is None or row.phone != given:
        raise NotFound(
            "no booking has this code and phone number; check both (the code has 8 "
            "letters and digits, without 0, O, 1 or I)"
        )
    return row


async def matter_of(uow: UnitOfWork, row: BookingRow) -> Matter:
    return await load_matter(uow, row.hall_id, row.service_id, for_booking=False)


async def view_booking(
    uow: UnitOfWork, code: str, phone: str | None, hall_id: int | None = None
) -> BookingOut:
    """The booking; once checked in, with its ticket's follow token."""
    row = await find_booking(uow, code, phone, hall_id)
    out = booking_out(row, await matter_of(uow, row))
    if row.ticket_id is None:
        return out
    token = await uow.session.scalar(
        select(VisitRow.follow_token)
        .join(TicketRow, TicketRow.visit_id == VisitRow.id)
        .where(TicketRow.id == row.ticket_id)
    )
    return replace(out, follow_token=token)


async def cancel_booking(uow: UnitOfWork, c: CancelBooking) -> BookingOut:
    """Give the place back. Online until the cutoff; staff until the slot has begun."""
    row = await find_booking(uow, c.code, c.phone, c.hall_id, lock=True)
    matter = await matter_of(uow, row)
    booking = booking_from_row(row, matter.tz.key)
    now = uow.clock.now()
    rules = matter.rules
    if c.hall_id is not None:
        # At the desk the visitor is there in person: staff may cancel up to the slot.
        rules = _with_cutoffs(rules, timedelta(0))
    booking.cancel(now, rules)
    apply_booking(row, booking)
    row.ended_at = now
    await BookingStore(uow.session).give_back_place(row.slot_id)
    uow.collect(booking.events)
    await uow.commit()
    return booking_out(row, matter)


def _with_cutoffs(rules: BookingRules, cutoff: timedelta) -> BookingRules:
    return replace(rules, cancel_cutoff=cutoff, reschedule_cutoff=cutoff)


async def reschedule_booking(uow: UnitOfWork, c: RescheduleBooking) -> BookingOut:
    """Move to another slot of the same matter, keeping the code: the new place is taken
    with the same conditional update as a booking, the old one given back."""
    row = await find_booking(uow, c.code, c.phone, c.hall_id, lock=True)
    matter = await matter_of(uow, row)
    if matter.service.booking is None:
        raise Conflict(f"matter {matter.service.name_en} is no longer booked online")
    store = BookingStore(uow.session)
    now = uow.clock.now()
    rules = matter.rules if c.hall_id is None else _with_cutoffs(matter.rules, timedelta(0))
    slot = await _slot(uow, matter, c.slot_start)
    booking = booking_from_row(row, matter.tz.key)
    new_slot_id = await store.slot_id(row.hall_id, row.service_id, slot)
    booked, _ = await store.booked(new_slot_id)
    await store.lock_holder(row.hall_id, holder_keys(row.phone, row.id_tail, row.name), now)
    existing = [
        booking_from_row(r, matter.tz.key)
        for r in await store.bookings_of(row.hall_id, row.phone, row.id_tail)
    ]
    try:
        booking.reschedule(slot, now, rules, taken=booked, existing=existing)
        if await store.take_place(new_slot_id) is None:
            raise SlotFull(_full_message(matter, slot))
    except SlotFull as exc:
        raise Conflict(
            str(exc), reason="slot_full", next_free=await _next_free(uow, matter, slot.start)
        ) from None
    await store.give_back_place(row.slot_id)
    row.slot_id = new_slot_id
    apply_booking(row, booking)
    row.reminded_at = None
    uow.collect(booking.events)
    await uow.commit()
    return booking_out(row, matter)


async def list_slots(
    uow: UnitOfWork, hall_id: int, service_id: int, first_day: date | None, days: int
) -> SlotsOut:
    """The matter's open slots and free places, by hall date, from ``first_day`` (default
    today) over ``days`` days of the booking window: the slots come from the rules, the
    booked places from one query."""
    if not 1 <= days <= MAX_DAYS_LISTED:
        raise Invalid("days", f"give 1 to {MAX_DAYS_LISTED} days")
    matter = await load_matter(uow, hall_id, service_id)
    now = uow.clock.now()
    tz, rules = matter.tz, matter.rules
    first_day = first_day or now.astimezone(tz).date()
    open_days = [
        d
        for d in bookable_days(now, tz, rules)
        if first_day <= d < first_day + timedelta(days=days)
    ]
    planned = {d: matter.slots(d, await demand_of(uow, matter, d)) for d in open_days}
    starts = [s for slots in planned.values() for s in slots]
    counts: dict[datetime, SlotCount] = {}
    if starts:
        counts = await BookingStore(uow.session).counts(service_id, starts[0].start, starts[-1].end)
    out = []
    for day, slots in planned.items():
        shown = []
        for s in slots:
            if s.start <= now:
                continue
            stored = counts.get(s.start)
            places = stored.bookable if stored else s.bookable
            booked = stored.booked if stored else 0
            local = s.start.astimezone(tz)
            shown.append(SlotOut(s.start, s.end, f"{local:%H:%M}", places, max(0, places - booked)))
        out.append(DayOut(day.isoformat(), shown))
    all_open = bookable_days(now, tz, rules)
    upcoming = (all_open[-1] if all_open else now.astimezone(tz).date()) + timedelta(days=1)
    return SlotsOut(hall_id, service_id, tz.key, out, release_moment(upcoming, tz, rules))


@dataclass(frozen=True)
class BookingLine:
    """A booking in the staff's list of a day."""

    code: str
    state: str
    service_id: int
    slot_start: datetime
    local_time: str
    name: str
    phone: str | None
    id_tail: str | None
    channel: str
    ticket_id: int | None


async def list_bookings(
    uow: UnitOfWork, hall_id: int, day: date | None, service_id: int | None, phone: str | None
) -> list[BookingLine]:
    """A hall day's bookings for staff (full phone numbers: staff call visitors back)."""
    hall_row = await load_hall(uow, hall_id)
    tz = ZoneInfo(hall_row.timezone)
    day = day or uow.clock.now().astimezone(tz).date()
    start = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    stmt = select(BookingRow).where(
        BookingRow.hall_id == hall_id, BookingRow.slot_start >= start, BookingRow.slot_start < end
    )
    if service_id is not None:
        stmt = stmt.where(BookingRow.service_id == service_id)
    if phone:
        stmt = stmt.where(BookingRow.phone == contact.normalise_phone(phone))
    rows = (
        await uow.session.execute(stmt.order_by(BookingRow.slot_start, BookingRow.id))
    ).scalars()
    return [
        BookingLine(
            r.code, r.state, r.service_id, r.slot_start, f"{r.slot_start.astimezone(tz):%H:%M}",
            r.name, r.phone, r.id_tail, r.channel, r.ticket_id,
        )
        for r in rows
    ]  # fmt: skip
