"""What a process remembers of its halls' slots between bookings: which are full, and which
have a free place (a refusal's suggestions). In a rush most attempts aim at slots already
full; with this memory their 409 is answered without a database transaction.

The database stays the judge of every booking: the memory never books, it only refuses,
and only what the database itself answered recently. A slot is remembered as full when a
booking attempt read it full, failed to take its place, or took its last one (then only
once that booking committed). It is forgotten

- at once, in this process, when a commit gives a place back or adds places: the store
  (``give_back_place``, ``ensure_slots``) notes the slot and ``forget_after_commit`` runs
  when the transaction has committed, before the request that made it answers;
- when a commit in another process gives a place back: its event (``BookingCancelled``,
  ``BookingRescheduled``'s ``from_start``, ``BookingMarkedNoShow``) reaches this process on
  the hall's channel (Redis), which the memory follows for each hall it answers for;
- within ``REFRESH`` seconds otherwise: while it holds anything for a hall that bookings
  asked about in the last ``IDLE`` seconds (else it forgets the hall), the memory reads
  the hall's matters again every ``REFRESH`` seconds (their configuration and free slots,
  one transaction), drops what that contradicts and renews the rest. This catches
  what changes without such an event: a manager raising a slot's places from another
  process, a message lost while Redis was away, processes sharing PostgreSQL without
  Redis, a matter taken offline. If reading fails, the hall is forgotten; what was not
  confirmed within ``TTL`` seconds is not trusted.

A mark is made only if nothing in the hall was given back since the request began reading
(the hall's ``epoch``): a "full" read just before a cancellation committed never outlives
that cancellation's invalidation. The memory answers only for halls whose channel it has
subscribed to; without channels (a service called outside the app) it answers nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from booking import slot_news

if TYPE_CHECKING:
    from litestar.channels import ChannelsPlugin

    from booking.context import Matter

log = logging.getLogger("onedoor.booking")

REFRESH = 1.0
"""Seconds between two readings of what the memory holds for a hall."""
IDLE = 60.0
"""A hall nobody booked in for this long is forgotten rather than read again."""
TTL = 3.0
"""Seconds a full mark or a free list is trusted without a reading confirming it."""
FREEING_EVENTS = frozenset({"BookingCancelled", "BookingMarkedNoShow"})
"""Events whose ``slot_start`` has one place more (``BookingRescheduled``: its ``from_start``)."""


@dataclass(frozen=True)
class FreeList:
    """The starts of a matter's stored slots with a free place, as the database listed them."""

    matter: Matter
    until: datetime
    """The end of the booking window the list was read for."""
    starts: tuple[datetime, ...]
    complete: bool
    """Every free slot before ``until`` is listed (the read was not cut at its limit)."""
    read_at: float


@dataclass(frozen=True)
class Reading:
    """What ``Refresh`` read of one matter: its configuration now (None if it is no longer
    booked online) and its free slots before the end of its booking window."""

    matter: Matter | None
    until: datetime | None
    starts: Sequence[datetime]
    complete: bool


Refresh = Callable[[int, list["Matter"]], Awaitable[dict[int, Reading]]]
"""Reads the hall's matters (by matter id); given by the service layer."""


@dataclass
class _Hall:
    epoch: int = 0
    listening: bool = False
    full: dict[tuple[int, datetime], tuple[float, Matter]] = field(default_factory=dict)
    """(matter, slot start) → (when last confirmed, the matter's snapshot)."""
    free: dict[int, FreeList] = field(default_factory=dict)
    asked_at: float = 0.0
    """When a booking last asked about the hall (its reading stops when nobody does)."""


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _still_full(start: datetime, reading: Reading) -> bool:
    """The reading shows the slot at ``start`` without a free place (a slot past its end,
    or past the end of a list cut short, is not shown either way)."""
    if reading.until is None or start >= reading.until or start in reading.starts:
        return False
    return reading.complete or (bool(reading.starts) and start < max(reading.starts))


class SlotMemory:
    """One process's memory of its halls' full slots (one per app: per channels plugin)."""

    def __init__(
        self,
        channels: ChannelsPlugin | None,
        refresh: Refresh | None = None,
        *,
        ttl: float = TTL,
        every: float = REFRESH,
        monotonic: Callable[[], float] = time.monotonic,
        channel_of: Callable[[int], str] | None = None,
    ) -> None:
        self._channels = channels
        self._refresh = refresh
        self._ttl = ttl
        self._every = every
        self._now = monotonic
        self._channel_of = channel_of
        self._halls: dict[int, _Hall] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.learned = 0
        """How many times a slot became known full: bookings waiting their turn
        (``BookingGate``) look again when it moves."""
        slot_news.listen(self)

    # -- following the halls' channels ------------------------------------------------

    def listen(self, hall_id: int) -> None:
        """Follow the hall's channel from now on (a task subscribes; until it has, the
        memory answers nothing for the hall)."""
        if self._channels is None or hall_id in self._tasks:
            return
        self._tasks[hall_id] = asyncio.get_running_loop().create_task(
            self._follow(hall_id), name=f"slot-memory-{hall_id}"
        )

    async def _follow(self, hall_id: int) -> None:
        assert self._channels is not None
        channel = self._channel_name(hall_id)
        try:
            subscriber = await self._channels.subscribe([channel])
        except Exception as exc:  # the broker is away: a later booking tries again
            log.warning("slot memory: cannot follow hall %s (%s)", hall_id, exc)
            self._tasks.pop(hall_id, None)
            return
        hall = self._halls.setdefault(hall_id, _Hall())
        hall.listening = True
        hall.epoch += 1  # what was read before the subscription is not to be marked
        reading = asyncio.create_task(self._read_again(hall_id), name=f"slot-memory-{hall_id}-read")
        try:
            async for payload in subscriber.iter_events():
                self.heard(hall_id, payload)
        except Exception:
            log.exception("slot memory: hall %s's channel failed; forgetting the hall", hall_id)
        finally:
            reading.cancel()
            hall.listening = False
            self.forget_hall(hall_id)
            self._tasks.pop(hall_id, None)
            with contextlib.suppress(Exception):
                await asyncio.shield(self._channels.unsubscribe(subscriber))

    async def _read_again(self, hall_id: int) -> None:
        """Every ``REFRESH`` seconds, while the hall holds anything, ``refresh`` it."""
        while True:
            await asyncio.sleep(self._every)
            try:
                await self.refresh(hall_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("slot memory: cannot read hall %s again (%s); forgetting it",
                            hall_id, exc)  # fmt: skip
                self.forget_hall(hall_id)

    async def refresh(self, hall_id: int) -> None:
        """Read the hall's remembered matters again: a slot now listed free, or of a matter
        whose configuration changed, is no longer full; the free lists are renewed."""
        hall = self._halls.get(hall_id)
        if self._refresh is None or hall is None or not (hall.full or hall.free):
            return
        if hall.asked_at + IDLE <= self._now():
            self.forget_hall(hall_id)  # no rush here any more: no reading every second
            return
        matters = {matter.service.id: matter for _, matter in hall.full.values()}
        for service_id, free in hall.free.items():
            matters.setdefault(service_id, free.matter)
        started, epoch = self._now(), hall.epoch
        readings = await self._refresh(hall_id, list(matters.values()))
        for key, (confirmed, matter) in list(hall.full.items()):
            reading = readings.get(key[0])
            if reading is None or reading.matter is not matter or not _still_full(key[1], reading):
                del hall.full[key]
            elif confirmed < started:
                hall.full[key] = (started, matter)
        if hall.epoch != epoch:
            return  # a place freed meanwhile: these lists may miss it
        for service_id, reading in readings.items():
            if reading.matter is None or reading.until is None:
                hall.free.pop(service_id, None)
                continue
            hall.free[service_id] = FreeList(
                reading.matter, reading.until, tuple(_utc(s) for s in reading.starts),
                reading.complete, started,
            )  # fmt: skip

    def _channel_name(self, hall_id: int) -> str:
        if self._channel_of is not None:
            return self._channel_of(hall_id)
        from queue_server.realtime.channels import hall_channel

        return hall_channel(hall_id)

    async def close(self) -> None:
        """Stop following every hall (tests; the app's loop ending does it too)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def heard(self, hall_id: int, payload: bytes | str) -> None:
        """An event of the hall, as the relay publishes it: a place given back is forgotten
        as full; a new day released drops the matter's free list."""
        try:
            message = msgspec.json.decode(payload)
            name, data = message["name"], message["data"]
            service_id = int(data["service_id"]) if "service_id" in data else None
            if name in FREEING_EVENTS and service_id is not None:
                self.freed(hall_id, service_id, datetime.fromisoformat(data["slot_start"]))
            elif name == "BookingRescheduled" and service_id is not None:
                self.freed(hall_id, service_id, datetime.fromisoformat(data["from_start"]))
            elif name == "BookingDayReleased" and service_id is not None:
                self.slots_changed(hall_id, service_id)
        except (msgspec.DecodeError, KeyError, TypeError, ValueError):
            log.warning("slot memory: unreadable event %r; forgetting the hall", payload[:200])
            self.forget_hall(hall_id)

    # -- what the booking path asks and tells -----------------------------------------

    def epoch(self, hall_id: int) -> int | None:
        """Read before the database is: hand it back with what was learned. None when the
        memory does not answer for the hall (nothing will be kept)."""
        hall = self._halls.get(hall_id)
        if hall is None or not hall.listening:
            return None
        hall.asked_at = self._now()
        return hall.epoch

    def full_matter(self, hall_id: int, service_id: int, start: datetime) -> Matter | None:
        """The matter's snapshot if its slot at ``start`` is known full, else None."""
        hall = self._halls.get(hall_id)
        if hall is None or not hall.listening:
            return None
        key = (service_id, _utc(start))
        mark = hall.full.get(key)
        if mark is None:
            return None
        now = self._now()
        if mark[0] + self._ttl <= now:
            del hall.full[key]
            return None
        hall.asked_at = now
        return mark[1]

    def is_full(self, hall_id: int, service_id: int, start: datetime) -> bool:
        return self.full_matter(hall_id, service_id, start) is not None

    def learned_full(
        self, hall_id: int, matter: Matter, start: datetime, epoch: int | None
    ) -> None:
        """The database said the slot is full, to a request that read ``epoch`` first."""
        hall = self._halls.get(hall_id)
        if epoch is None or hall is None or not hall.listening or hall.epoch != epoch:
            return
        key = (matter.service.id, _utc(start))
        if key not in hall.full:
            self.learned += 1
        hall.full[key] = (self._now(), matter)

    def free_list(self, hall_id: int, service_id: int, until: datetime) -> FreeList | None:
        hall = self._halls.get(hall_id)
        if hall is None or not hall.listening:
            return None
        found = hall.free.get(service_id)
        if found is None or found.until != until or found.read_at + self._ttl <= self._now():
            return None
        return found

    def keep_free_list(
        self,
        hall_id: int,
        matter: Matter,
        until: datetime,
        starts: Sequence[datetime],
        complete: bool,
        epoch: int | None,
    ) -> None:
        hall = self._halls.get(hall_id)
        if epoch is None or hall is None or not hall.listening or hall.epoch != epoch:
            return
        hall.free[matter.service.id] = FreeList(
            matter, until, tuple(_utc(s) for s in starts), complete, self._now()
        )

    # -- forgetting --------------------------------------------------------------------

    def freed(self, hall_id: int, service_id: int, start: datetime) -> None:
        """A place of the slot was given back (or places were added)."""
        hall = self._halls.get(hall_id)
        if hall is None:
            return
        hall.epoch += 1
        hall.full.pop((service_id, _utc(start)), None)
        hall.free.pop(service_id, None)

    def slots_changed(self, hall_id: int, service_id: int) -> None:
        """Slots of the matter were stored: its free list misses them."""
        hall = self._halls.get(hall_id)
        if hall is None:
            return
        hall.epoch += 1
        hall.free.pop(service_id, None)

    def forget_hall(self, hall_id: int) -> None:
        hall = self._halls.get(hall_id)
        if hall is None:
            return
        hall.epoch += 1
        hall.full.clear()
        hall.free.clear()


_BY_CHANNELS: weakref.WeakKeyDictionary[Any, SlotMemory] = weakref.WeakKeyDictionary()


def memory_of(channels: ChannelsPlugin, refresh: Refresh | None = None) -> SlotMemory:
    """The memory of the app whose channels these are (made on first use, reading its
    halls again with ``refresh``)."""
    memory = _BY_CHANNELS.get(channels)
    if memory is None:
        memory = _BY_CHANNELS[channels] = SlotMemory(channels, refresh)
    return memory
