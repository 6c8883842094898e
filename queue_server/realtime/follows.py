"""GET /api/follow/{token} from memory: a follower's ticket read once, then kept by events.

A visitor's follow page reads their ticket when it opens (and again whenever the page is
reloaded or a phone wakes up). The first read of a token goes to the database; the view is
then kept in this process while the hall's hub (realtime/hub.py) hears no event about the
ticket: a waiting ticket's place and wait are told again from the hall's shared projection
(``views.retold``, no read of the ticket), and a ticket called, served or sent on is
answered as it was read. An event about the ticket (called, started, finished, sent on,
rated, its case changed…), a hub that may have missed events (it resynchronised), a change
of the hall's setup (realtime/invalidation.py) or ``REFRESH_SECONDS`` drop the kept view,
and the next request reads it again.

A view is kept only if nothing can have changed it unseen. The hall's event number is read
in the statement that finds the visit's current ticket, before the ticket itself, so the
view holds every event up to it and any later change (a transfer included) has a higher
number; the hub must have been listening from that number on; and no event about the
ticket may have come, nor a commit in this process changed it, nor views been dropped
wholesale, while it was being read. Like the hall snapshot, a change made through another
process shows here as soon as its event arrives (milliseconds); a change committed in this
process (a clerk's call, a visitor's rating) drops the view before its answer goes
(``FollowReads.changed``). Without hubs (several processes and no Redis to hear each
other) every request reads the database, as before.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from display.board import BoardView
from queue_server.domain.events import Event
from queue_server.service import estimates, views
from queue_server.service.bus import Bus
from queue_server.service.views import Followed, TicketView

from .hub import HallHub, HallsInUse, Hubs
from .invalidation import halls_named

log = logging.getLogger("onedoor.realtime")
REFRESH_SECONDS = 30.0
"""A kept view is read again after this long even if no event was heard about it."""
IDLE_SECONDS = 60.0
"""A hall's hub is given back this long after the last follower read of the hall."""
KEEP_TOKENS = 20_000
"""Views kept at most in this process (the least recently read go first)."""


@dataclass(eq=False)
class _Kept:
    followed: Followed
    read_at: float
    """``time.monotonic()`` when it was read."""

    @property
    def ticket_ids(self) -> tuple[int, ...]:
        """The tickets whose events change the view: its own, and for a visit sent on to
        the desk the ticket that was not done (its outcome shows)."""
        view = self.followed.view
        return (view.id,) if view.origin is None else (view.id, view.origin.ticket_id)


def _remember(recent: OrderedDict[int, int], ticket_id: int, value: int) -> None:
    recent[ticket_id] = value
    recent.move_to_end(ticket_id)
    if len(recent) > RECENT:
        recent.popitem(last=False)


RECENT = 4096
"""Tickets whose latest change is remembered, for reads that were under way meanwhile."""


class _HallFollowers:
    """One hall's kept views: listens to the hall's hub and drops what an event changes."""

    def __init__(self, owner: FollowReads, hub: HallHub) -> None:
        self.owner = owner
        self.hub = hub
        self.tokens: dict[int, str] = {}
        """The kept tokens by the ids of the tickets their views show (``_Kept.ticket_ids``)."""
        self.heard: OrderedDict[int, int] = OrderedDict()
        """The number of the latest event heard about each recent ticket: a read under way
        when it came is not kept."""
        self.heard_from = hub.seq
        """The hub's number when this started listening (or last resynchronised): every
        event after it is heard."""
        self.last_read = time.monotonic()
        self.listening = False
        """Set once attached to the hub (which sends the board at once)."""

    def snapshot(self, board: BoardView, message: bytes) -> None:
        if not self.listening:  # the hub's board as it starts listening: nothing missed
            return
        # The hub read the hall again: it may have missed events. Read everyone again.
        self.heard_from = board.seq
        self.owner.forgotten += 1
        self.drop_all()

    def event(self, seq: int, name: str, data: Mapping[str, Any], message: bytes) -> None:
        ticket_id = data.get("ticket_id")
        if not isinstance(ticket_id, int):
            return
        _remember(self.heard, ticket_id, seq)
        token = self.tokens.get(ticket_id)
        kept = self.owner.kept.get(token) if token is not None else None
        if token is not None and (kept is None or kept.followed.seq < seq):
            self.owner.drop(token)

    def drop_all(self) -> None:
        for token in set(self.tokens.values()):
            self.owner.kept.pop(token, None)
        self.tokens.clear()


@dataclass(eq=False)
class FollowReads:
    """The process's kept follower views. Without ``hubs`` every request reads the
    database."""

    bus: Bus
    hubs: Hubs | None
    refresh: float = REFRESH_SECONDS
    idle: float = IDLE_SECONDS
    reads: int = 0
    """Views read from the database (tests and benchmarks look)."""
    kept: OrderedDict[str, _Kept] = field(default_factory=OrderedDict)
    changes: int = 0
    """Tickets changed by commits in this process so far."""
    changed_at: OrderedDict[int, int] = field(default_factory=OrderedDict)
    """For recent tickets changed here, ``changes`` after their latest change."""
    forgotten: int = 0
    """Times views were dropped wholesale (a hub's resync, a change of setup)."""
    _in_use: HallsInUse[_HallFollowers] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.hubs is not None:
            self._in_use = HallsInUse(self.hubs, self._listen, self._stop_listening)

    def _listen(self, hall_id: int, hub: HallHub) -> _HallFollowers:
        followers = _HallFollowers(self, hub)
        hub.attach(followers)
        followers.listening = True
        return followers

    @staticmethod
    def _stop_listening(followers: _HallFollowers) -> None:
        followers.drop_all()
        followers.hub.detach(followers)

    @property
    def _halls(self) -> dict[int, _HallFollowers]:
        return self._in_use.open if self._in_use is not None else {}

    async def answer(self, token: str) -> TicketView:
        """The visitor's ticket as ``views.ticket_by_follow_token`` tells it."""
        if self.hubs is None:
            self.reads += 1
            return await self.bus.read(views.ticket_by_follow_token, token)
        kept = self.kept.get(token)
        if kept is not None:
            view = await self._from_kept(token, kept)
            if view is not None:
                return view
        changes, forgotten = self.changes, self.forgotten
        self.reads += 1
        followed = await self.bus.read(views.followed, token)
        # Kept if the hall's hub has heard every event after the read (a hall's first
        # follower read starts its hub: while events come, the next read is kept) and
        # nothing changed the ticket while it was read.
        try:
            assert self._in_use is not None
            hall = await self._in_use.get(followed.hall.id)
        except Exception as exc:  # the hub could not start (database or Redis away)
            log.warning("hall %s: follower views not kept (%s)", followed.hall.id, exc)
            return followed.view
        self._keep(hall, token, _Kept(followed, time.monotonic()), changes, forgotten)
        return followed.view

    async def _from_kept(self, token: str, kept: _Kept) -> TicketView | None:
        hall = self._halls.get(kept.followed.hall.id)
        if hall is None or time.monotonic() - kept.read_at >= self.refresh:
            return None
        hall.last_read = time.monotonic()
        self.kept.move_to_end(token)
        if kept.followed.view.state != "waiting":
            return kept.followed.view
        # Only the queue moved: the wait told again from the hall's shared projection,
        # without a unit of work while it is kept.
        followed = kept.followed
        projection = estimates.kept_projection(followed.hall.id, max(hall.hub.seq, followed.seq))
        if projection is None:
            return await self.bus.read(views.retold, followed, hall.hub.seq)
        told = estimates.tell_kept(projection, followed.view.id, self.bus.clock.now())
        return views.with_told(followed.view, told) if told is not None else None

    def _keep(
        self, hall: _HallFollowers, token: str, new: _Kept, changes: int, forgotten: int
    ) -> None:
        """Keep ``new``, read since this process had made ``changes`` and dropped views
        wholesale ``forgotten`` times, unless something it shows may have changed since."""
        hall.last_read = time.monotonic()
        seq = new.followed.seq
        if (
            seq < hall.heard_from  # events between the read and the listening: not heard
            or self.forgotten != forgotten
            or any(
                hall.heard.get(ticket_id, 0) > seq or self.changed_at.get(ticket_id, 0) > changes
                for ticket_id in new.ticket_ids
            )  # an event about it came while it was read
        ):
            return
        self.drop(token)
        self.kept[token] = new
        for ticket_id in new.ticket_ids:
            hall.tokens[ticket_id] = token
        while len(self.kept) > KEEP_TOKENS:
            self.drop(next(iter(self.kept)))

    def drop(self, token: str) -> None:
        """Forget ``token``'s view."""
        kept = self.kept.pop(token, None)
        hall = self._halls.get(kept.followed.hall.id) if kept is not None else None
        if kept is not None and hall is not None:
            for ticket_id in kept.ticket_ids:
                if hall.tokens.get(ticket_id) == token:
                    del hall.tokens[ticket_id]

    def changed(self, events: list[Event]) -> None:
        """A commit in this process wrote ``events``: forget the views of the tickets they
        are about now, before the answer to the write goes (the visitor or clerk who made
        it reads it back at once; the hub hears of it a few milliseconds later)."""
        for event in events:
            ticket_id = getattr(event, "ticket_id", None)
            if not isinstance(ticket_id, int):
                continue
            self.changes += 1
            _remember(self.changed_at, ticket_id, self.changes)
            hall = self._halls.get(event.hall_id)
            token = hall.tokens.get(ticket_id) if hall is not None else None
            if token is not None:
                self.drop(token)

    def purge(self) -> None:
        """Drop the views too old to be answered (they would be read again anyway)."""
        now = time.monotonic()
        for token in [t for t, kept in self.kept.items() if now - kept.read_at >= self.refresh]:
            self.drop(token)

    def forget(self, keys: frozenset[str]) -> None:
        """Setup changed (realtime.invalidation): these halls' views are read again."""
        changed = self._in_use.named(halls_named(keys)) if self._in_use is not None else []
        if changed:
            self.forgotten += 1
        for hall in changed:
            hall.drop_all()

    async def release_idle(self) -> None:
        """Give back the hubs of halls nobody followed for ``idle`` seconds."""
        assert self._in_use is not None
        await self._in_use.release_idle(self.idle)

    async def run(self) -> None:
        """Release idle halls until cancelled."""
        if self._in_use is not None:
            await self._in_use.release_every(lambda: self.idle, self.purge)

    async def close(self) -> None:
        if self._in_use is not None:
            await self._in_use.close()
