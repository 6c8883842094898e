"""Wait estimate v2: when a waiting visitor will be called, told as a range.

The estimate plays the queue forward with the policy itself (``project``), from the hall
floor as it is now (``queue_server.domain.floor``): the counters open and what they are
serving, everyone waiting for any matter, the bookings still to check in, and the priority
visitors and transfers that will come and go ahead at the rates seen lately. The visitor is
told the projected wait as a range (``band``) that holds the actual wait for nine in ten on
the simulated standard days (docs/queue.md). The server and the simulator call the same
functions.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import operator
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, overload

import msgspec

from .floor import Candidate, CounterNow, Floor
from .model import NO_PRIORITY, CounterState, ServiceLevel, TicketKind
from .policy import Chooser, SilentChooser

PROJECTION_STEPS = 2000
"""Calls projected at most; a hall with more waiting than this is told no figure."""


@dataclass(frozen=True)
class Told:
    """What a visitor is told: about ``minutes`` (from ``low`` to ``high``)."""

    minutes: int | None
    """The projected wait; None when no open counter serves the matter."""
    low: int | None
    high: int | None
    people_ahead: int
    basis: str


def project(floor: Floor, choose: Chooser) -> dict[int, datetime]:
    """When each waiting ticket will be called, if everything goes as usual.

    Plays the queue forward with the policy itself: every open counter frees up when its
    current service is expected to end (the mean residual of the matter's recent services),
    then calls whom ``choose`` would call, which takes the matter's mean service time, and
    so on. So due appointments, bookings yet to check in (less the usual no-shows),
    transfers and priority visitors are called first exactly when the policy would call
    them first, and a counter shared between matters is shared as the policy shares it.
    Visitors who will come and go ahead (priority visitors, transfers) are added at the
    rates the hall has seen lately (``Floor.arrivals``). Tickets no open counter serves are
    left out.
    """
    return project_traced(floor, choose).called


Group = tuple[int, str, str]
"""The pool's group of a ticket that is not an appointment: its matter, priority and kind."""


class Step(msgspec.Struct, frozen=True, gc=False):
    """One turn of a counter in a projection, as ``resume`` replays it.

    A struct the garbage collector does not track (``Candidate``'s reason): a projection
    makes up to ``PROJECTION_STEPS`` of them, a hall's is played again every few seconds
    and a rush resumes it with every answer, and each survives as long as its projection
    is kept. It holds a candidate, a group of numbers and strings and times, so it is in
    no reference cycle. Made positionally, it costs less than a named tuple made with
    ``tuple.__new__``."""

    at: datetime
    """When the counter takes its turn (the turns are in time order)."""
    counter_id: int
    picked: Candidate | None
    """The ticket it called (None: nobody it could call had joined)."""
    group: Group | None
    """The picked ticket's group in the pool (None: an appointment, or nobody picked)."""
    looked: bool
    """Whether anyone was there to choose from (the counter counts as free meanwhile)."""
    again: datetime | None
    """When the counter comes round again (None: it leaves the projection)."""


Key = tuple[int, object, object, int]
"""A ticket's sort key at a counter (``SilentChooser.key``): the least is called."""
_KeyOf = Callable[[Candidate], Key]


class Keys:
    """The keys (``SilentChooser.key``) of a projection's tickets at each level, made once
    per ticket and level for the projection and every projection resumed from it.

    In a kiosk rush each resume plays hundreds of turns again, and every turn that calls a
    group's first ticket makes the key of the one behind it at each level that weighs it:
    the same tickets' keys, made again by every resume. A key is kept with the ticket it
    was made for and used only for that same object (a fresh projection's tickets, or a
    ticket read again, are new objects: their keys are made anew), so no id can be told
    another ticket's key."""

    __slots__ = ("_levels", "chooser")

    def __init__(self, chooser: SilentChooser | None = None) -> None:
        self.chooser = chooser
        self._levels: dict[ServiceLevel, _KeyOf] = {}

    def of(self, chooser: SilentChooser) -> Keys:
        """These keys, if made by ``chooser`` (or by none yet); else new ones for it."""
        if self.chooser is None:
            self.chooser = chooser
        return self if self.chooser is chooser else Keys(chooser)

    def at(self, level: ServiceLevel) -> _KeyOf:
        """A ticket's key at ``level``, made the first time it is asked for."""
        key_of = self._levels.get(level)
        if key_of is None:
            assert self.chooser is not None, "keys are made for a chooser (``of``)"
            key_of = self._levels[level] = _kept_keys(self.chooser, level)
        return key_of


def _kept_keys(chooser: SilentChooser, level: ServiceLevel) -> _KeyOf:
    known: dict[int, tuple[Candidate, Key]] = {}
    make = chooser.key

    def key_of(c: Candidate) -> Key:
        found = known.get(c.ticket_id)
        if found is not None and found[0] is c:
            return found[1]
        key = make(c, level)
        known[c.ticket_id] = (c, key)
        return key

    return key_of


@dataclass(frozen=True)
class Traced:
    """A projection with what it takes to play it again with more walk-ins (``resume``)."""

    floor: Floor
    """The floor projected: its ``now`` is when the projection starts."""
    appointments: tuple[Candidate, ...]
    groups: dict[Group, Members]
    """Everyone the projection could call (the waiting it serves, bookings and arrivals
    expected) as its pool starts: the appointments, and the rest per group by arrival.
    Bookings and arrivals expected have negative ids, meaningful only relative to each
    other (a fresh projection of the same floor numbers them from another start)."""
    real: int
    """How many waiting tickets the projection is for (not the ones expected). They are
    told apart by their ids: real tickets' are positive (database ids), the expected
    visitors' negative, so adding walk-ins (``resume``) copies no set of ids."""
    steps: tuple[Step, ...]
    called: dict[int, datetime]
    """When each real ticket is called."""
    expected_by_group: Mapping[Group, tuple[tuple[datetime, int], ...]] = field(
        default_factory=dict
    )
    """Per group, the arrivals (``_arrival``) of its expected members, sorted: with
    ``groups`` they count the real tickets of a group that joined before one
    (``tell_traced``)."""
    # Indexes over the turns, kept up while playing: a kiosk rush extends a projection
    # with a few walk-ins at a time and tells each of them, and a pass over the turns per
    # answer, or a replay of every turn per extension, was most of an answer's cost.
    turn_of: dict[int, int] = field(default_factory=dict)
    """Each ticket called in the projection (real or expected), by its turn."""
    times: dict[int, list[datetime]] = field(default_factory=dict)
    """Per matter, when its real tickets are called, in turn (so time) order."""
    checkpoints: tuple[_Checkpoint, ...] = ()
    """The play's state every ``CHECKPOINT_EVERY`` turns, from which ``resume`` replays."""
    keys: Keys = field(default_factory=Keys, compare=False, repr=False)
    """The chooser's keys of its tickets, shared with the projections resumed from it."""

    @cached_property
    def called_arrivals(self) -> dict[int, list[tuple[datetime, int]]]:
        """Per matter, the arrivals (``_arrival``) of the real tickets called, sorted
        (made when first asked for; kept by a resumed projection with the same turns)."""
        found: dict[int, list[tuple[datetime, int]]] = {}
        for s in self.steps:
            if s.picked is not None and s.picked.ticket_id > 0:
                found.setdefault(s.picked.service_id, []).append(_arrival(s.picked))
        for arrivals in found.values():
            arrivals.sort()
        return found


CHECKPOINT_EVERY = 32
"""Turns between two of a projection's checkpoints: a resumed projection replays fewer."""


@dataclass(frozen=True, slots=True)
class _Checkpoint:
    """The play's state as turn ``turn`` begins (never changed once made)."""

    turn: int
    free: tuple[tuple[datetime, int, CounterNow], ...]
    """The counters' heap, as a list would hold it."""
    busy: dict[int, tuple[int | None, datetime | None]]
    taken: dict[Group, int]
    gone: frozenset[int]
    counts: dict[int, int]
    """Per matter, its real tickets called so far (how much of ``Traced.times`` holds)."""


@dataclass
class _State:
    """A play under way: where ``_play`` goes on from (fresh, or resumed at a turn)."""

    free: list[tuple[datetime, int, CounterNow]]
    busy: dict[int, tuple[int | None, datetime | None]]
    taken: dict[Group, int]
    gone: set[int]
    counts: dict[int, int]
    steps: list[Step]
    called: dict[int, datetime]
    turn_of: dict[int, int]
    times: dict[int, list[datetime]]
    checkpoints: list[_Checkpoint]

    @classmethod
    def fresh(cls, free: list[tuple[datetime, int, CounterNow]]) -> _State:
        heapq.heapify(free)
        # What each counter is busy with in the projection, for the policy's look-ahead.
        busy = {c.counter_id: (c.serving, c.since) for _, _, c in free}
        return cls(free, busy, {}, set(), {}, [], {}, {}, {}, [])

    @classmethod
    def resumed(cls, traced: Traced, same: int) -> _State:
        """``traced``'s play as its turn ``same`` begins: from the checkpoint before it,
        its turns since replayed as recorded (without asking the policy)."""
        at_most = min(same // CHECKPOINT_EVERY, len(traced.checkpoints) - 1)
        mark = traced.checkpoints[at_most]
        free = list(mark.free)
        busy, taken, gone, counts = (
            dict(mark.busy),
            dict(mark.taken),
            set(mark.gone),
            dict(mark.counts),
        )
        for step in traced.steps[mark.turn : same]:
            at, counter_id, counter = heapq.heappop(free)
            assert counter_id == step.counter_id, "a replayed turn went to another counter"
            if step.looked:
                busy[counter_id] = (None, None)
            picked = step.picked
            if picked is not None:
                busy[counter_id] = (picked.service_id, at)
                if step.group is None:
                    gone.add(picked.ticket_id)
                else:  # a group is called in its order: the first ``taken`` of it are gone
                    taken[step.group] = taken.get(step.group, 0) + 1
                if picked.ticket_id > 0:
                    counts[picked.service_id] = counts.get(picked.service_id, 0) + 1
            if step.again is not None:
                heapq.heappush(free, (step.again, counter_id, counter))
        kept = traced.steps[:same]
        if 2 * same < len(traced.steps):
            turn_of = {s.picked.ticket_id: i for i, s in enumerate(kept) if s.picked is not None}
            called = {s.picked.ticket_id: s.at for s in kept if s.picked and s.picked.ticket_id > 0}
        else:  # fewer turns to forget than to keep
            turn_of, called = dict(traced.turn_of), dict(traced.called)
            for s in traced.steps[same:]:
                if s.picked is not None:
                    del turn_of[s.picked.ticket_id]
                    called.pop(s.picked.ticket_id, None)
        times = {matter: at[: counts.get(matter, 0)] for matter, at in traced.times.items()}
        marks = list(traced.checkpoints[: at_most + 1])
        return cls(free, busy, taken, gone, counts, list(kept), called, turn_of, times, marks)

    def mark(self) -> None:
        """A checkpoint, every ``CHECKPOINT_EVERY`` turns."""
        turn = len(self.steps)
        if turn % CHECKPOINT_EVERY == 0 and (
            not self.checkpoints or self.checkpoints[-1].turn < turn
        ):
            self.checkpoints.append(
                _Checkpoint(turn, tuple(self.free), dict(self.busy), dict(self.taken),
                            frozenset(self.gone), dict(self.counts))
            )  # fmt: skip


def project_traced(floor: Floor, choose: Chooser) -> Traced:
    """``project``, with its turns kept for ``resume``."""
    free = _counters_free(floor)
    served = {sid for _, _, c in free for sid in c.profile}
    waiting = [c for c in floor.waiting if c.service_id in served]
    expected = _expected(floor, served, start_id=-1)
    arriving = _arriving(floor, served, start_id=-1 - len(waiting) - len(expected))
    appointments, groups = _grouped((*waiting, *expected, *arriving))
    if any(c.ticket_id <= 0 for c in waiting):
        raise ValueError("waiting tickets have positive ids (the expected ones are negative)")
    _, expected_groups = _grouped((*expected, *arriving))
    expected_by_group = {
        key: tuple(_arrival(c) for c in members) for key, members in expected_groups.items()
    }
    start = Traced(floor, appointments, groups, len(waiting), (), {}, expected_by_group)
    return _play(start, _State.fresh(free), choose)


def _grouped(
    candidates: Iterable[Candidate],
) -> tuple[tuple[Candidate, ...], dict[Group, Members]]:
    """The appointments, and the rest per group by arrival (``_Pool``)."""
    appointments: list[Candidate] = []
    groups: dict[Group, list[Candidate]] = {}
    for c in candidates:
        if _is_booked(c):
            appointments.append(c)
        else:
            groups.setdefault(_group(c), []).append(c)
    return tuple(appointments), {
        key: Members(_by_arrival(members)) for key, members in groups.items()
    }


_TICKET_ID = operator.attrgetter("ticket_id")
_QUEUED_AT = operator.attrgetter("queued_at")


def _by_arrival(members: list[Candidate]) -> list[Candidate]:
    """``members`` sorted in place by ``_arrival``, without making a key for each.

    Two stable sorts (by id, then by when each joined) order them as one sort by the pair
    would, and their keys are the members' own values: sorting by ``_arrival`` made a
    tuple per member, all alive at once, and those thousands of new objects set off the
    garbage collector several times a play. A collection holds the interpreter, and the
    event loop with it, for tens of milliseconds in a busy hall (docs/performance.md,
    "2026-12-06, night"). On members already in order each sort is one pass."""
    members.sort(key=_TICKET_ID)
    members.sort(key=_QUEUED_AT)
    return members


class Members(Sequence[Candidate]):
    """A group's members by arrival, or a floor's waiting tickets, as one projection holds
    them: the first ``len(self)`` of a list that the projections resumed from it share
    (``resume``).

    Walk-ins who join after everyone in their group (no visitor expected later in it): the
    projection resumed with them holds the same list longer, appended in place, and every
    projection holding fewer of it reads it as before. Copying a group of thousands per
    walk-in was most of an extension's own CPU in the bench's kiosk rush
    (docs/performance.md, "2026-12-06, later still"); so was copying the floor's whole
    waiting list, to which a resume's walk-ins are added last (``plus``; "2026-12-07,
    afternoon"). Walk-ins placed before the last of their group (a late commit, another
    process's walk-ins read from the log, or visitors expected after them: a hall with
    walk-in arrival rates), or joining a list another projection has appended to already,
    get one copy between them. Resumes run on the event loop's one thread: the check and
    the append are not atomic. A projection played again in a thread reads its own view
    meanwhile: nothing below a view's length is ever changed, only appended past it."""

    __slots__ = ("_items", "_n")

    def __init__(self, items: list[Candidate], n: int | None = None) -> None:
        self._items = items
        self._n = len(items) if n is None else n

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, index: int) -> Candidate: ...
    @overload
    def __getitem__(self, index: slice) -> list[Candidate]: ...
    def __getitem__(self, index: int | slice) -> Candidate | list[Candidate]:
        if isinstance(index, slice):
            return self._items[: self._n][index]
        if index < 0:
            index += self._n
        if not 0 <= index < self._n:
            raise IndexError("group member index out of range")
        return self._items[index]

    def __iter__(self) -> Iterator[Candidate]:
        return itertools.islice(self._items, self._n)

    def __reversed__(self) -> Iterator[Candidate]:
        items = self._items
        return (items[i] for i in range(self._n - 1, -1, -1))

    def from_(self, first: int) -> Iterator[Candidate]:
        """The members from the ``first`` on, without a copy."""
        return itertools.islice(self._items, first, self._n)

    def plus(self, more: Sequence[Candidate]) -> Members:
        """These, then ``more``: the list shared when nobody else has appended to it."""
        items, n = self._items, self._n
        if len(items) == n:
            items.extend(more)
            return Members(items, n + len(more))
        copied = items[:n]
        copied.extend(more)
        return Members(copied)

    def joined(self, walk_ins: Sequence[Candidate]) -> Members:
        """These members with ``walk_ins`` (at least one, in order of arrival: only the
        first is compared with the last member) each placed by arrival, after those who
        arrived with them: the list shared when they all join last and nobody else has
        appended to it, else one copy."""
        items, n = self._items, self._n
        if len(items) == n and (n == 0 or _arrival(walk_ins[0]) >= _arrival(items[n - 1])):
            return self.plus(walk_ins)
        copied = items[:n]
        for walk_in in walk_ins:
            bisect.insort(copied, walk_in, key=_arrival)
        return Members(copied)


def resume(traced: Traced, joined: Sequence[Candidate], choose: Chooser) -> Traced:
    """``traced``'s projection with the walk-ins ``joined`` added to its floor: the same as
    ``project_traced`` of that floor, with less work.

    A walk-in takes its place in its matter, kind and priority by arrival (usually last
    of those waiting; a late commit can place it earlier, and visitors only expected may
    come before it), and the policy only ever weighs the first of such a group
    (``_Pool``). So until the projection has called everyone ahead of it in its group, it
    is invisible: every turn before that is played as it was (from the record, without
    asking the policy), and only the rest is played anew. A rush of walk-ins into a long
    queue costs a replay, not a projection each.

    Equal to the fresh projection in whom it calls when (``called``); its expected
    visitors' ids differ by a constant, which changes no choice as long as the policy
    compares ids only by order and breaks every tie by them (``policy._ranked``). The
    random-hall test in tests/unit/test_estimate.py holds it to that. ``joined`` must be
    walk-ins not on ``traced``'s floor yet.
    """
    if not joined:
        return traced
    waiting = traced.floor.waiting
    if not isinstance(waiting, Members):  # a floor read: copied once, then shared
        waiting = Members(list(waiting))
    floor = replace(traced.floor, waiting=waiting.plus(joined))
    served = {sid for _, _, c in _counters_free(floor) for sid in c.profile}
    joined = [c for c in joined if c.service_id in served]
    if any(c.ticket_id <= 0 for c in joined):
        raise ValueError("walk-ins joining have positive ids (the expected ones are negative)")
    if not joined:  # no open counter serves them: the projection is unchanged
        return replace(traced, floor=floor)
    groups = dict(traced.groups)
    by_group: dict[Group, list[Candidate]] = {}
    for walk_in in sorted(joined, key=_arrival):
        assert not _is_booked(walk_in), "only walk-ins join a traced projection"
        key = _group(walk_in)
        if key not in groups:  # a group of its own: seen by the policy from the start
            return project_traced(floor, choose)
        by_group.setdefault(key, []).append(walk_in)
    same = _first_divergence(traced, joined)
    if same == 0:  # before the groups grow: a projection played anew makes its own
        return project_traced(floor, choose)
    for key, walk_ins in by_group.items():
        groups[key] = groups[key].joined(walk_ins)
    real = traced.real + len(joined)
    start = replace(traced, floor=floor, groups=groups, real=real)
    if same == len(traced.steps) == PROJECTION_STEPS:  # played as far as it plays
        if "called_arrivals" in traced.__dict__:  # the same turns: the same index
            start.__dict__["called_arrivals"] = traced.called_arrivals
        return start
    return _play(start, _State.resumed(traced, same), choose)


def _arrival(c: Candidate) -> tuple[datetime, int]:
    """The order within a group: who joined first (then the lower id)."""
    return (c.queued_at, c.ticket_id)


def _first_divergence(traced: Traced, joined: Sequence[Candidate]) -> int:
    """How many of ``traced``'s first turns the walk-ins ``joined`` leave as they were.

    0 if a walk-in would head its group from the start; else, over the walk-ins, the
    least of 1 + the turn that called the last ticket ahead of it in its group (a group
    is called in its order); every turn if that ticket is never called in the record."""
    turns = len(traced.steps)
    turn = traced.turn_of
    same = turns
    for walk_in in joined:
        members = traced.groups.get(_group(walk_in), ())
        ahead = bisect.bisect(members, _arrival(walk_in), key=_arrival)
        if ahead == 0:
            return 0
        same = min(same, turn.get(members[ahead - 1].ticket_id, turns) + 1)
    return same


def _counters_free(floor: Floor) -> list[tuple[datetime, int, CounterNow]]:
    """The counters that will call in the projection and when each is first free."""
    now = floor.now
    free: list[tuple[datetime, int, CounterNow]] = []
    for counter in floor.counters:
        at = now
        if counter.state == CounterState.PAUSED:
            back = _back_from_break(counter, floor)
            if back is None:
                continue
            at = back
        elif counter.state != CounterState.OPEN:
            continue
        if counter.serving is not None and counter.since is not None:
            elapsed = max(0.0, (now - counter.since).total_seconds() / 60)
            at = max(at, now + timedelta(minutes=floor.stat(counter.serving).remaining(elapsed)))
        free.append((at, counter.counter_id, counter))
    return free


def _play(start: Traced, state: _State, choose: Chooser) -> Traced:
    """Play the projection on from ``state`` (``start``'s pool less those it has called)
    with ``choose``.

    A resumed projection plays hundreds of turns per kiosk answer in a rush, on the event
    loop: the loop keeps its lookups in locals."""
    floor = start.floor
    free, busy, steps, called = state.free, state.busy, state.steps, state.called
    turn_of, times, taken, counts = state.turn_of, state.times, state.taken, state.counts
    gone = state.gone
    pool = _Pool.starting(start, taken, gone)
    left = start.real - len(called)
    service_time: dict[int, timedelta] = {}
    # Without appointments there is no look-ahead: a turn then calls the least key of its
    # first tickets, each key kept while its ticket waits (``_Pool.least_at``), which is
    # whom the policy's silent chooser calls; any other chooser is asked at every turn.
    silent = choose if isinstance(choose, SilentChooser) else None
    keys = start.keys.of(silent) if silent is not None else None
    least_at, pop, push, record = pool.least_at, heapq.heappop, heapq.heappush, steps.append
    turn = len(steps)
    while free and left and turn < PROJECTION_STEPS:
        if turn % CHECKPOINT_EVERY == 0:
            state.mark()
        at, counter_id, counter = pop(free)
        if keys is not None and not pool.appointments:
            first = least_at(at, counter, keys)
            picked, looked = (None, False) if first is None else (first[0], True)
        else:
            first = None
            picked, looked = _asked(choose, pool, floor, free, busy, at, counter)
        if picked is None:
            later = pool.next_joining(at, counter.profile)
            if later is not None:
                push(free, (later, counter_id, counter))
            record(Step(at, counter_id, None, None, looked, later))
            turn += 1
            continue
        if first is not None:  # the first of its group, which ``least_at`` named
            group: Group | None = first[1]
            first[2].popleft()
        else:
            group = pool.remove(picked)
        if group is None:
            gone.add(picked.ticket_id)
        else:
            taken[group] = taken.get(group, 0) + 1
        turn_of[picked.ticket_id] = turn
        service_id = picked.service_id
        if picked.ticket_id > 0:
            called[picked.ticket_id] = at
            matter_times = times.get(service_id)
            if matter_times is None:
                times[service_id] = [at]
            else:
                matter_times.append(at)
            counts[service_id] = counts.get(service_id, 0) + 1
            left -= 1
        busy[counter_id] = (service_id, at)
        took = service_time.get(service_id)
        if took is None:
            took = service_time[service_id] = timedelta(minutes=floor.stat(service_id).mean())
        again = at + took
        push(free, (again, counter_id, counter))
        record(Step(at, counter_id, picked, group, True, again))
        turn += 1
    state.mark()
    return replace(
        start, steps=tuple(steps), called=called, turn_of=turn_of, times=times,
        checkpoints=tuple(state.checkpoints), keys=start.keys if keys is None else keys,
    )  # fmt: skip


def _asked(
    choose: Chooser,
    pool: _Pool,
    floor: Floor,
    free: list[tuple[datetime, int, CounterNow]],
    busy: dict[int, tuple[int | None, datetime | None]],
    at: datetime,
    counter: CounterNow,
) -> tuple[Candidate | None, bool]:
    """A turn's choice asked of ``choose`` (with the look-ahead when appointments wait):
    whom the counter calls, and whether anyone was there to choose from."""
    visible = pool.contenders_at(at, counter)
    if not visible:
        return None, False
    busy[counter.counter_id] = (None, None)
    ahead = None
    if pool.appointments:
        # The floor as the choosing counter sees it, for the look-ahead that only
        # appointments need: itself free now, the others busy.
        here = [*free, (at, counter.counter_id, counter)]
        ahead = _projected_floor(floor, here, busy, pool.contenders(at), at)
    choice = choose(counter, visible, at, ahead)
    return (None if choice is None else choice.candidate), True


def _is_booked(c: Candidate) -> bool:
    """An appointment with its time: the pool weighs every one of them."""
    return c.kind == TicketKind.APPOINTMENT and c.due_at is not None


def _group(c: Candidate) -> Group:
    """The pool's group of a ticket that is not an appointment: within it, by arrival."""
    return (c.service_id, c.priority, str(c.kind))


class _Pool:
    """The projection's waiting tickets, indexed so that each call weighs a few of them.

    The policy calls, of the tickets that are not appointments, the best of a matter's
    tickets of one kind and priority: they share a tier and a boost, and the counter serves
    their matter at one level, so the one that joined first (then the lower id) ranks first
    among them, now and at any later moment (``policy._ranked``'s keys). Only those heads
    can be chosen, and only they decide the look-ahead's "whom would it call instead".
    Appointments are all kept: whether one is urgent depends on the others of its matter.
    So ``choose`` over ``contenders`` picks exactly what it would pick over everyone
    (tests/unit/test_estimate.py compares the two), in time that does not grow with the
    queue: a hall with a thousand waiting is projected as fast as one with fifty.
    """

    def __init__(
        self, appointments: list[Candidate], groups: dict[Group, deque[Candidate]]
    ) -> None:
        self.appointments = appointments
        self.groups = groups
        self._served: dict[int, list[deque[Candidate]]] = {}
        """Per counter, the groups of the matters it serves (a group is never added)."""
        self._levels: dict[int, list[tuple[Group, deque[Candidate], list[Any], _KeyOf]]] = {}
        """Per counter, the groups of its matters with its level for each, and the key of
        the group's first ticket at that level (``least_at``), kept while it is first."""
        self._slots: dict[tuple[Group, ServiceLevel], list[Any]] = {}
        """Per group and level, [its first ticket, that ticket's key]: shared by the
        counters serving the group's matter at that level."""

    @classmethod
    def of(cls, candidates: Iterable[Candidate]) -> _Pool:
        appointments, groups = _grouped(candidates)
        return cls(list(appointments), {key: deque(members) for key, members in groups.items()})

    @classmethod
    def starting(cls, start: Traced, taken: Mapping[Group, int], gone: set[int]) -> _Pool:
        """``start``'s pool less the first ``taken`` of each group and the appointments
        ``gone``."""
        appointments = [c for c in start.appointments if c.ticket_id not in gone]
        return cls(
            appointments,
            {key: deque(members.from_(taken.get(key, 0))) for key, members in start.groups.items()},
        )

    def contenders(
        self, at: datetime, profile: Mapping[int, ServiceLevel] | None = None
    ) -> list[Candidate]:
        """The tickets that have joined by ``at`` and could be called first (of the
        matters in ``profile``, or of every matter)."""
        found = [
            c
            for c in self.appointments
            if c.queued_at <= at and (profile is None or c.service_id in profile)
        ]
        for (service_id, _, _), members in self.groups.items():
            if (
                members
                and members[0].queued_at <= at
                and (profile is None or service_id in profile)
            ):
                found.append(members[0])
        return found

    def contenders_at(self, at: datetime, counter: CounterNow) -> list[Candidate]:
        """``contenders(at, counter.profile)``, with the counter's groups looked up once a
        play: a projection asks this at every turn."""
        served = self._served.get(counter.counter_id)
        if served is None:
            profile = counter.profile
            served = [members for key, members in self.groups.items() if key[0] in profile]
            self._served[counter.counter_id] = served
        found = [m[0] for m in served if m and m[0].queued_at <= at]
        if self.appointments:
            profile = counter.profile
            found[:0] = [
                c for c in self.appointments if c.queued_at <= at and c.service_id in profile
            ]
        return found

    def least_at(
        self, at: datetime, counter: CounterNow, keys: Keys
    ) -> tuple[Candidate, Group, deque[Candidate]] | None:
        """Whom ``counter`` calls at ``at`` when no appointment waits (so without the
        look-ahead), with its group and that group's members (it is their first): of the
        first ticket of each group of its matters that has joined by then, the one with
        the least key (``SilentChooser.key``, through ``keys``) — what the chooser over
        ``contenders_at`` would choose. A first ticket's key does not change with the
        moment, so it is looked up once per level while that ticket is first, not at each
        turn that weighs it."""
        levels = self._levels.get(counter.counter_id)
        if levels is None:
            profile = counter.profile
            levels = []
            for group, members in self.groups.items():
                level = profile.get(group[0])
                if level is not None:
                    slot = self._slots.setdefault((group, level), [None, None])
                    levels.append((group, members, slot, keys.at(level)))
            self._levels[counter.counter_id] = levels
        best: tuple[Candidate, Group, deque[Candidate]] | None = None
        best_key: tuple[int, object, object, int] | None = None
        for group, members, slot, key_of in levels:
            if members:
                first = members[0]
                if first.queued_at <= at:
                    if slot[0] is first:
                        key = slot[1]
                    else:
                        key = key_of(first)
                        slot[0], slot[1] = first, key
                    if best_key is None or key < best_key:
                        best, best_key = (first, group, members), key
        return best

    def next_joining(self, at: datetime, profile: Mapping[int, ServiceLevel]) -> datetime | None:
        """When the next ticket of the profile's matters joins after ``at``, if one will."""
        later = [c.queued_at for c in self.appointments if c.service_id in profile]
        later.extend(
            members[0].queued_at
            for (service_id, _, _), members in self.groups.items()
            if members and service_id in profile
        )
        later = [when for when in later if when > at]
        return min(later) if later else None

    def remove(self, c: Candidate) -> Group | None:
        """Take ``c`` out (the first of its group, or an appointment); its group."""
        if _is_booked(c):
            self.appointments.remove(c)
            return None
        group = _group(c)
        members = self.groups[group]
        assert members[0] is c, "the policy chose a ticket that was not first of its kind"
        members.popleft()
        return group


def _back_from_break(counter: CounterNow, floor: Floor) -> datetime | None:
    """When a paused counter is expected back: after a usual break; one that has overrun
    it by up to as long again, soon (a quarter of a break); one paused longer than that,
    or since an unknown time, not today as far as anyone can tell."""
    if counter.paused_at is None:
        return None
    usual = timedelta(minutes=floor.break_minutes)
    back = counter.paused_at + usual
    if back >= floor.now:
        return back
    if floor.now - counter.paused_at <= 2 * usual:
        return floor.now + usual / 4
    return None


def _projected_floor(
    floor: Floor,
    free: Sequence[tuple[datetime, int, CounterNow]],
    busy: dict[int, tuple[int | None, datetime | None]],
    waiting: Sequence[Candidate],
    at: datetime,
) -> Floor:
    """The hall floor as the projection has it at ``at``, for the policy's look-ahead."""
    counters = []
    for _, counter_id, counter in free:
        serving, since = busy[counter_id]
        counters.append(CounterNow(counter_id, counter.profile, CounterState.OPEN, serving, since))
    return replace(floor, counters=counters, waiting=waiting, expected=(), now=at)


def _expected(floor: Floor, served: set[int], start_id: int) -> list[Candidate]:
    """Bookings not checked in yet, as the appointments they will (mostly) become: of every
    matter's bookings in slot order, the usual share of no-shows is left out evenly (the
    first is kept unless more than half are missed)."""
    found: list[Candidate] = []
    by_matter: dict[int, list[datetime]] = {}
    for service_id, due in floor.expected:
        if service_id in served:
            by_matter.setdefault(service_id, []).append(due)
    next_id = start_id
    for service_id, dues in by_matter.items():
        # Rounded, not floored: one booking is expected unless most bookings are missed.
        shows = 0.5
        for due in sorted(dues):
            before = math.floor(shows)
            shows += 1.0 - floor.no_show_rate
            if math.floor(shows) == before:
                continue
            found.append(
                Candidate(next_id, "", service_id, TicketKind.APPOINTMENT, NO_PRIORITY,
                          min(due, max(floor.now, due - EXPECTED_EARLY)), due)
            )  # fmt: skip
            next_id -= 1
    return found


EXPECTED_EARLY = timedelta(minutes=10)
"""A booking not checked in yet is expected this long before its slot (or now)."""
ARRIVAL_HORIZON = timedelta(hours=4)
"""How far ahead the projection adds the visitors expected to come and go ahead."""
ORDINARY_SHARE = 0.5
"""Ordinary walk-ins expected to come count at this share of their rate: they go ahead of a
waiting ticket only at counters serving its matter at secondary level. Calibrated on the
simulated standard days (docs/queue.md): at their full rate the projection told 0.1 min too
much on average at load 0.75 and 4.0 min mean error; at half, 0.5 too little and 3.9."""
MAX_ARRIVING = 100
"""Visitors expected per matter and kind at most (a very busy hall's next four hours)."""


def _arriving(floor: Floor, served: set[int], start_id: int) -> list[Candidate]:
    """Visitors expected to join, evenly spaced at the recent rates: priority visitors and
    transfers, who go ahead, and ordinary walk-ins, who go ahead of tickets a counter serves
    at secondary level (its own matters first)."""
    found: list[Candidate] = []
    next_id = start_id
    for (service_id, what), per_minute in sorted(floor.arrivals.items()):
        if service_id not in served or per_minute <= 0:
            continue
        if what == NO_PRIORITY:
            per_minute *= ORDINARY_SHARE
            if per_minute <= 0:
                continue
        gap = timedelta(minutes=1 / per_minute)
        at = floor.now + gap / 2
        added = 0
        while at < floor.now + ARRIVAL_HORIZON and added < MAX_ARRIVING:
            added += 1
            if what == TRANSFER:
                kind, priority = TicketKind.TRANSFER, NO_PRIORITY
            else:
                kind, priority = TicketKind.WALK_IN, what
            found.append(Candidate(next_id, "", service_id, kind, priority, at))
            next_id -= 1
            at += gap
    return found


TRANSFER = "transfer"
"""The ``Floor.arrivals`` key of transfers (the others are priority classes)."""


def tell(
    ticket_id: int,
    floor: Floor,
    choose: Chooser,
    projected: Mapping[int, datetime] | None = None,
    orders: Callable[[int], Sequence[int]] | None = None,
) -> Told | None:
    """What the visitor holding ``ticket_id`` is told: the projected wait as a range, and
    the waiting tickets of their matter that will be called before them. No minutes when no
    open counter serves their matter (nobody can say); None for a ticket not waiting.
    ``projected`` is ``project(floor, choose)`` when the caller has it already (one
    projection serves every follower); ``orders`` likewise ``queue_order`` per matter."""
    ticket = next((c for c in floor.waiting if c.ticket_id == ticket_id), None)
    if ticket is None:
        return None
    called = projected if projected is not None else project(floor, choose)
    same = [c for c in floor.waiting if c.service_id == ticket.service_id]
    at = called.get(ticket_id)
    if at is None and _served(floor, ticket.service_id):
        # More are waiting than the projection plays forward: their place is all that can
        # be told (by arrival; the projection's first thousands are not worth a guess more).
        ahead = sum(
            1
            for c in same
            if c.ticket_id != ticket_id
            and (
                c.ticket_id in called or (c.queued_at, c.ticket_id) < (ticket.queued_at, ticket_id)
            )
        )
        return Told(None, None, None, ahead, "more are waiting than the estimate plays forward")
    if at is None:
        # Nobody serves the matter now: the place in its queue is all there is to tell.
        order = (
            orders(ticket.service_id) if orders else queue_order(ticket.service_id, floor, choose)
        )
        place = order.index(ticket_id) if ticket_id in order else len(order)
        return Told(None, None, None, place, "no counter for this matter is open now")
    ahead = sum(1 for c in same if c.ticket_id != ticket_id and called.get(c.ticket_id, at) < at)
    point = max(0.0, (at - floor.now).total_seconds() / 60)
    low, high = band(point)
    return Told(round(point), low, high, ahead, "projected by the queue policy")


def tell_traced(
    ticket_id: int,
    traced: Traced,
    now: datetime,
    choose: Chooser,
    orders: Callable[[int], Sequence[int]] | None = None,
) -> Told | None:
    """``tell(ticket_id, floor, choose, traced.called, orders)`` for ``traced``'s floor at
    ``now``, without going through everyone waiting: from the projection's turns (in time
    order) and its pool's groups (by arrival). A kiosk's answer in a hall with thousands
    waiting costs what the projection's few thousand turns cost, not the queue's length;
    tests/unit/test_estimate.py holds it equal to ``tell`` on random halls."""
    floor = replace(traced.floor, now=now)
    if now < traced.floor.now:
        # The clock stepped back: whether a paused counter is still expected can differ
        # from the projection's reckoning. Rare; told the long way.
        return tell(ticket_id, floor, choose, traced.called, orders)
    at = traced.called.get(ticket_id)
    if at is not None:
        # Called in the projection: those of its matter called before it are ahead.
        picked = traced.steps[traced.turn_of[ticket_id]].picked
        assert picked is not None
        ahead = bisect.bisect_left(traced.times[picked.service_id], at)
        point = max(0.0, (at - now).total_seconds() / 60)
        low, high = band(point)
        return Told(round(point), low, high, ahead, "projected by the queue policy")
    # A new walk-in is last on the floor: look from the end.
    ticket = next((c for c in reversed(floor.waiting) if c.ticket_id == ticket_id), None)
    if ticket is None:
        return None
    if not _served(floor, ticket.service_id):
        return tell(ticket_id, floor, choose, traced.called, orders)
    # More are waiting than the projection plays forward: those of the matter who joined
    # before, and those called though they joined after.
    matter, key = ticket.service_id, _arrival(ticket)
    ahead = sum(
        1
        for c in traced.appointments
        if c.ticket_id > 0 and c.service_id == matter and _arrival(c) < key
    )
    for group, members in traced.groups.items():
        if group[0] == matter:
            before = bisect.bisect_left(members, key, key=_arrival)
            ahead += before - bisect.bisect_left(traced.expected_by_group.get(group, ()), key)
    called_arrivals = traced.called_arrivals.get(matter, [])
    ahead += len(called_arrivals) - bisect.bisect_right(called_arrivals, key)
    return Told(None, None, None, ahead, "more are waiting than the estimate plays forward")


def queue_order(service_id: int, floor: Floor, choose: Chooser) -> list[int]:
    """The matter's waiting tickets in the order a counter serving only it would call them
    now: what is told while no counter serving the matter is open."""
    counter = CounterNow(0, {service_id: ServiceLevel.PRIMARY}, CounterState.OPEN)
    pool = _Pool.of(c for c in floor.waiting if c.service_id == service_id)
    order: list[int] = []
    while True:
        choice = choose(counter, pool.contenders(floor.now), floor.now, None)
        if choice is None:
            return order
        order.append(choice.candidate.ticket_id)
        pool.remove(choice.candidate)


def _served(floor: Floor, service_id: int) -> bool:
    """Whether the projection had a counter for the matter: one open, or paused and
    expected back."""
    return any(
        service_id in c.profile
        and (
            c.state == CounterState.OPEN
            or (c.state == CounterState.PAUSED and _back_from_break(c, floor) is not None)
        )
        for c in floor.counters
    )


def band(point: float) -> tuple[int, int]:
    """The range told around a projected wait of ``point`` minutes.

    Measured on the simulated standard days (docs/queue.md), the actual wait falls short of
    the projection by more than 0.5 × point + 2 min, or exceeds it by more than
    3.5 × √point + 1 min, for fewer than one visitor in ten at every length of wait: service
    times vary, and so do the visitors who come and go ahead. Past 10 minutes the ends are
    rounded outwards to whole 5 minutes, so that the range reads as people say it
    ("about 15–30 min").
    """
    if point < 0.5:
        return 0, 0
    low = max(0.0, 0.5 * point - 2)
    high = point + 3.5 * math.sqrt(point) + 1
    if low >= 10:
        low = 5 * math.floor(low / 5)
    if high > 10:
        high = 5 * math.ceil(high / 5)
    return math.floor(low), math.ceil(high)
