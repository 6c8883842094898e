"""A hall's issuing statements in one process on PostgreSQL: one at a time, each carrying
every issue that came while the one before it was out.

Each issuing statement takes its matter's day counter and the hall row, and holds them to
its commit; a crowd of statements queued on those rows cost the database more CPU than
the tickets themselves. pgbench, issuing's statement alone on this project's 2-core
machine: one client 1,470–1,570 tickets/s at 0.56–0.60 ms of the machine's CPU each; eight
clients 1,100/s at 1.1 ms (docs/performance.md, "2026-12-07, later"). So a process sends a
hall's issues one statement at a time. The first issue finding none out sends its own at
once; those that come while it is out wait in the process, holding no connection, and the
first of them sends, when it is back, one statement for all of them
(``statements.PG_ENQUEUE_MANY``, at most ``MOST_AT_ONCE``): four tickets in one statement
cost the database 0.33–0.45 ms each. Under no load nothing waits; in a rush the batches
grow with it, by themselves.

Each issue keeps what it would have had alone: its own number, ticket, print job, key and
events, in the order the issues came; its own answer. A tap again (its Idempotency-Key
stored already, or twice in one statement) is left out, and its request reads the key's
ticket, as alone. If the statement is refused whole (a hall or matter changed since the
process read it: ``driven.FactsChanged``; a key stored meanwhile by another process's
statement) every issue of it learns so and goes on as it would have alone. A sender
cancelled while its statement is out sees it to its end, tells the others, and is then
cancelled; so is an issue cancelled as it is told.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from queue_server.db import driven
from queue_server.db.repository import Enqueued, NewVisit

from .unit_of_work import UnitOfWork

MOST_AT_ONCE = 32
"""At most this many issues in one statement (the rest wait for the next)."""

_LEAD = "lead"
"""Told to a waiting issue: send the next statement, for yourself and those behind you."""
_ALONE = "alone"
"""Told to each issue of a statement refused for an Idempotency-Key another process's
statement stored meanwhile: send your own statement (the one whose key was taken learns so
there)."""


@dataclass(eq=False, slots=True)
class _Issue:
    visit: NewVisit
    digest: str
    told: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass(eq=False, slots=True)
class _Hall:
    """One hall's issuing in one event loop: whether a statement is out, and who waits."""

    out: bool = False
    waiting: deque[_Issue] = field(default_factory=deque)


_halls: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, _Hall]] = (
    weakref.WeakKeyDictionary()
)


def _hall(hall_id: int) -> _Hall:
    halls = _halls.setdefault(asyncio.get_running_loop(), {})
    hall = halls.get(hall_id)
    if hall is None:
        hall = halls[hall_id] = _Hall()
    return hall


async def enqueue(uow: UnitOfWork, visit: NewVisit, digest: str) -> tuple[Enqueued | None, bool]:
    """``driven.enqueue(db, visit, digest)``, sent with the other issues of the hall that
    wait in this process, or alone. Returns what was made (None: the visit's
    Idempotency-Key was taken by a request that committed first; nothing made) and
    whether ``uow`` sent the statement itself (its connection, so it commits it); if not,
    another unit committed the change (``UnitOfWork.committed_by_another``).
    ``driven.FactsChanged`` when the hall or the matter changed: nothing made."""
    hall = _hall(visit.hall_id)
    mine = _Issue(visit, digest)
    hall.waiting.append(mine)
    if hall.out:
        try:
            told = await mine.told
        except asyncio.CancelledError:
            _gone(hall, mine)
            raise
        if told is _ALONE:
            return await driven.enqueue(await uow.driver(), visit, digest), True
        if told is not _LEAD:
            return told, False
    else:
        hall.out = True
    # This issue sends the statement: it heads the queue. Those behind it whose requests
    # were cancelled meanwhile (told cancelled, not yet gone) are left out.
    waiting = hall.waiting
    assert waiting[0] is mine
    waiting.popleft()
    batch = [mine]
    while waiting and len(batch) < MOST_AT_ONCE:
        issue = waiting.popleft()
        if not issue.told.done():
            batch.append(issue)
    try:
        made = await _sent(uow, batch)
    finally:
        _hand_on(hall)
    return made, True


async def _sent(uow: UnitOfWork, batch: list[_Issue]) -> Enqueued | None:
    """Send ``batch``'s statement on ``uow``'s connection, tell each issue behind the first
    what became of it, and return the first's. The statement is seen to its end even if
    the sender is cancelled meanwhile, so that no issue of it waits for an answer nobody
    will give."""
    run = asyncio.ensure_future(_statement(uow, batch))
    cancelled = False
    while not run.done():
        try:
            await asyncio.wait([run])
        except asyncio.CancelledError:
            cancelled = True
    behind = batch[1:]
    try:
        made = run.result()
    except BaseException as exc:
        for issue in behind:
            if isinstance(exc, driven.FactsChanged):
                exc_here: BaseException = driven.FactsChanged(str(issue.visit.service_id))
            else:
                exc_here = exc
            _tell(issue, exception=exc_here)
        if cancelled:
            raise asyncio.CancelledError from exc  # the sender's request is gone
        raise
    if made is None:  # a key taken meanwhile by another process: each goes alone
        for issue in behind:
            _tell(issue, result=_ALONE)
        if cancelled:
            raise asyncio.CancelledError
        if not behind:
            return None
        return await driven.enqueue(await uow.driver(), batch[0].visit, batch[0].digest)
    for issue, told in zip(behind, made[1:], strict=True):
        _tell(issue, result=told)
    if cancelled:
        raise asyncio.CancelledError
    return made[0]


async def _statement(uow: UnitOfWork, batch: list[_Issue]) -> list[Enqueued | None] | None:
    """What ``batch``'s one statement made, in its order (None: a key was taken first)."""
    db = await uow.driver()
    if len(batch) == 1:
        made = await driven.enqueue(db, batch[0].visit, batch[0].digest)
        return None if made is None else [made]
    return await driven.enqueue_many(db, [(issue.visit, issue.digest) for issue in batch])


def _tell(issue: _Issue, *, result: Any = None, exception: BaseException | None = None) -> None:
    if issue.told.done():  # its request was cancelled while the statement was out
        return
    if exception is not None:
        issue.told.set_exception(exception)
    else:
        issue.told.set_result(result)


def _hand_on(hall: _Hall) -> None:
    """The statement is back: the first issue still waiting sends the next one."""
    while hall.waiting:
        issue = hall.waiting[0]
        if not issue.told.done():
            issue.told.set_result(_LEAD)
            return
        hall.waiting.popleft()
    hall.out = False


def _gone(hall: _Hall, issue: _Issue) -> None:
    """A waiting issue's request was cancelled: it leaves the queue; if it had just been
    told to send, the next one sends instead."""
    told = issue.told
    if told.done() and not told.cancelled() and told.exception() is None and told.result() is _LEAD:
        hall.waiting.remove(issue)
        _hand_on(hall)
    elif issue in hall.waiting:
        hall.waiting.remove(issue)
