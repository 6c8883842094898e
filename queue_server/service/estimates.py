"""What a waiting visitor is told (estimate v2), with one projection per hall state.

Every follower of a hall re-reads their ticket when the queue moves, and every kiosk
answer tells the new ticket's wait; the projection of the whole queue answers all of them,
so it is made once per hall at a time (whoever asks meanwhile waits for it, or for the next
one when they need a newer state) and told from a few seconds (the clock moves on; the next
event makes a new one anyway). A new one is made from the last one's waiting tickets and
the hall's log since, while the log holds only walk-ins (and events the estimate does not
read), for up to half a minute after everyone waiting was read: a walk-in is added to the
projection, and past those few seconds it is played again from now, with the rest of the
floor read again.

Playing a hall's projection again, or reading its floor whole again, takes a busy hall a
tenth of a second or more of CPU. While it is due but not overdue it is done beside the
answers (``_refresh_beside``): the play in a thread, so that the event loop goes on serving
(the server makes the interpreter change threads every half millisecond,
``asgi.SWITCH_INTERVAL``, so the loop waits that long at most for its turn), and the
answers meanwhile told from the projection as it was, extended with the walk-ins since,
for at most ``TOLD_PAST_DUE_AT_MOST`` more seconds.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select

from queue_server.db import driven
from queue_server.db import statements as sql
from queue_server.db.repository import hall_from_row, policy_of
from queue_server.db.tables import HallRow
from queue_server.domain.estimate import (
    Told,
    Traced,
    project_traced,
    queue_order,
    resume,
    tell_traced,
)
from queue_server.domain.floor import Candidate, Floor
from queue_server.domain.hours import business_day
from queue_server.domain.model import Hall, TicketKind
from queue_server.domain.policy import Chooser, PolicyConfig, chooser

from .floor import hall_floor
from .unit_of_work import UnitOfWork

log = logging.getLogger(__name__)
_HALL_POLICY = select(
    HallRow.event_seq, HallRow.priority_boosts, HallRow.secondary_after_minutes
).where(HallRow.id == bindparam("hall"))
KEEP_SECONDS = 5.0
"""A projection is told from this long after its start (``made``); then it is played again
from now (its turns start from the floor as it is then)."""
READ_AGAIN_SECONDS = 30.0
"""How long the waiting tickets of a floor read whole are kept up from the log (walk-ins
added; the rest of the floor read again each time it is played again) before everyone
waiting is read again too."""
TOLD_PAST_DUE_AT_MOST = 5.0
"""How long past its ``KEEP_SECONDS`` (or its floor's ``READ_AGAIN_SECONDS``) a projection
is still told from while it is played again (or read again) beside the answers; past this
an asker does it itself, and waits for it, as when nothing is done beside."""
KEEP_HALLS = 1024
EXTEND_AT_MOST = 500
"""Past this many events since the last floor read, the floor is read whole again."""
FLOOR_NEUTRAL = frozenset(
    {"PrintJobQueued", "PrintJobPrinted", "PrintJobFailed", "PrinterStatusChanged",
     "HallNoticeChanged", "ServiceRated", "TicketEscalated", "OutcomeCorrected",
     "CaseChanged"}
)  # fmt: skip
"""Events that change nothing the estimate reads (an escalation's new ticket comes with
its own ``TicketIssued``)."""


@dataclass(frozen=True)
class _Projection:
    made: float
    """When it starts: when its floor was read, or played again (``time.monotonic()``)."""
    seq: int
    traced: Traced
    choose: Chooser
    """The hall's queue policy, read with the floor (an extension keeps its projection's):
    every answer from this projection is told with it, whoever asked."""
    whole: bool = False
    """Whether its floor was read whole (not extended from an earlier projection)."""
    orders: dict[int, list[int]] = field(default_factory=dict)
    """Per matter no open counter serves, its queue's order (made when first asked)."""
    read: float = -math.inf
    """When the floor it was kept up from was read whole (``time.monotonic()``); a
    projection read whole sets it to ``made``."""

    def __post_init__(self) -> None:
        if self.read == -math.inf:
            object.__setattr__(self, "read", self.made)

    @property
    def floor(self) -> Floor:
        return self.traced.floor


@dataclass(frozen=True)
class Joined:
    """A walk-in just issued, as the asker of its estimate knows it, and how many events its
    issue logged: the hall's events ``need - logged + 1`` to ``need`` (its
    ``TicketIssued``, then its ``PrintJobQueued`` if any), what the log read since the
    projection before them would hold (``told_at``)."""

    walk_in: Candidate
    logged: int


_projections: dict[int, _Projection] = {}
_making: dict[int, tuple[int, asyncio.Future[_Projection]]] = {}
"""Per hall, the projection being made: the event number its floor includes, and it."""
_beside: dict[int, tuple[float, asyncio.Task[None]]] = {}
"""Per hall, the projection being played again (or read again) beside the answers: the
``made`` of the one it starts from, and its task."""
PLAYED_ON_THE_LOOP_AT_MOST = 1000
"""A projection an asker makes (``_make``) of a floor with up to this many waiting is played
on the event loop (a few ms); a longer one in a thread, as one played beside the answers
is: the asker waits for it, and the loop serves everyone else meanwhile, the thread
handing the interpreter back every switch interval. On the loop, 30,000 waiting took 80–90
ms of CPU and held a busy worker's loop 190–216 ms (the first follower after a quiet spell,
docs/performance.md, "2026-12-07, night")."""

_refreshing = True
"""Whether a projection due may be refreshed beside the answers (not once ``stop`` ran)."""


async def told(uow: UnitOfWork, hall_row: HallRow, ticket_id: int) -> Told | None:
    """What the visitor of waiting ticket ``ticket_id`` is told now (None: no open counter
    serves their matter, so nobody can say).

    ``hall_row`` was read in the caller's transaction, after the ticket was committed: any
    projection of a floor that includes the hall's event ``hall_row.event_seq`` includes the
    ticket. One projection is made per hall at a time; whoever needs a newer one than the
    one being made waits for it and then makes the next, which every request waiting
    meanwhile shares. So a rush of kiosks costs one projection per projection time, not
    one per ticket, and each visitor is still told from a floor that holds their ticket.
    """
    return await told_at(uow, hall_from_row(hall_row), hall_row.event_seq, ticket_id)


async def told_at(
    uow: UnitOfWork, hall: Hall, need: int, ticket_id: int, joined: Joined | None = None
) -> Told | None:
    """``told`` for a ticket the hall's events up to number ``need`` include: from a
    projection at least that new (kept, being made, or made now with ``uow``). ``hall``
    gives its id and time zone; the queue policy is read with the floor, so a caller
    holding an older copy of the hall (a follower's feed) cannot make a projection with
    an outdated policy for everyone.

    ``joined``: the asker's own walk-in, whose events end at ``need``. When the kept
    projection stops just before them, nothing else was logged in between: it is
    extended with the walk-in as the log would extend it, without reading the log or
    taking a connection (``_extended_by``)."""
    connected = False
    while True:
        kept = kept_projection(hall.id, need)
        if kept is not None:
            break
        making = _making.get(hall.id)
        if making is not None:
            try:
                shared = await asyncio.shield(making[1])
            except Exception as exc:
                log.info("hall %s: a shared projection failed (%s); making one", hall.id, exc)
                continue
            if shared.seq >= need:
                kept = shared
                break
            continue
        if joined is not None:
            kept = _extended_by(uow, hall, need, joined)
            if kept is not None:
                break
            joined = None  # the long way from here on
        if not connected:
            # A maker holds its unit of work's connection (on SQLite: the database's write
            # lock, BEGIN IMMEDIATE) before it says it is making: its reads then need
            # nothing anyone holds, so whoever waits for it (with or without a
            # transaction) is answered. A maker that said so first and then waited for
            # the lock held by a request waiting for it would stall both for the busy
            # timeout. Connected, look again: one may have been made meanwhile.
            await uow.connect()
            connected = True
            continue
        # The last one, too old or not new enough, may still be extended.
        kept = await _make(uow, hall.id, need, hall.tz, _projections.get(hall.id))
        break
    return tell_kept(kept, ticket_id, uow.clock.now())


def kept_projection(hall_id: int, need: int) -> _Projection | None:
    """The hall's kept projection if it holds its events up to ``need`` and is fresh
    enough to tell from (``told_at`` makes one otherwise)."""
    kept = _projections.get(hall_id)
    if kept is None or kept.seq < need:
        return None
    age = time.monotonic() - kept.made
    if age < KEEP_SECONDS:
        return kept
    beside = _beside.get(hall_id)
    if beside is not None and beside[0] == kept.made and age < KEEP_SECONDS + TOLD_PAST_DUE_AT_MOST:
        return kept  # while it is played again beside
    return None


def tell_kept(kept: _Projection, ticket_id: int, now: datetime) -> Told | None:
    """What ``told_at`` tells from projection ``kept``: nothing to read, no unit of work."""
    # The projection starts when its floor was read or played again (at most
    # ``KEEP_SECONDS`` ago): the wait is told from now.
    made = kept

    def orders(service_id: int) -> list[int]:
        if service_id not in made.orders:
            floor = replace(made.floor, now=now)
            made.orders[service_id] = queue_order(service_id, floor, made.choose)
        return made.orders[service_id]

    return tell_traced(ticket_id, kept.traced, now, kept.choose, orders)


async def _make(
    uow: UnitOfWork,
    hall_id: int,
    need: int,
    tz: ZoneInfo,
    last: _Projection | None,
) -> _Projection:
    making: asyncio.Future[_Projection] = asyncio.get_running_loop().create_future()
    _making[hall_id] = (need, making)
    try:
        now = uow.clock.now()
        kept = None
        if (
            last is not None
            and _overdue(last) != "read"
            # A new business day waits for its own tickets only: read it whole.
            and business_day(last.floor.now, tz) == business_day(now, tz)
        ):
            kept = await _extended(uow, hall_id, last)
            if kept is not None and kept.seq < need:
                kept = None  # the log did not reach the asker's event yet: read it all
            elif kept is not None and _due(kept) and not _refresh_beside(uow, hall_id, kept, tz):
                if _overdue(kept) == "read":
                    kept = None
                else:
                    kept = await _played_again(uow, hall_id, kept, now, tz)
        if kept is None:
            # Everything committed up to this number is in the floor read next. Columns,
            # not the row: a row this session holds already would not be read again.
            seq, choose = await _hall_policy(uow, hall_id, tz)
            _making[hall_id] = (max(need, seq), making)
            day = business_day(now, tz)
            known = _waiting_of_day(last, day, tz) if last is not None else ()
            floor = await hall_floor(uow, hall_id, day, now, known=known)
            seq = max(need, seq)
            traced = await _played(floor, choose)
            kept = _Projection(time.monotonic(), seq, traced, choose, whole=True)
        making.set_result(kept)
    except BaseException as exc:
        making.set_exception(exc)
        making.exception()  # retrieved: waiters get it, nobody warns
        raise
    finally:
        if _making.get(hall_id, (0, None))[1] is making:
            del _making[hall_id]
    return _keep(hall_id, kept)


def _keep(hall_id: int, kept: _Projection) -> _Projection:
    """Keep ``kept`` as the hall's projection (unless one made later is kept already), and
    forget those past their time."""
    # A projection keeps its turns (a few hundred KiB for a hall with a thousand
    # waiting): those too old to be used or extended go.
    expired = [
        h for h, p in _projections.items() if time.monotonic() - p.read >= READ_AGAIN_SECONDS
    ]
    for gone in expired:
        del _projections[gone]
    if len(_projections) >= KEEP_HALLS:
        _projections.clear()
    current = _projections.get(hall_id)
    # One played again beside meanwhile starts later than this extension of the one it
    # was played from: it stays (the next asker extends it with the walk-ins since).
    if current is None or current.made <= kept.made:
        _projections[hall_id] = kept
    return kept


def _due(kept: _Projection) -> bool:
    """Whether ``kept`` is past its ``KEEP_SECONDS``, or its floor's ``READ_AGAIN_SECONDS``."""
    now = time.monotonic()
    return now - kept.made >= KEEP_SECONDS or now - kept.read >= READ_AGAIN_SECONDS


def _overdue(kept: _Projection) -> str | None:
    """``"read"`` when ``kept``'s floor must be read whole before it is told from again,
    ``"play"`` when it must be played again first, None when it may still be told from
    (``TOLD_PAST_DUE_AT_MOST`` past being due, while it is refreshed beside)."""
    now = time.monotonic()
    if now - kept.read >= READ_AGAIN_SECONDS + TOLD_PAST_DUE_AT_MOST:
        return "read"
    if now - kept.made >= KEEP_SECONDS + TOLD_PAST_DUE_AT_MOST:
        return "play"
    return None


def _refresh_beside(uow: UnitOfWork, hall_id: int, kept: _Projection, tz: ZoneInfo) -> bool:
    """Have ``kept`` (due) played again, or its floor read whole again, beside the answers,
    unless it is overdue (False: the asker does it). True: it may be told from meanwhile."""
    if _overdue(kept) is not None or not _refreshing:
        return False
    current = _projections.get(hall_id)
    if current is not None and current.made > kept.made:
        return True  # already made anew (beside, or by an asker) since this asker began
    if hall_id not in _beside:
        task = asyncio.get_running_loop().create_task(
            _refreshed(uow.another(), hall_id, kept, tz), name=f"projection of hall {hall_id}"
        )
        _beside[hall_id] = (kept.made, task)
        task.add_done_callback(lambda done: _refresh_done(hall_id, done))
    return True


def _refresh_done(hall_id: int, done: asyncio.Task[None]) -> None:
    if _beside.get(hall_id, (0.0, None))[1] is done:
        del _beside[hall_id]
    if not done.cancelled() and done.exception() is not None:
        # The answers go on from the projection kept; the next asker past its time makes
        # one itself (and fails if the database does).
        log.warning("hall %s: a projection played beside failed: %r", hall_id, done.exception())


async def _refreshed(unit: UnitOfWork, hall_id: int, base: _Projection, tz: ZoneInfo) -> None:
    """``base`` played again from now (or its floor read whole again, past
    ``READ_AGAIN_SECONDS`` or on a new business day): read in ``unit``, which is over
    before the play (on SQLite it holds the write lock), played in a thread. Kept unless
    the hall's projection was made anew meanwhile (those extended from ``base`` since
    start when it did: the next asker extends this one with the walk-ins they added)."""
    # Past this the asker plays it itself anyway: one stuck (a lock, a lost connection)
    # holds no hall's refreshes up for longer.
    async with asyncio.timeout(TOLD_PAST_DUE_AT_MOST):
        async with unit as uow:
            now = uow.clock.now()
            whole = time.monotonic() - base.read >= READ_AGAIN_SECONDS or business_day(
                base.floor.now, tz
            ) != business_day(now, tz)
            seq, choose, floor = await _floor_again(uow, hall_id, base, now, tz, whole)
        traced = await asyncio.to_thread(project_traced, floor, choose)
    made = _again(base, seq, traced, choose, whole)
    current = _projections.get(hall_id)
    if current is not None and current.made == base.made and current.read == base.read:
        _projections[hall_id] = made


async def refreshed(hall_id: int) -> None:
    """Wait for the hall's projection being refreshed beside the answers, if one is."""
    beside = _beside.get(hall_id)
    if beside is not None:
        await asyncio.shield(beside[1])


async def stop() -> None:
    """Cancel what is being refreshed beside the answers, and refresh nothing beside them
    any more (the app's shutdown, before its database engine is disposed: followers still
    connected are answered by whoever asks, as before)."""
    global _refreshing
    _refreshing = False
    tasks = [task for _, task in _beside.values()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _extended_by(uow: UnitOfWork, hall: Hall, need: int, joined: Joined) -> _Projection | None:
    """The kept projection extended with the asker's own walk-in, when its events are all
    the log holds since it (``Joined``), and it may be extended now as ``_make`` would
    (not to be read whole again, the same business day; due, then played again beside the
    answers; not the first extension of a floor read whole); else None, and the asker
    goes the long way. What ``_extended`` makes of the same log, without reading it: no
    statement, no connection, and nothing to wait on (no await), so nobody else makes the
    hall's projection meanwhile."""
    last = _projections.get(hall.id)
    if last is None or last.seq != need - joined.logged or hall.id in _making or last.whole:
        # A floor read whole may hold walk-ins logged after its number already, its own
        # and later ones: its first extension reads every event committed by then, so
        # that the next ones start past all of them (``_extended``).
        return None
    if _overdue(last) is not None or (_due(last) and not _refreshing):
        return None  # the asker plays it again, or reads the floor whole, itself
    if business_day(last.floor.now, hall.tz) != business_day(uow.clock.now(), hall.tz):
        return None
    traced = resume(last.traced, [joined.walk_in], last.choose)
    kept = _Projection(last.made, need, traced, last.choose, read=last.read)
    if _due(kept) and not _refresh_beside(uow, hall.id, kept, hall.tz):
        return None  # overdue meanwhile (a slow resume): the asker plays it itself
    return _keep(hall.id, kept)


async def _extended(uow: UnitOfWork, hall_id: int, last: _Projection) -> _Projection | None:
    """``last``'s projection with the walk-ins that joined since — when the hall's log
    since ``last`` holds nothing else that moves the floor (a call, a counter opening, a
    check-in…); ``last`` itself when nothing was logged since; else None, and the floor
    is read whole.

    A kiosk rush is a run of walk-ins: each projection then reads a few log rows instead
    of the whole floor, and replays the turns of the last one that the walk-ins do not
    change (``estimate.resume``) instead of playing the queue again. Its waiting tickets
    are those a fresh read would give (the walk-ins are the rows a read would add); the
    counters' state only changes with events that stop the extension. Unlike a fresh
    read, the projection still starts when ``last`` did (a busy counter's remaining
    service is reckoned from then), at most ``KEEP_SECONDS`` ago: answers can differ from
    a fresh read's by those seconds. Past them, ``_make`` plays it again from now
    (``_played_again``), and past ``READ_AGAIN_SECONDS`` reads everyone waiting again."""
    if uow.on_driver:  # a read on PostgreSQL (``UnitOfWork.connect``): no session made
        rows: Sequence[Sequence[Any]] = await driven.events_since(
            await uow.driver(), hall_id, last.seq, EXTEND_AT_MOST + 1
        )
    else:
        rows = (
            await uow.session.execute(
                sql.EVENTS_SINCE, {"hall": hall_id, "seq": last.seq, "limit": EXTEND_AT_MOST + 1}
            )
        ).all()
    if not rows:
        return last  # nothing logged since: its floor is the hall's as it is
    if len(rows) > EXTEND_AT_MOST or rows[0][0] != last.seq + 1:
        return None
    # A floor read whole was read in statements after ``last.seq`` was (READ COMMITTED):
    # it may hold some of the walk-ins logged since already. Its first extension reads
    # every event committed by then (a ticket commits with its event, numbered under the
    # hall's row lock, so in commit order): later extensions start past all of them.
    there = {c.ticket_id for c in last.floor.waiting} if last.whole else frozenset[int]()
    joined: list[Candidate] = []
    for _seq, name, payload in rows:
        if name == "TicketIssued" and payload.get("kind") == TicketKind.WALK_IN:
            if int(payload["ticket_id"]) not in there:
                joined.append(_walk_in(payload))
        elif name not in FLOOR_NEUTRAL:
            return None
    traced = resume(last.traced, joined, last.choose)
    return _Projection(last.made, int(rows[-1][0]), traced, last.choose, read=last.read)


async def _hall_policy(uow: UnitOfWork, hall_id: int, tz: ZoneInfo) -> tuple[int, Chooser]:
    """The hall's event number and its queue policy, as the projection plays it (the
    default policy and 0 for a hall that is gone)."""
    found = (await uow.session.execute(_HALL_POLICY, {"hall": hall_id})).first()
    if found is None:
        return 0, chooser(PolicyConfig(), tz, reasons=False)
    policy = policy_of(found.priority_boosts or {}, found.secondary_after_minutes)
    return found.event_seq, chooser(policy, tz, reasons=False)


async def _played_again(
    uow: UnitOfWork, hall_id: int, kept: _Projection, now: datetime, tz: ZoneInfo
) -> _Projection:
    """``kept``'s waiting tickets projected again from ``now``, with everything else on the
    floor (counters and their matters, bookings expected, services' times, the queue
    policy) read again: what a floor read whole now would give, less reading everyone
    waiting, whom ``kept`` holds up to its event number (each joins and leaves with an
    event; any but a walk-in's makes ``_make`` read the floor whole). The rest is read
    after that number, as a floor read whole is: a call committed meanwhile may already
    show at its counter, until the next projection reads its event."""
    seq, choose, floor = await _floor_again(uow, hall_id, kept, now, tz, whole=False)
    return _again(kept, seq, await _played(floor, choose), choose, whole=False)


async def _played(floor: Floor, choose: Chooser) -> Traced:
    """``project_traced(floor, choose)``: on the event loop for a short queue, in a thread
    past ``PLAYED_ON_THE_LOOP_AT_MOST`` waiting."""
    if len(floor.waiting) <= PLAYED_ON_THE_LOOP_AT_MOST:
        return project_traced(floor, choose)
    return await asyncio.to_thread(project_traced, floor, choose)


async def _floor_again(
    uow: UnitOfWork, hall_id: int, base: _Projection, now: datetime, tz: ZoneInfo, whole: bool
) -> tuple[int, Chooser, Floor]:
    """The hall's event number, queue policy and floor at ``now``: read whole, or with
    ``base``'s waiting tickets (``_played_again``)."""
    seq, choose = await _hall_policy(uow, hall_id, tz)
    day = business_day(now, tz)
    if not whole:
        return seq, choose, await hall_floor(uow, hall_id, day, now, base.floor.waiting)
    known = _waiting_of_day(base, day, tz)
    return seq, choose, await hall_floor(uow, hall_id, day, now, known=known)


def _waiting_of_day(kept: _Projection, day: date, tz: ZoneInfo) -> Sequence[Candidate]:
    """``kept``'s waiting tickets, for a floor of ``day`` read whole to keep those still as
    they were (``Repository.waiting``); none if ``kept`` is of another day (a new day's
    tickets are all new)."""
    return kept.floor.waiting if business_day(kept.floor.now, tz) == day else ()


def _again(
    base: _Projection, seq: int, traced: Traced, choose: Chooser, whole: bool
) -> _Projection:
    """The projection ``traced`` made again from ``base``: from a floor read whole (at event
    ``seq``), or played again from ``base``'s waiting tickets (at ``base``'s event)."""
    if whole:
        return _Projection(time.monotonic(), seq, traced, choose, whole=True)
    return _Projection(time.monotonic(), base.seq, traced, choose, whole=base.whole, read=base.read)


def _walk_in(issued: dict[str, Any]) -> Candidate:
    """The waiting walk-in a ``TicketIssued`` payload tells of (queued when issued)."""
    return Candidate(
        ticket_id=int(issued["ticket_id"]),
        number=str(issued["number"]),
        service_id=int(issued["service_id"]),
        kind=TicketKind.WALK_IN,
        priority=str(issued["priority"]),
        queued_at=datetime.fromisoformat(issued["at"]),
    )


def forget() -> None:
    """Drop what this process keeps (tests: each has a database of its own)."""
    global _refreshing
    _projections.clear()
    _making.clear()
    for _, task in _beside.values():
        task.cancel()
    _beside.clear()
    _refreshing = True
