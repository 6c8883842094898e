"""Handlers of the hall's queue commands: issue, call, serve, transfer, and counter state."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from queue_server.db import driven
from queue_server.db import statements as sql
from queue_server.db.repository import (
    Busy,
    Enqueued,
    NewVisit,
    ViewParts,
    apply_ticket,
    hall_from_row,
    new_follow_token,
    policy_config,
    service_from_row,
    ticket_change,
    ticket_from_row,
)
from queue_server.db.tables import (
    CounterRow,
    HallRow,
    IdempotencyKeyRow,
    ServiceRow,
    TicketRow,
)
from queue_server.domain import events as ev
from queue_server.domain.errors import DomainError, IllegalTransition
from queue_server.domain.floor import Candidate
from queue_server.domain.hours import business_day
from queue_server.domain.model import Counter, Hall, Ticket, TicketKind, format_number
from queue_server.domain.policy import rank

from . import commands as cmd
from . import estimates, issue_batches, printing, visitors
from .errors import Conflict, Forbidden, NotFound, RetryTransaction
from .floor import lookahead_floor
from .unit_of_work import UnitOfWork
from .views import NewTicket, ServiceRef, new_ticket_view

CLAIM_TRIES = 50
"""How deep call-next goes into the ranked queue for a ticket no other counter holds."""
FIRST_TRIES = 16
"""How deep it reads first: the heads of each matter, kind and priority (a call nearly
always takes one of the first few; more counters than this calling the same matters at one
moment send it deeper, to ``CLAIM_TRIES``)."""


ISSUING_AT_ONCE = 4
"""Issues one process runs at once per hall on PostgreSQL that read the hall first
(``_issue_driven``: the process does not know the hall and matter, the issue is refused,
or its key was sent before; those it knows are sent together, ``issue_batches``); more
wait their turn in the process, holding no lock and no connection.
Each takes its matter's day counter and the hall row, and a crowd of backends waiting
for those rows cost the database more CPU than it gave: at 64 kiosk connections, 0.84 of
a core for 449 tickets/s without this, 0.53 for 651/s with it (docs/performance.md,
"2026-12-05, night"). Per hall: a hall whose rows are held (a check-in, a configuration
change) holds up only its own kiosks."""
_issuing: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)


def _issuing_turn(hall_id: int) -> asyncio.Semaphore:
    """This event loop's turns at issuing in hall ``hall_id`` (a semaphore serves one loop;
    a process serves a few dozen halls at most, so each keeps its own)."""
    halls = _issuing.setdefault(asyncio.get_running_loop(), {})
    gate = halls.get(hall_id)
    if gate is None:
        gate = halls[hall_id] = asyncio.Semaphore(ISSUING_AT_ONCE)
    return gate


@dataclass(frozen=True)
class CallResult:
    """What a call gives the clerk: the ticket (None when nobody waits) and the reason."""

    ticket_id: int | None
    reason: str


async def _hall(uow: UnitOfWork, hall_id: int) -> Hall:
    row = await uow.repo.hall_row(hall_id)
    if row is None:
        raise NotFound(f"no hall with id {hall_id}")
    return hall_from_row(row)


async def issue_ticket(uow: UnitOfWork, c: cmd.IssueTicket) -> int:
    """Issue a ticket and return its id; the same idempotency key returns the same ticket."""
    return (await issue_new(uow, c)).ticket_id


async def issue_new(uow: UnitOfWork, c: cmd.IssueTicket) -> NewTicket:
    """Issue a ticket (``issue_ticket``) and, where the issuing statement told all its
    answer needs (PostgreSQL, a ticket made now), that answer but for the wait estimate:
    the kiosk is answered from this one transaction (``kiosk_prints.new_ticket_answer``)."""
    now = uow.clock.now()
    scope = f"device:{c.actor.device_id}" if c.actor.device_id else f"user:{c.actor.user_id}"
    # The key stands for this request: the same key with another hall, matter or priority
    # is a client bug, not a double tap, and must not hand out someone else's ticket.
    fingerprint = f"{c.hall_id}/{c.service_id}/{c.priority}/{c.kind}"
    key = c.idempotency_key or None
    if uow.dialect == "postgresql":
        return await _issue_driven(uow, c, now, scope, key, fingerprint)
    # The hall, the matter and what the key was stored with, in one statement (the hall row
    # stays in the session for the print payload).
    values = {"hall": c.hall_id, "service": c.service_id, "scope": scope, "key": key}
    found = (await uow.session.execute(sql.HALL_AND_MATTER, values)).first()
    if found is None:
        raise NotFound(f"no hall with id {c.hall_id}")
    hall_row, service_row, kept_ticket, kept_fingerprint = found
    if kept_ticket is not None:
        return _kept(kept_ticket, kept_fingerprint, fingerprint)
    hall = hall_from_row(hall_row)
    _may_issue(hall, service_row, c, now)
    ticket = await enqueue(
        uow, hall, service_row, kind=c.kind, priority=c.priority, actor=c.actor,
        follow_base=c.follow_base, idempotency=(scope, key, fingerprint) if key else None,
    )  # fmt: skip
    await uow.commit()
    return NewTicket(ticket.ref)


def _kept(ticket_id: int, kept_fingerprint: str, fingerprint: str) -> NewTicket:
    """The ticket an Idempotency-Key was stored with, for the same request again."""
    if kept_fingerprint not in ("", fingerprint):
        raise Conflict(
            "this Idempotency-Key was already used for a different request; "
            "send a new key for each new ticket"
        )
    return NewTicket(ticket_id)


def _may_issue(hall: Hall, matter: Any, c: cmd.IssueTicket, now: datetime) -> None:
    """Refuse an issue the hall or its matter does not allow (``matter``: its row, or
    None when the hall has no such matter)."""
    if matter is None:
        raise NotFound(f"hall {hall.id} has no matter with id {c.service_id}")
    if not matter.active:
        raise IllegalTransition(f"matter {matter.name_en}", "issue a ticket for", "inactive")
    hall.check_priority(c.priority)
    hall.check_open(now)


@dataclass(frozen=True, slots=True)
class _Facts:
    """A hall and one of its matters as issuing last read them, with their digest
    (``statements.ISSUE_FACTS``)."""

    hall: driven.RecordFields
    matter: driven.RecordFields
    digest: str
    built: Hall
    """``hall`` as the domain's ``Hall``, made once (``hall_from_row`` was 3.5% of a
    worker's CPU issuing at 64 connections when made for every issue)."""


FACTS_KEPT = 4096
"""How many (hall, matter) pairs a process keeps the facts of; all are dropped past it."""
_known_facts: dict[tuple[int, int], _Facts] = {}
"""What issuing last read of each (hall, matter): the next issue there sends its statement
checked against them (``PG_ENQUEUE_IF_FACTS``) and needs no read first. Nothing has to
forget them: a statement whose facts changed writes nothing, and the issue reads again."""


def forget() -> None:
    """Drop what issuing knows of every hall (tests: each has a database of its own)."""
    _known_facts.clear()


async def _issue_driven(
    uow: UnitOfWork,
    c: cmd.IssueTicket,
    now: datetime,
    scope: str,
    key: str | None,
    fingerprint: str,
) -> NewTicket:
    """``issue_new`` on PostgreSQL, on the driver's own connection (``db.driven``), each
    statement committed alone, and the answer but for the wait estimate told by the
    issuing statement (``statements.PG_ENQUEUE``): its one change. The locks it takes (the
    matter's day counter, the hall row, which every issuer queues on) are held for that
    statement and its commit only, and no BEGIN or COMMIT is sent.

    Where the process knows the hall and the matter (``_known_facts``), that statement is
    the only one, made on what it knows and checked against the database as it runs, and
    sent together with the hall's other issues waiting in the process
    (``issue_batches``): then the unit that sent it commits, and the others learn what
    they made from it. Otherwise, or when the check fails, the issue refuses, or its
    Idempotency-Key was used before, it first reads the hall, the matter and the key in
    one statement, which sees what was committed, as in a transaction."""
    idempotency = (scope, key, fingerprint) if key else None
    pair = (c.hall_id, c.service_id)
    told: Enqueued | None = None
    sent = True
    known = _known_facts.get(pair)
    if known is not None:
        matter = known.matter
        try:
            hall, visit = _new_visit(c, known.hall, matter, now, idempotency, known.built)
        except DomainError:
            pass  # refused: read first, as a key kept from before is answered first
        else:
            try:
                told, sent = await issue_batches.enqueue(uow, visit, known.digest)
            except driven.FactsChanged:
                if _known_facts.get(pair) is known:
                    del _known_facts[pair]
    if told is None:
        sent = True
        # The turn is taken before the connection: a crowd of kiosks waits in the
        # process, holding neither a lock nor one of the pool's connections (a pool
        # emptied by waiters opened and closed its overflow connections by the hundred a
        # minute at 64 kiosks).
        async with _issuing_turn(c.hall_id):
            db = await uow.driver()
            found = await driven.issue_read(
                db, hall_id=c.hall_id, service_id=c.service_id, scope=scope, key=key
            )
            if found is None:
                raise NotFound(f"no hall with id {c.hall_id}")
            if found["kept_ticket"] is not None:
                return _kept(found["kept_ticket"], found["kept_fingerprint"], fingerprint)
            hall_fields = driven.RecordFields(found)
            read = driven.RecordFields(found, driven.MATTER) if found["matter_id"] else None
            hall, visit = _new_visit(c, hall_fields, read, now, idempotency)
            assert read is not None  # _new_visit refused a hall without the matter
            matter = read
            if len(_known_facts) >= FACTS_KEPT:
                _known_facts.clear()
            _known_facts[pair] = _Facts(hall_fields, matter, found["facts"], hall)
            told = await driven.enqueue(db, visit)
    if told is None:
        # A second tap with the same key committed first: run again to return its ticket.
        raise RetryTransaction
    if sent:
        uow.note_recorded()
        await uow.commit()
    else:
        uow.committed_by_another()
    ticket = Ticket(
        id=told.ticket_id, hall_id=hall.id, visit_id=told.visit_id, service_id=matter.id,
        number=told.number, business_day=visit.day, kind=c.kind, priority=c.priority,
        issued_at=now, queued_at=now,
    )  # fmt: skip
    view = new_ticket_view(
        ticket,
        ServiceRef(matter.id, matter.name_zh, matter.name_en),
        visit.follow_token,
        printing.new_job_state(told.job_id, told.printer, now),
    )
    joined = None
    if c.kind == TicketKind.WALK_IN:
        walk_in = Candidate(
            told.ticket_id, told.number, matter.id, TicketKind.WALK_IN, c.priority, now
        )
        joined = estimates.Joined(walk_in, logged=1 + (told.job_id is not None))
    return NewTicket(ticket.ref, view, hall, told.event_seq, joined)


def _new_visit(
    c: cmd.IssueTicket,
    hall_fields: driven.RecordFields,
    matter: driven.RecordFields | None,
    now: datetime,
    idempotency: tuple[str, str, str] | None,
    hall: Hall | None = None,
) -> tuple[Hall, NewVisit]:
    """The hall, and the walk-in's visit as ``driven.enqueue`` writes it, if the hall and
    the matter (read by ``driven.ISSUE_READ``; None: the hall has no such matter) allow
    the issue now (``_may_issue``). ``hall``: ``hall_fields`` made a ``Hall`` before."""
    if hall is None:
        hall = hall_from_row(hall_fields)
    _may_issue(hall, matter, c, now)
    assert matter is not None  # refused above otherwise
    token = new_follow_token()
    payload = printing.new_ticket_payload(
        hall_fields, matter, kind=str(c.kind), priority=c.priority, issued_at=now,
        due_at=None, follow_url=f"{c.follow_base}/t/{token}",
    )  # fmt: skip
    visit = NewVisit(
        hall_id=hall.id, day=business_day(now, hall.tz), prefix=matter.prefix,
        service_id=matter.id, kind=c.kind, priority=c.priority, now=now, follow_token=token,
        device_id=c.actor.device_id, user_id=c.actor.user_id, job_payload=payload,
        idempotency=idempotency,
    )  # fmt: skip
    return hall, visit


async def enqueue(
    uow: UnitOfWork,
    hall: Hall,
    service_row: ServiceRow,
    *,
    kind: TicketKind,
    priority: str,
    actor: cmd.Actor,
    follow_base: str,
    due_at: datetime | None = None,
    idempotency: tuple[str, str, str] | None = None,
) -> Ticket:
    """Put a new visit in the queue: its numbered ticket, the event, the print job for the
    kiosk's printer when a kiosk asked, and the Idempotency-Key (scope, key, fingerprint)
    if one was sent. Walk-ins and checked-in bookings both come here.

    On PostgreSQL all of it is one statement (``Repository.enqueue``); SQLite, whose
    writers take turns anyway, adds the rows one by one. (A walk-in on PostgreSQL is
    issued on the driver's connection instead, ``_issue_driven``.)"""
    now = uow.clock.now()
    day = business_day(now, hall.tz)
    if uow.repo.dialect == "postgresql":
        return await _enqueue_at_once(
            uow, hall, service_row, kind=kind, priority=priority, actor=actor,
            follow_base=follow_base, due_at=due_at, idempotency=idempotency, now=now, day=day,
        )  # fmt: skip
    visit = await uow.repo.add_visit(hall.id, day, now)
    seq = await uow.repo.allocate_seq(hall.id, day, service_row.prefix)
    ticket = Ticket(
        hall_id=hall.id,
        visit_id=visit.id,
        service_id=service_row.id,
        number=format_number(service_row.prefix, seq),
        business_day=day,
        kind=kind,
        priority=priority,
        issued_at=now,
        queued_at=now,
        due_at=due_at,
    )
    await uow.repo.add_ticket(
        ticket,
        service_row.prefix,
        seq,
        issued_by_device_id=actor.device_id,
        issued_by_user_id=actor.user_id,
    )
    uow.collect(
        [
            ev.TicketIssued(
                hall.id, now, ticket.ref, ticket.number, ticket.service_id, ticket.kind,
                ticket.priority,
            )
        ]
    )  # fmt: skip
    if actor.device_id is not None:
        printer = await printing.printer_for_kiosk(uow, actor.device_id)
        if printer is not None:
            await printing.queue_job(uow, ticket.ref, printer, follow_base)
    if idempotency is not None:
        scope, key, fingerprint = idempotency
        uow.session.add(
            IdempotencyKeyRow(
                scope=scope, key=key, ticket_id=ticket.ref, created_at=now, fingerprint=fingerprint
            )
        )
        try:
            await uow.session.flush()
        except IntegrityError as exc:
            # A second tap with the same key committed first: run again to return its ticket.
            raise RetryTransaction from exc
    return ticket


async def _enqueue_at_once(
    uow: UnitOfWork,
    hall: Hall,
    service_row: ServiceRow,
    *,
    kind: TicketKind,
    priority: str,
    actor: cmd.Actor,
    follow_base: str,
    due_at: datetime | None,
    idempotency: tuple[str, str, str] | None,
    now: datetime,
    day: date,
) -> Ticket:
    hall_row = await uow.session.get(HallRow, hall.id)  # loaded already: no round trip
    assert hall_row is not None
    token = new_follow_token()
    payload = printing.new_ticket_payload(
        hall_row, service_row, kind=str(kind), priority=priority, issued_at=now, due_at=due_at,
        follow_url=f"{follow_base}/t/{token}",
    )  # fmt: skip
    visit = NewVisit(
        hall_id=hall.id, day=day, prefix=service_row.prefix, service_id=service_row.id,
        kind=kind, priority=priority, now=now, follow_token=token, device_id=actor.device_id,
        user_id=actor.user_id, job_payload=payload, due_at=due_at, idempotency=idempotency,
    )  # fmt: skip
    done = await uow.repo.enqueue(visit)
    if done is None:
        # A second tap with the same key committed first: run again to return its ticket.
        raise RetryTransaction
    uow.note_recorded()
    ticket = Ticket(
        id=done.ticket_id,
        hall_id=hall.id,
        visit_id=done.visit_id,
        service_id=service_row.id,
        number=done.number,
        business_day=day,
        kind=kind,
        priority=priority,
        issued_at=now,
        queued_at=now,
        due_at=due_at,
    )
    return ticket


async def _counter_for_clerk(uow: UnitOfWork, c: cmd.CounterCommand) -> tuple[CounterRow, Counter]:
    found = await uow.repo.counter(c.counter_id, lock=True)
    if found is None:
        raise NotFound(f"no counter with id {c.counter_id}")
    return found


def _require_signed_in(counter: Counter, clerk_id: int) -> None:
    if counter.clerk_id is None:
        raise IllegalTransition(counter.label, "work at", str(counter.state), "open it first")
    if counter.clerk_id != clerk_id:
        raise Forbidden(f"{counter.label} is signed in by another clerk")


def _save_counter(uow: UnitOfWork, row: CounterRow, counter: Counter) -> None:
    if row.state != str(counter.state):
        row.state_since = uow.clock.now()
    row.state = str(counter.state)
    row.clerk_id = counter.clerk_id
    uow.collect(counter.events)


async def open_counter(uow: UnitOfWork, c: cmd.OpenCounter) -> None:
    """Sign the clerk in here, signing them out of any other counter (one at a time)."""
    # Lock this counter and every counter the clerk holds, in id order, before looking:
    # the same order in every transaction, so two clerks swapping counters cannot deadlock.
    held = (
        await uow.session.execute(select(CounterRow.id).where(CounterRow.clerk_id == c.clerk_id))
    ).scalars()
    locked = {}
    for counter_id in sorted({c.counter_id, *held}):
        found = await uow.repo.counter(counter_id, lock=True)
        if found is None:
            raise NotFound(f"no counter with id {counter_id}")
        locked[counter_id] = found
    row, counter = locked.pop(c.counter_id)
    for other_row, other in locked.values():
        if other.clerk_id != c.clerk_id:
            continue  # changed hands before we locked it
        if await uow.repo.active_ticket_at(other.id) is not None:
            raise IllegalTransition(
                f"counter {row.number}",
                "open",
                f"not possible while you have a ticket at counter {other.number}",
                "finish or return it first",
            )
        other.close(uow.clock.now())
        _save_counter(uow, other_row, other)
    counter.open(c.clerk_id, uow.clock.now())
    _save_counter(uow, row, counter)
    await uow.commit()


async def pause_counter(uow: UnitOfWork, c: cmd.PauseCounter) -> None:
    row, counter = await _counter_for_clerk(uow, c)
    _require_signed_in(counter, c.clerk_id)
    counter.pause(uow.clock.now())
    _save_counter(uow, row, counter)
    await uow.commit()


async def close_counter(uow: UnitOfWork, c: cmd.CloseCounter) -> None:
    row, counter = await _counter_for_clerk(uow, c)
    _require_signed_in(counter, c.clerk_id)
    active = await uow.repo.active_ticket_at(counter.id)
    if active is not None:
        raise IllegalTransition(
            counter.label, "close", f"serving {active.number}", "finish or return it first"
        )
    counter.close(uow.clock.now())
    _save_counter(uow, row, counter)
    await uow.commit()


async def _ready_to_call(
    uow: UnitOfWork, c: cmd.CounterCommand, *, busy_checked: bool = True
) -> tuple[Counter, Hall]:
    """The counter, locked, and its hall, if its clerk may call there now; with
    ``busy_checked=False`` the caller still has to check that the counter is not busy with
    a ticket (``_busy``), with what it reads next."""
    found = await uow.repo.counter_to_call_at(c.counter_id)
    if found is None:
        raise NotFound(f"no counter with id {c.counter_id}")
    counter, hall_row = found
    _require_signed_in(counter, c.clerk_id)
    counter.check_can_call()
    if busy_checked:
        active = await uow.repo.active_ticket_at(counter.id)
        if active is not None:
            raise _busy(counter, Busy(active.number, active.state))
    return counter, hall_from_row(hall_row)


def _busy(counter: Counter, active: Busy) -> IllegalTransition:
    return IllegalTransition(
        counter.label,
        "call at",
        f"busy with {active.number} ({active.state})",
        "finish it, mark it no-show or return it to the queue first",
    )


NOBODY_WAITING = "nobody is waiting for this counter's matters"
C = TypeVar("C")


async def call_next(uow: UnitOfWork, c: cmd.CallNext) -> CallResult:
    """Call the ticket the policy ranks first for this counter; two counters never share one."""
    if uow.dialect == "postgresql":
        return await _call_next_driven(uow, c)
    counter, hall = await _ready_to_call(uow, c, busy_checked=False)
    now = uow.clock.now()
    day = business_day(now, hall.tz)
    first = await uow.repo.waiting_heads_unless_busy(
        hall.id, day, counter.profile, FIRST_TRIES, counter.id
    )
    if isinstance(first, Busy):
        raise _busy(counter, first)

    async def deeper(depth: int) -> list[Candidate]:
        return await uow.repo.waiting_heads(hall.id, day, counter.profile, depth)

    async def claim(ticket_id: int, skip_locked: bool) -> TicketRow | None:
        return await uow.repo.claim_waiting(ticket_id, skip_locked=skip_locked)

    claimed = await _claim_first(uow, counter, hall, now, first, deeper, claim)
    if claimed is None:
        return CallResult(None, NOBODY_WAITING)
    row, reason = claimed
    _call(uow, row, counter, c.clerk_id, reason)
    await uow.commit(answering=row.id)
    return CallResult(row.id, reason)


async def _claim_first(
    uow: UnitOfWork,
    counter: Counter,
    hall: Hall,
    now: datetime,
    waiting: list[Candidate],
    deeper: Callable[[int], Awaitable[list[Candidate]]],
    claim: Callable[[int, bool], Awaitable[C | None]],
) -> tuple[C, str] | None:
    """The ticket a call takes, claimed (``claim(ticket_id, skip_locked)``), and the
    policy's reason; None when nobody is left to claim. ``waiting``: the heads read first
    (``FIRST_TRIES`` of each group, once the counter's lock is held); ``deeper(depth)``
    reads them deeper. Both of call-next's paths (the session's, the driver's) choose so."""
    day = business_day(now, hall.tz)
    config = policy_config(hall)
    depth = FIRST_TRIES
    while True:
        # The first ``depth`` of each group rank the first ``depth`` of the whole queue
        # exactly (repository.waiting_heads): a shallow read and ranking first, a deeper
        # one only when other counters hold (or just took) every ticket of the first.
        floor = await lookahead_floor(uow, hall.id, day, now, waiting)
        ranked = rank(counter.profile, waiting, now, config, hall.tz, floor, counter.id, depth)
        # Fewer rows than ``depth``: no group had more, a deeper read would add nobody.
        last = depth == CLAIM_TRIES or len(waiting) < depth
        # First pass skips tickets another counter is claiming right now; if the last read
        # left nothing, wait for those claims to settle and take whatever still waits.
        for skip_locked in (True, False) if last else (True,):
            for choice in ranked:
                # A deeper read tries the first ones again: one let go meanwhile keeps its turn.
                claimed = await claim(choice.candidate.ticket_id, skip_locked)
                if claimed is not None:
                    return claimed, choice.reason
        if last:
            return None
        depth = CLAIM_TRIES
        waiting = await deeper(depth)


async def _call_next_driven(uow: UnitOfWork, c: cmd.CallNext) -> CallResult:
    """``call_next`` on PostgreSQL: the same statements and the same choice, in one
    transaction on the driver's own connection (``db.driven``), with no ORM session or
    SQLAlchemy execution around its statements: the counter locked with its hall, the
    heads unless the counter is busy (one statement, begun once the counter's lock is
    held), the claim, the change with its events; the answer from what the claim read
    (``views.settled_ticket_view``)."""
    db = await uow.begin_on_driver()
    found = await driven.counter_to_call_at(db, c.counter_id)
    if found is None:
        raise NotFound(f"no counter with id {c.counter_id}")
    counter, hall_fields = found
    uow.counter_numbers[counter.id] = counter.number
    _require_signed_in(counter, c.clerk_id)
    counter.check_can_call()
    hall = hall_from_row(hall_fields)
    now = uow.clock.now()
    day = business_day(now, hall.tz)
    matters = list(counter.profile)
    first = await driven.waiting_heads_unless_busy(
        db, hall.id, day, matters, FIRST_TRIES, counter.id
    )
    if isinstance(first, Busy):
        raise _busy(counter, first)

    async def deeper(depth: int) -> list[Candidate]:
        return await driven.waiting_heads(db, hall.id, day, matters, depth)

    async def claim(ticket_id: int, skip_locked: bool) -> ViewParts | None:
        return await driven.claim_waiting(db, ticket_id, skip_locked=skip_locked)

    claimed = await _claim_first(uow, counter, hall, now, first, deeper, claim)
    if claimed is None:
        return CallResult(None, NOBODY_WAITING)
    parts, reason = claimed
    row = parts.row
    ticket = ticket_from_row(row)
    called_at = uow.clock.now()
    ticket.call(counter.id, c.clerk_id, called_at, reason)
    changed = ticket_change(row, ticket)
    await driven.record_with_ticket(db, row, changed, ticket.events, called_at)
    uow.view_parts[row.id] = parts
    uow.note_written(ticket.events)
    await uow.commit(answering=row.id)
    return CallResult(row.id, reason)


def _call(uow: UnitOfWork, row: TicketRow, counter: Counter, clerk_id: int, reason: str) -> None:
    ticket = ticket_from_row(row)
    ticket.call(counter.id, clerk_id, uow.clock.now(), reason)
    apply_ticket(row, ticket)
    uow.collect(ticket.events)


async def call_ticket(uow: UnitOfWork, c: cmd.CallTicket) -> CallResult:
    """Call a chosen waiting ticket (e.g. a visitor at the counter asks to be served)."""
    counter, hall = await _ready_to_call(uow, c)
    row = await uow.repo.ticket_row(c.ticket_id, lock=True)
    if row is None or row.hall_id != hall.id:
        raise NotFound(f"hall {hall.id} has no ticket with id {c.ticket_id}")
    if row.service_id not in counter.profile:
        raise Forbidden(f"{counter.label} does not serve the matter of ticket {row.number}")
    reason = "called by the clerk"
    _call(uow, row, counter, c.clerk_id, reason)
    await uow.commit(answering=row.id)
    return CallResult(row.id, reason)


async def _current(
    uow: UnitOfWork, c: cmd.CounterCommand, *, lock: bool = True
) -> tuple[TicketRow, Ticket]:
    counter, row = await uow.repo.counter_and_active_ticket(c.counter_id, lock=lock)
    if counter is None:
        raise NotFound(f"no counter with id {c.counter_id}")
    _require_signed_in(counter, c.clerk_id)
    if row is None:
        raise DomainError(f"{counter.label} has no current ticket; call one first")
    return row, ticket_from_row(row)


async def _on_current(uow: UnitOfWork, c: cmd.CounterCommand) -> int:
    # A change of the ticket's state alone (all but a finish, which may open a case or
    # send the visit on) is written only if the ticket has not moved since it was read: on
    # PostgreSQL two statements, no transaction, no lock held across a round trip.
    alone = not isinstance(c, cmd.FinishService)
    if alone and uow.dialect == "postgresql":
        return await _on_current_driven(uow, c)
    # SQLite's writers take turns (BEGIN IMMEDIATE): the read needs no lock of its own.
    row, ticket = await _current(uow, c, lock=not alone)
    now = uow.clock.now()
    if isinstance(c, cmd.FinishService):
        return await _finish(uow, row, ticket, c, now)
    _act(ticket, c, now)
    apply_ticket(row, ticket)
    uow.collect(ticket.events)
    await uow.commit(answering=row.id)
    return row.id


def _act(ticket: Ticket, c: cmd.CounterCommand, now: datetime) -> None:
    """A clerk's action on the current ticket, but a finish."""
    match c:
        case cmd.Recall():
            ticket.recall(c.counter_id, now)
        case cmd.MarkNoShow():
            ticket.mark_no_show(c.counter_id, now)
        case cmd.StartService():
            ticket.start(c.counter_id, now)
        case cmd.ReturnToQueue():
            ticket.return_to_queue(c.counter_id, now)
        case _:
            raise TypeError(f"not a current-ticket command: {c!r}")


async def _on_current_driven(uow: UnitOfWork, c: cmd.CounterCommand) -> int:
    """``_on_current`` on PostgreSQL for all but a finish: its two statements (the counter
    with its ticket read without a lock; the change with its events written only if the
    ticket is as read) on the driver's own connection, each committed alone, with no
    lock held across a round trip; a ticket moved meanwhile is not written over, and the
    action runs again on the ticket as it is then (``RetryTransaction``)."""
    db = await uow.driver()
    counter, current = await driven.counter_and_active(db, c.counter_id)
    if counter is None:
        raise NotFound(f"no counter with id {c.counter_id}")
    _require_signed_in(counter, c.clerk_id)
    if current is None:
        raise DomainError(f"{counter.label} has no current ticket; call one first")
    uow.counter_numbers[counter.id] = counter.number
    row = current.row
    read = {column: getattr(row, column) for column in sql.TICKET_VERSION_COLUMNS}
    ticket = ticket_from_row(row)
    now = uow.clock.now()
    _act(ticket, c, now)
    changed = ticket_change(row, ticket)
    if not await driven.record_with_ticket_if_unchanged(db, row, changed, read, ticket.events, now):
        raise RetryTransaction("the ticket moved since it was read")
    uow.view_parts[row.id] = current
    uow.note_written(ticket.events)
    await uow.commit(answering=row.id)
    return row.id


async def _finish(
    uow: UnitOfWork, row: TicketRow, ticket: Ticket, c: cmd.FinishService, now: datetime
) -> int:
    """End the service with its outcome; with ``escalate`` the visit goes on to the desk in
    the same transaction (one click for the clerk, never a finished visit left in between)."""
    service = await uow.repo.service_row(row.service_id)
    documents = list(service.documents) if service is not None else []
    ticket.finish(c.counter_id, c.outcome, c.note, now, c.missing_documents, documents)
    apply_ticket(row, ticket)
    if c.visitor is not None:
        await visitors.remember_visitor(uow, row.hall_id, row.visit_id, c.visitor)
    if c.escalate:
        await escalate_row(uow, row, ticket, c.clerk_id, now)
    uow.collect(ticket.events)
    await uow.commit(answering=row.id)
    return row.id


async def desk_of(uow: UnitOfWork, hall_id: int) -> ServiceRow:
    """The hall's "can't get it done" desk matter, or ``DomainError`` saying how to make one."""
    desk = await uow.session.scalar(
        select(ServiceRow).where(ServiceRow.hall_id == hall_id, ServiceRow.desk.is_(True))
    )
    if desk is None:
        raise DomainError(
            "this hall has no can't-get-it-done desk; a manager marks one matter as the desk"
        )
    return desk


async def escalate_row(
    uow: UnitOfWork, row: TicketRow, ticket: Ticket, user_id: int | None, now: datetime
) -> int:
    """Queue the visit of finished ``ticket`` at the hall's desk; the new ticket's id.
    Refused when the visit has moved on already (a later ticket exists)."""
    later = await uow.session.scalar(
        select(TicketRow.id).where(TicketRow.visit_id == row.visit_id, TicketRow.id > row.id)
    )
    if later is not None:
        raise Conflict(
            f"ticket {row.number} has been sent on already (ticket id {later}); "
            "follow the visit's latest ticket"
        )
    hall = await _hall(uow, row.hall_id)
    if row.business_day != business_day(now, hall.tz):
        raise DomainError(
            f"ticket {row.number} is from {row.business_day}: the desk's queue is today's; "
            "open a case for it instead"
        )
    hall.check_open(now)  # the desk's queue is closed with the hall
    desk = await desk_of(uow, row.hall_id)
    follow_on = ticket.escalate(service_from_row(desk), now)
    uow.collect(ticket.events)
    await uow.repo.add_ticket(follow_on, row.prefix, None, issued_by_user_id=user_id)
    uow.collect(
        [
            ev.TicketIssued(
                follow_on.hall_id, now, follow_on.ref, follow_on.number, follow_on.service_id,
                follow_on.kind, follow_on.priority,
            )
        ]
    )  # fmt: skip
    return follow_on.ref


async def escalate_ticket(uow: UnitOfWork, c: cmd.EscalateTicket) -> int:
    """Send a finished, not-done ticket's visit on to the desk (after the fact); the
    escalation ticket's id."""
    row = await uow.repo.ticket_row(c.ticket_id, lock=True)
    if row is None or row.hall_id != c.hall_id:
        raise NotFound(f"hall {c.hall_id} has no ticket with id {c.ticket_id}")
    ticket = ticket_from_row(row)
    new_id = await escalate_row(uow, row, ticket, c.user_id, uow.clock.now())
    await uow.commit()
    return new_id


async def act_on_current(
    uow: UnitOfWork,
    c: cmd.Recall | cmd.MarkNoShow | cmd.StartService | cmd.FinishService | cmd.ReturnToQueue,
) -> int:
    """Apply a clerk's action to the counter's current ticket; return that ticket's id."""
    return await _on_current(uow, c)


async def transfer_ticket(uow: UnitOfWork, c: cmd.TransferTicket) -> tuple[int, int]:
    """End the current ticket as transferred; return its id and the visit's new ticket's."""
    row, ticket = await _current(uow, c)
    target = await uow.repo.service_row(c.to_service_id)
    if target is None or target.hall_id != row.hall_id:
        raise NotFound(f"hall {row.hall_id} has no matter with id {c.to_service_id}")
    now = uow.clock.now()
    follow_on = ticket.transfer(c.counter_id, service_from_row(target), c.note, now)
    apply_ticket(row, ticket)
    uow.collect(ticket.events)
    await uow.repo.add_ticket(follow_on, row.prefix, None, issued_by_user_id=c.clerk_id)
    uow.collect(
        [
            ev.TicketIssued(
                follow_on.hall_id, now, follow_on.ref, follow_on.number, follow_on.service_id,
                follow_on.kind, follow_on.priority,
            )
        ]
    )  # fmt: skip
    await uow.commit()
    return row.id, follow_on.ref


@dataclass(frozen=True)
class WaitingEntry:
    ticket_id: int
    number: str
    service_id: int
    kind: str
    priority: str
    waited_minutes: int
    reason: str


async def _counter_today(uow: UnitOfWork, counter_id: int) -> tuple[Counter, Hall, datetime, date]:
    """The counter (not locked), its hall, now and the hall's business day now."""
    found = await uow.repo.counter(counter_id)
    if found is None:
        raise NotFound(f"no counter with id {counter_id}")
    counter = found[1]
    hall = await _hall(uow, counter.hall_id)
    now = uow.clock.now()
    return counter, hall, now, business_day(now, hall.tz)


async def waiting_for_counter(uow: UnitOfWork, counter_id: int) -> list[WaitingEntry]:
    """The first ``CLAIM_TRIES`` of the counter's waiting tickets, in the order call-next
    would take them (``waiting_total`` counts them all)."""
    counter, hall, now, day = await _counter_today(uow, counter_id)
    waiting = await uow.repo.waiting_heads(hall.id, day, counter.profile, CLAIM_TRIES)
    floor = await lookahead_floor(uow, hall.id, day, now, waiting)
    return [
        WaitingEntry(
            ch.candidate.ticket_id,
            ch.candidate.number,
            ch.candidate.service_id,
            str(ch.candidate.kind),
            ch.candidate.priority,
            max(0, int((now - ch.candidate.queued_at).total_seconds() // 60)),
            ch.reason,
        )
        for ch in rank(
            counter.profile,
            waiting,
            now,
            policy_config(hall),
            hall.tz,
            floor,
            counter.id,
            CLAIM_TRIES,  # the heads read rank exactly this many (repository.waiting_heads)
        )
    ]


async def waiting_total(uow: UnitOfWork, counter_id: int) -> int:
    """How many wait today for the counter's matters (its console lists the first few)."""
    counter, hall, _, day = await _counter_today(uow, counter_id)
    return await uow.repo.count_waiting(hall.id, day, counter.profile)
