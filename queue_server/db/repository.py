"""Queries and writes the service layer needs, translating rows to domain objects."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Protocol

import msgspec
from sqlalchemy import insert, inspect, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from queue_server.domain import events as ev
from queue_server.domain.floor import Candidate
from queue_server.domain.hours import OpeningHours
from queue_server.domain.model import (
    Counter,
    CounterState,
    Hall,
    Outcome,
    Service,
    ServiceLevel,
    Ticket,
    TicketKind,
    TicketState,
)
from queue_server.domain.policy import PolicyConfig

from . import statements as sql
from .tables import (
    BookingRow,
    CounterRow,
    CounterServiceRow,
    HallRow,
    NumberSequenceRow,
    ServiceRow,
    TicketRow,
    VisitRow,
)
from .types import json_text


@dataclass(frozen=True)
class Busy:
    """The ticket a counter is busy with (called or serving): what a clerk is told."""

    number: str
    state: str


@dataclass(frozen=True)
class ViewParts:
    """What a ticket's view shows besides its row and its counter, as read when a counter
    command locked it (``statements.VIEW_PARTS``)."""

    row: TicketRow
    """The locked row (as the command changes it)."""
    name_zh: str
    name_en: str
    desk: bool
    follow_token: str
    booking: BookingRow | None


WAITING_ON_THE_LOOP = 1000
"""Up to this many waiting tickets read are made into candidates on the event loop; more
(a long queue read whole: 30,000 take about 0.1 s of CPU) in a thread."""
_KINDS = {kind.value: kind for kind in TicketKind}
"""A ticket's kind by its stored value: a dict lookup, several times cheaper than
``TicketKind(value)`` for each of the thousands of rows a busy hall's floor reads."""


def candidates(rows: Iterable[Any]) -> list[Candidate]:
    return candidates_reusing(rows, ())


def candidates_reusing(rows: Iterable[Any], known: Iterable[Candidate]) -> list[Candidate]:
    """``candidates(rows)``, with each of ``known`` that a row reads exactly as it was
    (the same ticket, every field equal) kept instead of made again.

    A long queue's floor is read whole again every half minute, and nearly all of it is
    who waited at the last read. Each candidate made anew is an object the garbage
    collector walks, young and then middle-aged, while it holds the interpreter: 30,000
    of them every half minute were the event loop's longest pauses in a busy hall.
    Candidates are frozen, so sharing one between floors changes nothing they tell."""
    kinds, kept = _KINDS, {c.ticket_id: c for c in known}
    found: list[Candidate] = []
    for ticket_id, number, service_id, kind, priority, queued, due in rows:
        c = kept.get(ticket_id)
        if c is None or (
            c.queued_at != queued
            or c.number != number
            or c.service_id != service_id
            or c.kind is not kinds[kind]
            or c.priority != priority
            or c.due_at != due
        ):
            c = Candidate(ticket_id, number, service_id, kinds[kind], priority, queued, due)
        found.append(c)
    return found


_WAITING_JSON = msgspec.json.Decoder(list[Candidate])
WAITING_JSON_ON_THE_LOOP = 64 * 1024
"""A hall's waiting tickets as JSON (``statements.PG_WAITING_JSON``) up to this long (some
700 tickets) are made into candidates on the event loop; longer, in a thread. The decoding
holds the interpreter throughout either way (C code: 9–17 ms for 30,000); in a thread the
loop serves between it and the pass over ``known`` (Python, which hands the interpreter
back every switch interval)."""


def candidates_from_json(text: str | None, known: Iterable[Candidate]) -> list[Candidate]:
    """``statements.PG_WAITING_JSON``'s text read (None: nobody waiting): the candidates
    decoded by msgspec in C, and those of ``known`` read exactly as they were kept instead
    (``candidates_reusing``). A value no candidate can hold (a time without its zone, an
    unknown kind) raises ``msgspec.ValidationError`` naming where it is."""
    if text is None:
        return []
    found = _WAITING_JSON.decode(text)
    kept = {c.ticket_id: c for c in known}
    if kept:
        found = [k if (k := kept.get(c.ticket_id)) is not None and k == c else c for c in found]
    return found


def heads_or_busy(rows: Sequence[Any]) -> list[Candidate] | Busy:
    """``statements.PG_WAITING_HEADS_UNLESS_BUSY``'s rows read: the ticket the counter is
    busy with, if any, else the waiting heads."""
    busy = [Busy(row[1], row[-1]) for row in rows if row[-1] is not None]
    if busy:
        return busy[0]
    return candidates(row[:-1] for row in rows)


def counter_from_rows(found: Sequence[Any], first: int = 0) -> Counter:
    """A counter from its rows joined to its matters: its columns from ``first`` on (as
    ``statements.COUNTER_READ``'s), its profile in the last two."""
    counter_id, hall_id, number, name, state, clerk_id = found[0][first : first + 6]
    return Counter(
        id=counter_id,
        hall_id=hall_id,
        number=number,
        name=name,
        profile=_profile(found),
        state=CounterState(state),
        clerk_id=clerk_id,
    )


def _profile(found: Iterable[Any]) -> dict[int, ServiceLevel]:
    """A counter's profile from its rows joined to its matters (the last two columns)."""
    return {
        service_id: ServiceLevel(level) for *_, service_id, level in found if service_id is not None
    }


def new_follow_token() -> str:
    """A visit's unguessable follow link token (144 random bits)."""
    return secrets.token_urlsafe(18)


@dataclass(frozen=True)
class Enqueued:
    """What the database gave a new ticket."""

    ticket_id: int
    number: str
    visit_id: int
    job_id: int | None
    """The kiosk printer's job, when the kiosk has a printer."""
    event_seq: int = 0
    """The hall's event number after this ticket's events: a floor read at or after it
    holds the ticket."""
    printer: AgentSeen | None = None
    """How the job's printer's agent was last seen, when there is a job."""


@dataclass(frozen=True)
class AgentSeen:
    """What the hall knows of a print agent: whether its socket is connected, when it last
    reported, and the problem it reported (paper out…), if any."""

    connected: bool
    last_seen_at: datetime | None
    problem: str | None


class HallFields(Protocol):
    """A hall's row as ``hall_from_row`` and a ticket's print payload read it: the ORM's,
    or a driver's row read by attribute (``driven.RecordFields``)."""

    @property
    def id(self) -> int: ...
    @property
    def name_zh(self) -> str: ...
    @property
    def name_en(self) -> str: ...
    @property
    def timezone(self) -> str: ...
    @property
    def opening_hours(self) -> dict[str, Any]: ...
    @property
    def priority_boosts(self) -> dict[str, Any]: ...
    @property
    def secondary_after_minutes(self) -> int: ...
    @property
    def notice(self) -> str: ...


def hall_from_row(row: HallFields) -> Hall:
    return Hall(
        id=row.id,
        name_zh=row.name_zh,
        name_en=row.name_en,
        timezone=row.timezone,
        opening_hours=stored_hours(row.opening_hours),
        priority_boosts=dict(row.priority_boosts),
        secondary_after_minutes=row.secondary_after_minutes,
    )


def stored_hours(data: Mapping[str, Sequence[Sequence[str]]]) -> OpeningHours:
    """A hall row's opening hours, parsed once per distinct week: every issue, call and
    estimate reads its hall, and parsing the week (50 µs) was 9% of an issue's own time
    in the profile (py-spy); its key is 12 µs. A week not seen yet is parsed as it is
    stored (``OpeningHours.from_json`` says what is wrong with one that is)."""
    try:
        # A period that is not a list stays itself: only a week parsed whole is kept.
        key = tuple(
            (day, tuple(tuple(p) if isinstance(p, list | tuple) else p for p in periods))
            for day, periods in data.items()
        )
        found = _parsed_weeks.get(key)
    except (AttributeError, TypeError):
        return OpeningHours.from_json(data)
    if found is None:
        found = OpeningHours.from_json(data)
        if len(_parsed_weeks) >= 256:
            _parsed_weeks.clear()
        _parsed_weeks[key] = found
    return found


_parsed_weeks: dict[tuple[Any, ...], OpeningHours] = {}
"""Opening hours by the week they were parsed from (a hall row's, as its key)."""


def policy_config(hall: Hall) -> PolicyConfig:
    """The queue policy's tunables from the hall's settings (the simulator reads a
    scenario's the same way)."""
    return policy_of(hall.priority_boosts, hall.secondary_after_minutes)


def policy_of(priority_boosts: Mapping[str, float], secondary_after_minutes: float) -> PolicyConfig:
    """``policy_config`` from the hall's two policy columns."""
    return PolicyConfig(
        priority_boosts={k: timedelta(minutes=v) for k, v in priority_boosts.items()},
        secondary_handicap=timedelta(minutes=secondary_after_minutes),
    )


def service_from_row(row: ServiceRow) -> Service:
    return Service(
        id=row.id,
        hall_id=row.hall_id,
        name_zh=row.name_zh,
        name_en=row.name_en,
        prefix=row.prefix,
        typical_minutes=row.typical_minutes,
        documents=list(row.documents),
        active=row.active,
        desk=row.desk,
    )


def ticket_from_row(row: TicketRow) -> Ticket:
    return Ticket(
        id=row.id,
        hall_id=row.hall_id,
        visit_id=row.visit_id,
        service_id=row.service_id,
        number=row.number,
        business_day=row.business_day,
        kind=TicketKind(row.kind),
        priority=row.priority,
        issued_at=row.issued_at,
        queued_at=row.queued_at,
        state=TicketState(row.state),
        due_at=row.due_at,
        counter_id=row.counter_id,
        clerk_id=row.clerk_id,
        called_at=row.called_at,
        call_count=row.call_count,
        started_at=row.started_at,
        finished_at=row.finished_at,
        outcome=Outcome(row.outcome) if row.outcome else None,
        note=row.note,
        missing_documents=tuple(row.missing_documents or ()),
        origin_ticket_id=row.origin_ticket_id,
    )


_TICKET_STATE_FIELDS = (
    "state", "queued_at", "counter_id", "clerk_id", "called_at", "call_count",
    "started_at", "finished_at", "outcome", "note",
)  # fmt: skip
_TICKET_CHANGED_ORDER = (*_TICKET_STATE_FIELDS, "missing_documents", "origin_ticket_id")
TICKET_CHANGE_COLUMNS = frozenset(_TICKET_CHANGED_ORDER)
"""What ``apply_ticket`` writes: a change to these only may go with its events."""


def ticket_change(row: TicketRow, ticket: Ticket) -> dict[str, Any]:
    """``apply_ticket``, and the columns it changed with their new values."""
    before = [getattr(row, name) for name in _TICKET_CHANGED_ORDER]
    apply_ticket(row, ticket)
    return {
        name: getattr(row, name)
        for name, old in zip(_TICKET_CHANGED_ORDER, before, strict=True)
        if getattr(row, name) != old
    }


def apply_ticket(row: TicketRow, ticket: Ticket) -> None:
    """Copy what a transition may have changed back to the row."""
    for name in _TICKET_STATE_FIELDS:
        value = getattr(ticket, name)
        setattr(row, name, str(value) if name in ("state", "outcome") and value else value)
    missing = list(ticket.missing_documents) or None
    if row.missing_documents != missing:
        row.missing_documents = missing
    if ticket.origin_ticket_id is not None:
        row.origin_ticket_id = ticket.origin_ticket_id


def candidate(row: TicketRow) -> Candidate:
    return Candidate(
        ticket_id=row.id,
        number=row.number,
        service_id=row.service_id,
        kind=TicketKind(row.kind),
        priority=row.priority,
        queued_at=row.queued_at,
        due_at=row.due_at,
    )


def events_values(hall_id: int, events: Sequence[ev.Event], now: datetime) -> dict[str, Any]:
    """The values of ``statements._RECORD_EVENTS`` for a hall's events."""
    return {
        "hall": hall_id,
        "names": [e.name for e in events],
        "payloads": [json_text(e.payload()) for e in events],
        "now": now,
    }


def _ticket_values(row: TicketRow, changed: Mapping[str, Any]) -> dict[str, Any]:
    """The values of a ticket's change written with its events (``:t_<column>``, ``:t_id``)."""
    return {f"t_{k}": v for k, v in changed.items()} | {"t_id": row.id}


@dataclass(frozen=True)
class NewVisit:
    """A visit joining the queue in one statement on PostgreSQL (``statements.PG_ENQUEUE``:
    ``Repository.enqueue``, ``driven.enqueue``): its ticket's facts, the kiosk's print
    payload (the job is made if kiosk ``device_id`` has a printer) and the
    Idempotency-Key ``(scope, key, fingerprint)`` if one was sent."""

    hall_id: int
    day: date
    prefix: str
    service_id: int
    kind: TicketKind
    priority: str
    now: datetime
    follow_token: str
    device_id: int | None
    user_id: int | None
    job_payload: Mapping[str, Any]
    due_at: datetime | None = None
    idempotency: tuple[str, str, str] | None = None

    def values(self) -> dict[str, Any]:
        """The statement's values, with its events' payloads (their database-made fields
        filled in by the statement)."""
        scope, key, fingerprint = self.idempotency or (None, None, None)
        hall, now, service = self.hall_id, self.now, self.service_id
        event = ev.TicketIssued(hall, now, 0, "", service, self.kind, self.priority)
        return {
            "hall": hall, "day": self.day, "prefix": self.prefix, "service": service,
            "kind": str(self.kind), "priority": self.priority, "now": now, "due": self.due_at,
            "token": self.follow_token, "device": self.device_id, "user": self.user_id,
            "job_payload": json_text(self.job_payload),
            "event": json_text(event.payload()),
            "job_event": json_text(ev.PrintJobQueued(hall, now, 0, 0, 0).payload()),
            "scope": scope, "key": key, "fingerprint": fingerprint,
        }  # fmt: skip


def enqueued(found: tuple[Any, ...], visit: NewVisit) -> Enqueued:
    """What ``statements.PG_ENQUEUE``'s row ``found`` for ``visit`` says was made."""
    ticket_id, number, visit_id, job_id, keyed, logged, seq, connected, seen, problem = found
    if keyed != int(visit.idempotency is not None):
        raise AssertionError(f"the Idempotency-Key was stored {keyed} times, not once")
    if logged != 1 + (job_id is not None):
        raise LookupError(f"no hall {visit.hall_id} to record its events in")
    printer = AgentSeen(bool(connected), seen, problem) if job_id is not None else None
    return Enqueued(int(ticket_id), str(number), int(visit_id), job_id, int(seq), printer)


def _violated(exc: IntegrityError) -> str | None:
    """The name of the constraint a PostgreSQL statement violated (asyncpg's error)."""
    return getattr(exc.orig.__cause__, "constraint_name", None) if exc.orig else None


class Repository:
    """All SQL of the queue, over one session (one transaction)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.counter_numbers: dict[int, int] = {}
        """The numbers of the counters read in this transaction, by id (a ticket view
        names its counter by number)."""
        self.view_parts: dict[int, ViewParts] = {}
        """For the tickets locked by a counter command in this transaction, by id: what
        their view shows besides the row, read with the lock."""

    @property
    def dialect(self) -> str:
        return self.session.get_bind().dialect.name

    async def hall_row(self, hall_id: int) -> HallRow | None:
        return await self.session.get(HallRow, hall_id)

    async def service_row(self, service_id: int) -> ServiceRow | None:
        return await self.session.get(ServiceRow, service_id)

    async def counter(
        self, counter_id: int, *, lock: bool = False
    ) -> tuple[CounterRow, Counter] | None:
        # The counter and its profile in one statement (a row per matter it serves).
        stmt = sql.COUNTER_LOCKED if lock else sql.COUNTER
        found = (await self.session.execute(stmt, {"counter": counter_id})).all()
        if not found:
            return None
        row = found[0][0]
        counter = Counter(
            id=row.id,
            hall_id=row.hall_id,
            number=row.number,
            name=row.name,
            profile=_profile(found),
            state=CounterState(row.state),
            clerk_id=row.clerk_id,
        )
        return row, counter

    async def locked_counter(self, counter_id: int) -> Counter | None:
        """The counter and its profile, locked as ``counter(lock=True)`` locks it, for a
        caller that only reads it (no row to write back)."""
        found = (await self.session.execute(sql.COUNTER_READ_LOCKED, {"counter": counter_id})).all()
        return self._read_counter(found) if found else None

    async def counter_and_active_ticket(
        self, counter_id: int, *, lock: bool = True
    ) -> tuple[Counter | None, TicketRow | None]:
        """The counter, locked as ``locked_counter`` locks it, and the ticket called or
        served there, locked as ``active_ticket_at(lock=True)`` locks it (None for either
        that is not there). One statement on PostgreSQL when the counter has an active
        ticket; the two statements otherwise, and on SQLite (in-process, no round trip).
        PostgreSQL, ``lock=False``: the same statements without their locks, for a unit
        whose statements commit alone (its change is written only if the ticket is
        unchanged)."""
        if self.dialect == "postgresql":
            statement = sql.PG_COUNTER_AND_ACTIVE_LOCKED if lock else sql.PG_COUNTER_AND_ACTIVE
            found = (await self.session.execute(statement, {"counter": counter_id})).all()
            if found:
                first = found[0][0].id
                mine = [f for f in found if f[0].id == first]  # one ticket's rows
                parts = len(sql.VIEW_PARTS) + 1
                row = self._locked_with_view_parts(mine[0][:parts])
                return self._read_counter(mine, first=parts), row
        if lock:
            counter = await self.locked_counter(counter_id)
            if counter is None:
                return None, None
            return counter, await self.active_ticket_at(counter_id, lock=True)
        found = (await self.session.execute(sql.COUNTER_READ, {"counter": counter_id})).all()
        if not found:
            return None, None
        statement = sql.ACTIVE_AT_WITH_VIEW_PARTS
        active = (await self.session.execute(statement, {"counter": counter_id})).first()
        return self._read_counter(found), self._locked_with_view_parts(active)

    async def counter_to_call_at(self, counter_id: int) -> tuple[Counter, HallRow] | None:
        """``locked_counter`` and the counter's hall (only read), in one statement."""
        stmt = sql.COUNTER_AND_HALL_READ_LOCKED
        found = (await self.session.execute(stmt, {"counter": counter_id})).all()
        return (self._read_counter(found, first=1), found[0][0]) if found else None

    def _read_counter(self, found: Sequence[Any], first: int = 0) -> Counter:
        counter = counter_from_rows(found, first)
        self.counter_numbers[counter.id] = counter.number
        return counter

    async def profile(self, counter_id: int) -> dict[int, ServiceLevel]:
        rows = await self.session.execute(
            select(CounterServiceRow.service_id, CounterServiceRow.level).where(
                CounterServiceRow.counter_id == counter_id
            )
        )
        return {service_id: ServiceLevel(level) for service_id, level in rows}

    async def allocate_seq(self, hall_id: int, day: date, prefix: str) -> int:
        """Bump and return the day's last number for ``prefix``, in this transaction.

        One ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` statement: the row lock it takes
        orders concurrent issuers, and a rolled-back issue gives its number back.
        """
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        values = insert(NumberSequenceRow).values(
            hall_id=hall_id, business_day=day, prefix=prefix, last_seq=1
        )
        stmt = values.on_conflict_do_update(
            index_elements=["hall_id", "business_day", "prefix"],
            set_={"last_seq": NumberSequenceRow.last_seq + 1},
        ).returning(NumberSequenceRow.last_seq)
        return int((await self.session.execute(stmt)).scalar_one())

    async def enqueue(self, visit: NewVisit) -> Enqueued | None:
        """PostgreSQL: ``visit``'s numbered ticket, its print job, its Idempotency-Key and
        its events, all in one statement. None when the key was taken by a request that
        committed first: the statement then failed whole (in a transaction, which is
        then to be run again)."""
        try:
            found = (await self.session.execute(sql.PG_ENQUEUE, visit.values())).one()
        except IntegrityError as exc:
            if visit.idempotency is not None and _violated(exc) == "pk_idempotency_keys":
                return None
            raise
        return enqueued(tuple(found), visit)

    async def add_visit(self, hall_id: int, day: date, now: datetime) -> VisitRow:
        visit = VisitRow(
            hall_id=hall_id,
            business_day=day,
            follow_token=new_follow_token(),
            created_at=now,
        )
        self.session.add(visit)
        await self.session.flush()
        return visit

    async def add_ticket(
        self, ticket: Ticket, prefix: str, seq: int | None, **extra: int | None
    ) -> TicketRow:
        row = TicketRow(
            hall_id=ticket.hall_id,
            visit_id=ticket.visit_id,
            service_id=ticket.service_id,
            number=ticket.number,
            prefix=prefix,
            seq=seq,
            business_day=ticket.business_day,
            kind=str(ticket.kind),
            priority=ticket.priority,
            issued_at=ticket.issued_at,
            queued_at=ticket.queued_at,
            due_at=ticket.due_at,
            **extra,
        )
        apply_ticket(row, ticket)
        self.session.add(row)
        await self.session.flush()
        ticket.id = row.id
        return row

    async def ticket_row(
        self, ticket_id: int, *, lock: bool = False, skip_locked: bool = False
    ) -> TicketRow | None:
        locked = sql.TICKET_SKIP_LOCKED if skip_locked else sql.TICKET_LOCKED
        stmt = locked if lock else sql.TICKET
        return (await self.session.execute(stmt, {"ticket": ticket_id})).scalar_one_or_none()

    async def claim_waiting(self, ticket_id: int, *, skip_locked: bool = True) -> TicketRow | None:
        """Lock ``ticket_id`` if it is still waiting (and, with ``skip_locked``, if no other
        transaction holds it).

        On PostgreSQL this is ``FOR UPDATE SKIP LOCKED``: a counter racing another for the
        same ticket moves on to its next choice instead of waiting. SQLite transactions are
        already serial (BEGIN IMMEDIATE), so there the state check alone decides.
        """
        stmt = sql.CLAIM_SKIP_LOCKED if skip_locked else sql.CLAIM_LOCKED
        row = self._locked_with_view_parts(
            (await self.session.execute(stmt, {"ticket": ticket_id})).first()
        )
        if row is not None and row.state != TicketState.WAITING:
            return None
        return row

    async def active_ticket_at(self, counter_id: int, *, lock: bool = False) -> TicketRow | None:
        """The ticket called or served at the counter; ``lock`` locks it, and keeps what
        its view shows besides (``view_parts``)."""
        if not lock:
            return (await self.session.execute(sql.ACTIVE_AT, {"counter": counter_id})).scalar()
        found = (await self.session.execute(sql.ACTIVE_AT_LOCKED, {"counter": counter_id})).first()
        return self._locked_with_view_parts(found)

    def _locked_ticket_change(self) -> tuple[TicketRow, dict[str, Any]] | None:
        """The pending change when it is to one ticket row only, locked in this transaction
        by a counter command (``view_parts``), and to its state columns only: the row and
        the changed columns' new values. None otherwise (flush it as usual)."""
        session = self.session.sync_session
        if session.new or session.deleted:
            return None
        dirty = [obj for obj in session.dirty if session.is_modified(obj)]
        if len(dirty) != 1 or not isinstance(dirty[0], TicketRow):
            return None
        row = dirty[0]
        if row.id not in self.view_parts:
            return None
        state = inspect(row)
        changed = {}
        for attr in state.attrs:
            if attr.history.has_changes():
                if attr.key not in TICKET_CHANGE_COLUMNS:
                    return None
                changed[attr.key] = attr.value
        return (row, changed) if changed else None

    def _locked_with_view_parts(self, found: Any) -> TicketRow | None:
        if found is None:
            return None
        row: TicketRow = found[0]
        self.view_parts[row.id] = ViewParts(row, *found[1:])
        return row

    async def waiting(
        self,
        hall_id: int,
        day: date,
        service_ids: Iterable[int] | None = None,
        known: Sequence[Candidate] = (),
    ) -> list[Candidate]:
        """The day's waiting tickets of these matters (None: of every matter of the hall,
        as the estimate and the look-ahead see the floor): only the columns the policy
        reads (a busy hall has hundreds waiting, and whole ORM rows cost ten times as
        much). Those of ``known`` (an earlier read's) still as they were are kept, not
        made again (``candidates_reusing``)."""
        ids = None if service_ids is None else list(service_ids)
        if ids == []:
            return []
        connection = await self.session.connection()
        if ids is None and connection.dialect.name == "postgresql":
            # Every matter's, on PostgreSQL: one JSON text (``PG_WAITING_JSON``).
            found = await connection.execute(sql.PG_WAITING_JSON, {"hall": hall_id, "day": day})
            text = found.scalar_one()
            if text is None or len(text) < WAITING_JSON_ON_THE_LOOP:
                return candidates_from_json(text, known)
            return await asyncio.to_thread(candidates_from_json, text, known)
        stmt = select(*sql.CANDIDATE_COLUMNS).where(
            TicketRow.hall_id == hall_id,
            TicketRow.business_day == day,
            TicketRow.state == TicketState.WAITING,
        )
        if ids is not None:
            stmt = stmt.where(TicketRow.service_id.in_(ids))
        # On the session's connection: a Core result, without the ORM's loading of each
        # row (30,000 waiting: 110-117 ms of CPU, against 138-160 through the session).
        result = await connection.execute(stmt)
        first = result.fetchmany(WAITING_ON_THE_LOOP)
        if len(first) < WAITING_ON_THE_LOOP:
            return candidates_reusing(first, known)
        # A long queue's rows (already fetched: the result only makes them) are made in
        # a thread, so that the event loop goes on serving meanwhile.
        return await asyncio.to_thread(lambda: candidates_reusing([*first, *result], known))

    async def count_waiting(self, hall_id: int, day: date, service_ids: Iterable[int]) -> int:
        """How many of the day's tickets of these matters wait."""
        ids = list(service_ids)
        if not ids:
            return 0
        values = {"hall": hall_id, "day": day, "services": ids}
        return int(await self.session.scalar(sql.COUNT_WAITING, values) or 0)

    async def waiting_heads(
        self, hall_id: int, day: date, service_ids: Iterable[int], per_kind: int
    ) -> list[Candidate]:
        """The day's waiting tickets of these matters that a counter could call within its
        next ``per_kind`` calls: every appointment (whether one is urgent depends on the
        others of its matter), and of the rest the ``per_kind`` that joined first of each
        matter, kind and priority — within such a group the policy ranks by arrival, so
        the best ``per_kind`` of the whole queue are among these (policy._ranked). A hall
        with thousands waiting is ranked from a few dozen rows."""
        ids = list(service_ids)
        if not ids:
            return []
        values = {"hall": hall_id, "day": day, "services": ids, "per_kind": per_kind}
        postgres = self.session.get_bind().dialect.name == "postgresql"
        statement = sql.PG_WAITING_HEADS if postgres else sql.WAITING_HEADS
        return candidates(await self.session.execute(statement, values))

    async def waiting_heads_unless_busy(
        self, hall_id: int, day: date, service_ids: Iterable[int], per_kind: int, counter_id: int
    ) -> list[Candidate] | Busy:
        """``waiting_heads``, or the ticket called or served at the counter if it has one
        (``active_ticket_at``): what a call reads once it holds the counter's lock (on
        PostgreSQL one statement on the driver's connection,
        ``driven.waiting_heads_unless_busy``)."""
        active = await self.active_ticket_at(counter_id)
        if active is not None:
            return Busy(active.number, active.state)
        return await self.waiting_heads(hall_id, day, service_ids, per_kind)

    def _written_with_events(self, row: TicketRow, changed: Mapping[str, Any]) -> None:
        """``row``'s change was written by the events' statement: nothing is left for the
        session to flush (if the statement fails, the unit of work is rolled back). The row
        leaves the session too: still marked as changed, it cost that statement's autoflush
        and the commit's flush a pass each that wrote nothing (3% of a call's CPU). It
        keeps its values (the answer reads them in ``view_parts``)."""
        for key, value in changed.items():
            set_committed_value(row, key, value)
        self.session.expunge(row)

    async def record_events(self, events: Sequence[ev.Event], now: datetime) -> None:
        """Append ``events`` to their halls' logs with consecutive per-hall numbers.

        The hall row's ``event_seq`` is bumped under its row lock, so the numbers follow
        commit order within a hall: on PostgreSQL as the transaction commits (the trigger
        of migration 0016 numbers the events written here with placeholders), on SQLite
        with ``UPDATE … RETURNING`` in the transaction (one writer at a time). Runs last in
        a transaction (``UnitOfWork.commit``): the events that other statements number at
        once (``PG_ENQUEUE``, the bookings') come before these in the hall's order, as
        they were written.
        """
        by_hall: dict[int, list[ev.Event]] = {}
        for event in events:
            by_hall.setdefault(event.hall_id, []).append(event)
        postgres = self.session.get_bind().dialect.name == "postgresql"
        # The change itself first, then the events. A change to one ticket only, whose
        # row this transaction has locked, goes with the events in their statement: one
        # round trip less, and no new lock (on SQLite the hall row's lock then comes after
        # this change's own row locks).
        ticket = self._locked_ticket_change() if postgres and len(by_hall) == 1 else None
        if ticket is None:
            await self.session.flush()
        for hall_id, hall_events in sorted(by_hall.items()):
            if postgres:
                # One statement writes them; the commit numbers them. The hall row's lock,
                # which every change of the hall queues on, is then held for the commit
                # only, not from a statement across a round trip to this process and back.
                values = events_values(hall_id, hall_events, now)
                statement = sql.PG_RECORD_EVENTS
                if ticket is not None:
                    row, changed = ticket
                    statement = sql.pg_record_events_with_ticket(tuple(changed))
                    values |= _ticket_values(row, changed)
                    self._written_with_events(row, changed)
                # A hall that is not there fails the events' foreign key.
                await self.session.execute(statement, values)
                continue
            bumped = await self.session.execute(
                sql.BUMP_EVENT_SEQ, {"hall": hall_id, "count": len(hall_events)}
            )
            first = bumped.scalar_one() - len(hall_events) + 1
            await self.session.execute(
                insert(sql.HALL_EVENTS),
                [
                    {
                        "hall_id": hall_id,
                        "seq": first + offset,
                        "name": event.name,
                        "payload": event.payload(),
                        "created_at": now,
                    }
                    for offset, event in enumerate(hall_events)
                ],
            )
