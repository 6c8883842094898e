"""GET /api/halls/{id}/snapshot from memory: one database read per change of the hall.

The hall's hub (kept while HTTP readers come, released ``IDLE_SECONDS`` after the last)
applies every event in sequence; the snapshot is read from the database once when the hub
has moved past it with an event the snapshot shows, encoded, and served to every reader
until the next such event. Readers arriving together share one read (single flight). A
read that began before a reader arrived serves it only if it is at least as new as the
hub was then: no reader sees a sequence number older than an event its process had
applied when the request came.

What moves with the clock alone (the longest wait per matter, in whole minutes, and the
business day) is worked out again from the oldest waiting ticket's time kept with the
snapshot, so the bytes are re-encoded at most when a minute turns. What changes without
an event (names, matters, counters) is forgotten by realtime.invalidation; anything else
behind the server's back at most ``MAX_AGE_SECONDS`` late.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from litestar.response.base import ASGIResponse
from litestar.serialization import encode_json
from litestar.types import Receive, Scope, Send
from sqlalchemy import func, select

from queue_server.clock import Clock
from queue_server.db.repository import hall_from_row
from queue_server.db.tables import HallRow, TicketRow
from queue_server.domain.hours import business_day
from queue_server.domain.model import TicketState
from queue_server.service import views
from queue_server.service.bus import Bus
from queue_server.service.unit_of_work import UnitOfWork
from queue_server.service.views import HallSnapshot

from .hub import HallHub, HallsInUse, Hubs
from .invalidation import halls_named

IDLE_SECONDS = 60.0
"""A hall's hub is released this long after its last HTTP reader."""
MAX_AGE_SECONDS = 30.0
"""A snapshot is read again after this long even if nothing was heard to change it."""
MINUTE = timedelta(minutes=1)
JSON = b"application/json"


GZIP_MINIMUM = 1024
"""Answers this long or longer go gzipped to a client that takes gzip (the app's
``CompressionConfig`` and ``Encoded``)."""
PRECOMPRESSED = "precompressed"
"""The ``opt`` key of a route whose answers compress themselves (``Encoded``): the app's
compression middleware leaves them alone."""
_VARY = (b"vary", b"accept-encoding")
_GZIP = (b"content-encoding", b"gzip")


def accepts_gzip(scope: Scope) -> bool:
    """Whether the request's ``Accept-Encoding`` takes gzip, read from the raw ASGI headers:
    by name, or by ``*`` unless gzip itself is named; either with a weight above 0
    (``gzip;q=0`` refuses it; a weight that is not a number counts as none given)."""
    gzip_weight = any_weight = None
    for name, value in scope["headers"]:
        if name != b"accept-encoding":
            continue
        for coding in value.lower().split(b","):
            coding_name, *params = (part.strip() for part in coding.split(b";"))
            weight = 1.0
            for param in params:
                if param.startswith(b"q="):
                    try:
                        weight = float(param[2:])
                    except ValueError:
                        weight = 1.0
            if coding_name == b"gzip":
                gzip_weight = weight
            elif coding_name == b"*":
                any_weight = weight
    chosen = gzip_weight if gzip_weight is not None else any_weight
    return chosen is not None and chosen > 0


class Encoded(ASGIResponse):
    """A 200 JSON answer encoded beforehand, sent as it is by every request that gets it,
    and gzipped at most once, for the first request that takes gzip (a route answering
    with it is marked ``PRECOMPRESSED``): every board polling a hall shares one
    compression per change instead of one per request.

    Litestar's own response objects build, check and copy their headers on each request
    (about a tenth of a snapshot request's CPU); this one only makes the two messages.
    Middleware (the session cookie, security headers) still sees and may change those.
    """

    __slots__ = ("_gzipped", "_length")

    def __init__(self, body: bytes) -> None:  # ASGIResponse's own set-up is what is skipped
        self.body = body
        self._length = str(len(body)).encode()
        self._gzipped: tuple[bytes, bytes] | None = None

    def gzipped(self) -> tuple[bytes, bytes]:
        """The body gzipped (as the app's compression middleware would, at level 9, with
        no timestamp) and its length, made once."""
        if self._gzipped is None:
            body = gzip.compress(self.body, compresslevel=9, mtime=0)
            self._gzipped = body, str(len(body)).encode()
        return self._gzipped

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body, length = self.body, self._length
        headers = [(b"content-type", JSON), (b"content-length", length)]
        if len(body) >= GZIP_MINIMUM:
            if accepts_gzip(scope):
                body, length = self.gzipped()
                headers = [(b"content-type", JSON), (b"content-length", length), _GZIP]
            headers.append(_VARY)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if scope.get("method") == "HEAD":
            body = b""
        await send({"type": "http.response.body", "body": body, "more_body": False})


@dataclass(frozen=True)
class Loaded:
    """A hall snapshot as read, with what its clock-derived parts are computed from."""

    snapshot: HallSnapshot
    oldest: tuple[datetime | None, ...]
    """The oldest waiting ticket's ``queued_at`` per entry of ``snapshot.waiting``."""
    day: date
    tz: ZoneInfo

    @property
    def seq(self) -> int:
        return self.snapshot.seq


async def load(uow: UnitOfWork, hall_id: int) -> Loaded:
    """``views.hall_snapshot`` and, in the same transaction (REPEATABLE READ on
    PostgreSQL), the oldest waiting ticket of each matter."""
    snapshot = await views.hall_snapshot(uow, hall_id)
    hall_row = await uow.session.get(HallRow, hall_id)  # from the session: no query
    assert hall_row is not None
    day = date.fromisoformat(snapshot.business_day)
    rows = await uow.session.execute(
        select(TicketRow.service_id, func.min(TicketRow.queued_at))
        .where(
            TicketRow.hall_id == hall_id,
            TicketRow.business_day == day,
            TicketRow.state == TicketState.WAITING,
        )
        .group_by(TicketRow.service_id)
    )
    oldest = {service_id: at for service_id, at in rows}
    return Loaded(
        snapshot,
        tuple(oldest.get(w.service.id) for w in snapshot.waiting),
        day,
        hall_from_row(hall_row).tz,
    )


def longest_minutes(oldest: datetime | None, now: datetime) -> int:
    """Whole minutes the oldest ticket has waited (as views.hall_snapshot counts them)."""
    if oldest is None:
        return 0
    oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=now.tzinfo)
    return max(0, int((now - oldest).total_seconds() // 60))


@dataclass(eq=False)
class Entry:
    loaded: Loaded
    loaded_at: float
    """time.monotonic() when it was read."""
    answer: Encoded = field(default_factory=lambda: Encoded(b""))
    seq: int = -1
    """The sequence number ``answer`` says."""
    window: tuple[datetime, datetime] | None = None
    """While ``now`` is in it, the minutes in ``answer`` hold."""

    def answer_at(self, now: datetime, seq: int) -> Encoded:
        """The encoded snapshot at ``now``, saying ``seq`` (encoded again only when a minute
        turned or the sequence number moved)."""
        window = self.window
        if seq != self.seq or window is None or not window[0] <= now < window[1]:
            self._render(now, seq)
        return self.answer

    def _render(self, now: datetime, seq: int) -> None:
        snapshot = self.loaded.snapshot
        low, high = datetime.min.replace(tzinfo=now.tzinfo), datetime.max.replace(tzinfo=now.tzinfo)
        waiting = []
        for count, oldest in zip(snapshot.waiting, self.loaded.oldest, strict=True):
            minutes = longest_minutes(oldest, now)
            if oldest is not None:
                oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=now.tzinfo)
                high = min(high, oldest + (minutes + 1) * MINUTE)
                if minutes > 0:
                    low = max(low, oldest + minutes * MINUTE)
            waiting.append(dataclasses.replace(count, longest_wait_minutes=minutes))
        self.answer = Encoded(encode_json(dataclasses.replace(snapshot, seq=seq, waiting=waiting)))
        self.seq, self.window = seq, (low, high)

    def serves(self, shown_seq: int, now: datetime, max_age: float) -> bool:
        """Whether this snapshot still shows the hall as the hub knows it: no event it would
        show came since, it is not too old, and it is still its business day."""
        return (
            self.loaded.seq >= shown_seq
            and time.monotonic() - self.loaded_at < max_age
            and business_day(now, self.loaded.tz) == self.loaded.day
        )


@dataclass(eq=False)
class HallReads:
    """One hall's HTTP snapshot readers in this process."""

    hall_id: int
    hub: HallHub
    last_read: float
    entry: Entry | None = None
    loading: asyncio.Task[Entry] | None = None
    started: int = 0
    """Reads from the database begun so far."""
    generation: int = 0
    """Bumped when the hall's setup changed: a read begun before is not kept."""


@dataclass(eq=False)
class HallSnapshots:
    """The process's HTTP hall snapshots. Without ``hubs`` (several processes but no Redis
    to hear each other's events) every request reads the database, as it always did."""

    bus: Bus
    hubs: Hubs | None
    clock: Clock
    idle: float = IDLE_SECONDS
    max_age: float = MAX_AGE_SECONDS
    loads: int = 0
    """Snapshots read from the database (tests and benchmarks look)."""
    _in_use: HallsInUse[HallReads] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.hubs is not None:
            self._in_use = HallsInUse(
                self.hubs, lambda hall_id, hub: HallReads(hall_id, hub, time.monotonic())
            )

    @property
    def _halls(self) -> dict[int, HallReads]:
        return self._in_use.open if self._in_use is not None else {}

    async def answer(self, hall_id: int, since: int = 0) -> Encoded:
        """The hall's snapshot, JSON-encoded (HallSnapshot's shape); its ``seq`` is at least
        ``since`` (a number the caller saw, say in an event another process sent it), or the
        database's if that is lower."""
        if self.hubs is None:
            self.loads += 1
            return Encoded(encode_json(await self.bus.read(views.hall_snapshot, hall_id)))
        assert self._in_use is not None
        hall = await self._in_use.get(hall_id)
        hall.last_read = time.monotonic()
        hub = hall.hub
        shown, arrival = hub.shown_seq, hall.started
        while True:
            entry, now = hall.entry, self.clock.now()
            if entry is not None and entry.serves(shown, now, self.max_age):
                seq = self._seq(entry, hub)
                if seq >= since:
                    return entry.answer_at(now, seq)
            task = hall.loading or self._start_load(hall)
            number = hall.started
            entry = await asyncio.shield(task)
            if number > arrival:
                # Begun after this request came: as new as anything the hub had then.
                return entry.answer_at(self.clock.now(), self._seq(entry, hub))

    @staticmethod
    def _seq(entry: Entry, hub: HallHub) -> int:
        """The snapshot read at ``entry.loaded.seq`` is also the hall at the hub's later
        number when only events it does not show came in between."""
        if hub.shown_seq <= entry.loaded.seq:
            return max(entry.loaded.seq, hub.seq)
        return entry.loaded.seq

    def _start_load(self, hall: HallReads) -> asyncio.Task[Entry]:
        hall.started += 1
        generation = hall.generation

        async def read() -> Entry:
            try:
                self.loads += 1
                loaded = await self.bus.read(load, hall.hall_id)
            finally:
                hall.loading = None
            entry = Entry(loaded, time.monotonic())
            kept = hall.entry
            if generation == hall.generation and (kept is None or loaded.seq >= kept.loaded.seq):
                hall.entry = entry
            return entry

        task = asyncio.create_task(read(), name=f"snapshot-{hall.hall_id}")
        # Every reader may have gone (clients hung up); the failure is theirs, not a leak.
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
        hall.loading = task
        return task

    def forget(self, keys: frozenset[str]) -> None:
        """Setup changed (realtime.invalidation): read these halls again on the next request."""
        changed = self._in_use.named(halls_named(keys)) if self._in_use is not None else []
        for hall in changed:
            hall.entry = None
            hall.generation += 1

    async def release_idle(self) -> None:
        """Give back the hubs of halls nobody read for ``idle`` seconds."""
        assert self._in_use is not None
        await self._in_use.release_idle(self.idle)

    async def run(self) -> None:
        """Release idle halls until cancelled."""
        if self._in_use is not None:
            await self._in_use.release_every(lambda: self.idle)

    async def close(self) -> None:
        if self._in_use is not None:
            await self._in_use.close()

    def __len__(self) -> int:
        return len(self._halls)
