"""Queries and writes the service layer needs, translating rows to domain objects."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Integer, Select, Table, bindparam, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from queue_server.domain import events as ev
from queue_server.domain.floor import Candidate
from queue_server.domain.hours import OpeningHours
from queue_server.domain.model import (
    ACTIVE_STATES,
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

from .tables import (
    CounterRow,
    CounterServiceRow,
    HallEventRow,
    HallRow,
    NumberSequenceRow,
    ServiceRow,
    TicketRow,
    VisitRow,
)

_HALLS = cast(Table, HallRow.__table__)
_HALL_EVENTS = cast(Table, HallEventRow.__table__)
# Built once, and a plain table statement: no hall object of a writing session needs its
# counter kept in step (only the read-only snapshot views read it).
_BUMP_EVENT_SEQ = (
    update(_HALLS)
    .where(_HALLS.c.id == bindparam("hall"))
    .values(event_seq=_HALLS.c.event_seq + bindparam("count"))
    .returning(_HALLS.c.event_seq)
)


_PG_RECORD_EVENTS = text(
    """
    WITH bumped AS (
        UPDATE halls SET event_seq = event_seq + CAST(:count AS bigint)
        WHERE id = CAST(:hall AS bigint)
        RETURNING event_seq
    )
    INSERT INTO hall_events (hall_id, seq, name, payload, created_at)
    SELECT CAST(:hall AS bigint), bumped.event_seq - CAST(:count AS bigint) + e.ord,
           e.name, CAST(e.payload AS json), CAST(:now AS timestamptz)
    FROM bumped,
         unnest(CAST(:names AS text[]), CAST(:payloads AS text[]))
             WITH ORDINALITY AS e(name, payload, ord)
    ORDER BY e.ord
    RETURNING seq
    """
)


_PG_ENQUEUE = text(
    """
    WITH numbered AS (
        INSERT INTO number_sequences AS ns (hall_id, business_day, prefix, last_seq)
        VALUES (CAST(:hall AS bigint), CAST(:day AS date), CAST(:prefix AS varchar), 1)
        ON CONFLICT (hall_id, business_day, prefix) DO UPDATE SET last_seq = ns.last_seq + 1
        RETURNING last_seq
    ), visit AS (
        INSERT INTO visits (hall_id, business_day, follow_token, created_at)
        VALUES (CAST(:hall AS bigint), CAST(:day AS date), CAST(:token AS varchar),
                CAST(:now AS timestamptz))
        RETURNING id
    ), ticket AS (
        INSERT INTO tickets (hall_id, visit_id, service_id, number, prefix, seq, business_day,
                             kind, priority, state, issued_at, queued_at, due_at, call_count,
                             issued_by_device_id, issued_by_user_id)
        SELECT CAST(:hall AS bigint), visit.id, CAST(:service AS bigint),
               -- format_number: the prefix, then at least three digits
               CAST(:prefix AS varchar)
               || lpad(CAST(numbered.last_seq AS text),
                       greatest(3, length(CAST(numbered.last_seq AS text))), '0'),
               CAST(:prefix AS varchar), numbered.last_seq, CAST(:day AS date),
               CAST(:kind AS varchar), CAST(:priority AS varchar), 'waiting',
               CAST(:now AS timestamptz), CAST(:now AS timestamptz), CAST(:due AS timestamptz), 0,
               CAST(:device AS bigint), CAST(:user AS bigint)
        FROM numbered, visit
        RETURNING id, number, visit_id
    ), printer AS (
        SELECT id, connected, last_seen_at, status ->> 'problem' AS problem FROM devices
        WHERE kiosk_id = CAST(:device AS bigint) AND kind = 'printer' AND revoked_at IS NULL
        ORDER BY id LIMIT 1
    ), job AS (
        INSERT INTO print_jobs (hall_id, ticket_id, printer_id, payload, state, created_at)
        SELECT CAST(:hall AS bigint), ticket.id, printer.id,
               CAST(CAST(:job_payload AS jsonb) || jsonb_build_object('number', ticket.number)
                    AS json),
               'pending', CAST(:now AS timestamptz)
        FROM ticket, printer
        RETURNING id, printer_id, ticket_id
    ), keyed AS (
        INSERT INTO idempotency_keys (scope, key, ticket_id, created_at, fingerprint)
        SELECT CAST(:scope AS varchar), CAST(:key AS varchar), ticket.id,
               CAST(:now AS timestamptz), CAST(:fingerprint AS varchar)
        FROM ticket WHERE CAST(:key AS varchar) IS NOT NULL
        ON CONFLICT DO NOTHING
        RETURNING ticket_id
    ), news AS (
        SELECT 1 AS ord, 'TicketIssued' AS name,
               CAST(:event AS jsonb)
               || jsonb_build_object('ticket_id', ticket.id, 'number', ticket.number) AS payload
        FROM ticket
        UNION ALL
        SELECT 2, 'PrintJobQueued',
               CAST(:job_event AS jsonb)
               || jsonb_build_object('job_id', job.id, 'printer_id', job.printer_id,
                                     'ticket_id', job.ticket_id)
        FROM job
    ), bumped AS (
        -- The hall row last (the documented lock order): the count reads the rows above.
        UPDATE halls SET event_seq = event_seq + (SELECT count(*) FROM news)
        WHERE id = CAST(:hall AS bigint)
        RETURNING event_seq
    ), logged AS (
        INSERT INTO hall_events (hall_id, seq, name, payload, created_at)
        SELECT CAST(:hall AS bigint), bumped.event_seq - (SELECT count(*) FROM news) + news.ord,
               news.name, CAST(news.payload AS json), CAST(:now AS timestamptz)
        FROM bumped, news
        RETURNING seq
    )
    SELECT ticket.id, ticket.number, ticket.visit_id, (SELECT id FROM job),
           (SELECT count(*) FROM keyed),
           (SELECT count(*) FROM logged),
           (SELECT event_seq FROM bumped),
           (SELECT connected FROM printer), (SELECT last_seen_at FROM printer),
           (SELECT problem FROM printer)
    FROM ticket
    """
)
"""A visit joins the queue in one statement on PostgreSQL: its day's next number, the visit,
the ticket, the kiosk printer's job, the Idempotency-Key and the events numbered in the
hall's log (``Repository.enqueue``)."""


_TICKETS = cast(Table, TicketRow.__table__)
_CANDIDATE_COLUMNS = (
    _TICKETS.c.id,
    _TICKETS.c.number,
    _TICKETS.c.service_id,
    _TICKETS.c.kind,
    _TICKETS.c.priority,
    _TICKETS.c.queued_at,
    _TICKETS.c.due_at,
)
"""What the policy reads of a waiting ticket (``Candidate``), in its field order."""

# The statements of a clerk's every action are built once, here, with their values bound at
# execution: building one per request cost more CPU than running it (issue 12's profile).

_COUNTER = (
    select(CounterRow, CounterServiceRow.service_id, CounterServiceRow.level)
    .outerjoin(CounterServiceRow, CounterServiceRow.counter_id == CounterRow.id)
    .where(CounterRow.id == bindparam("counter"))
)
_COUNTER_LOCKED = _COUNTER.with_for_update(of=CounterRow)

_COUNTERS = cast(Table, CounterRow.__table__)
_COUNTER_SERVICES = cast(Table, CounterServiceRow.__table__)
# The same for a counter that is only read (a clerk acting at it): table columns, no ORM
# row to load and track.
_COUNTER_READ_LOCKED = (
    select(
        _COUNTERS.c.id,
        _COUNTERS.c.hall_id,
        _COUNTERS.c.number,
        _COUNTERS.c.name,
        _COUNTERS.c.state,
        _COUNTERS.c.clerk_id,
        _COUNTER_SERVICES.c.service_id,
        _COUNTER_SERVICES.c.level,
    )
    .outerjoin(_COUNTER_SERVICES, _COUNTER_SERVICES.c.counter_id == _COUNTERS.c.id)
    .where(_COUNTERS.c.id == bindparam("counter"))
    .with_for_update(of=_COUNTERS)
)

_TICKET = select(TicketRow).where(TicketRow.id == bindparam("ticket"))
_TICKET_LOCKED = _TICKET.with_for_update()
_TICKET_SKIP_LOCKED = _TICKET.with_for_update(skip_locked=True)

_CLAIM = (
    select(TicketRow)
    .where(TicketRow.id == bindparam("ticket"), TicketRow.state == TicketState.WAITING)
    # The identity map may hold an older copy of the row (read earlier in this
    # transaction): the locked row's values replace it, in this one statement.
    .execution_options(populate_existing=True)
)
_CLAIM_SKIP_LOCKED = _CLAIM.with_for_update(skip_locked=True)
_CLAIM_LOCKED = _CLAIM.with_for_update()

_ACTIVE_AT = (
    select(TicketRow)
    .where(
        TicketRow.counter_id == bindparam("counter"),
        TicketRow.state.in_([str(s) for s in ACTIVE_STATES]),
    )
    .order_by(TicketRow.id)
)
_ACTIVE_AT_LOCKED = _ACTIVE_AT.with_for_update()


def _waiting_heads() -> Select[Any]:
    # Table columns, not ORM attributes: a plain Core statement skips the ORM's compile
    # and loading steps.
    tickets = _TICKETS.c
    appointment = (tickets.kind == TicketKind.APPOINTMENT) & tickets.due_at.is_not(None)
    place = (
        func.row_number()
        .over(
            partition_by=(tickets.service_id, tickets.kind, tickets.priority),
            order_by=(tickets.queued_at, tickets.id),
        )
        .label("place")
    )
    ranked = (
        select(*_CANDIDATE_COLUMNS, appointment.label("appointment"), place)
        .where(
            tickets.hall_id == bindparam("hall"),
            tickets.business_day == bindparam("day"),
            tickets.state == TicketState.WAITING,
            tickets.service_id.in_(bindparam("services", expanding=True)),
        )
        .subquery()
    )
    columns = [ranked.c[column.key] for column in _CANDIDATE_COLUMNS]
    return select(*columns).where(
        ranked.c.appointment | (ranked.c.place <= bindparam("per_kind", type_=Integer))
    )


_WAITING_HEADS = _waiting_heads()


def _candidates(rows: Iterable[Any]) -> list[Candidate]:
    return [
        Candidate(ticket_id, number, service_id, TicketKind(kind), priority, queued, due)
        for ticket_id, number, service_id, kind, priority, queued, due in rows
    ]


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


def hall_from_row(row: HallRow) -> Hall:
    return Hall(
        id=row.id,
        name_zh=row.name_zh,
        name_en=row.name_en,
        timezone=row.timezone,
        opening_hours=OpeningHours.from_json(row.opening_hours),
        priority_boosts=dict(row.priority_boosts),
        secondary_after_minutes=row.secondary_after_minutes,
    )


def policy_config(hall: Hall) -> PolicyConfig:
    """The queue policy's tunables from the hall's settings (the simulator reads a
    scenario's the same way)."""
    return PolicyConfig(
        priority_boosts={k: timedelta(minutes=v) for k, v in hall.priority_boosts.items()},
        secondary_handicap=timedelta(minutes=hall.secondary_after_minutes),
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
    )


_TICKET_STATE_FIELDS = (
    "state", "queued_at", "counter_id", "clerk_id", "called_at", "call_count",
    "started_at", "finished_at", "outcome", "note",
)  # fmt: skip


def apply_ticket(row: TicketRow, ticket: Ticket) -> None:
    """Copy what a transition may have changed back to the row."""
    for name in _TICKET_STATE_FIELDS:
        value = getattr(ticket, name)
        setattr(row, name, str(value) if name in ("state", "outcome") and value else value)


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


class Repository:
    """All SQL of the queue, over one session (one transaction)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

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
        stmt = _COUNTER_LOCKED if lock else _COUNTER
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
        found = (await self.session.execute(_COUNTER_READ_LOCKED, {"counter": counter_id})).all()
        if not found:
            return None
        counter_id, hall_id, number, name, state, clerk_id, _, _ = found[0]
        return Counter(
            id=counter_id,
            hall_id=hall_id,
            number=number,
            name=name,
            profile=_profile(found),
            state=CounterState(state),
            clerk_id=clerk_id,
        )

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

    async def enqueue(
        self,
        *,
        hall_id: int,
        day: date,
        prefix: str,
        service_id: int,
        kind: str,
        priority: str,
        now: datetime,
        due_at: datetime | None,
        follow_token: str,
        device_id: int | None,
        user_id: int | None,
        event: ev.Event,
        job_payload: Mapping[str, Any],
        job_event: ev.Event,
        idempotency: tuple[str, str, str] | None,
    ) -> Enqueued | None:
        """PostgreSQL: a new visit's numbered ticket, its print job if the kiosk
        ``device_id`` has a printer, the Idempotency-Key (``(scope, key, fingerprint)``) and
        the events (``event`` and ``job_event``, their database-made fields filled in), all
        in one statement. None when the key was taken by a request that committed first."""
        scope, key, fingerprint = idempotency or (None, None, None)
        values = {
            "hall": hall_id, "day": day, "prefix": prefix, "service": service_id,
            "kind": kind, "priority": priority, "now": now, "due": due_at,
            "token": follow_token, "device": device_id, "user": user_id,
            "job_payload": json.dumps(job_payload, ensure_ascii=False),
            "event": json.dumps(event.payload()),
            "job_event": json.dumps(job_event.payload()),
            "scope": scope, "key": key, "fingerprint": fingerprint,
        }  # fmt: skip
        found = (await self.session.execute(_PG_ENQUEUE, values)).one()
        ticket_id, number, visit_id, job_id, keyed, logged, seq, connected, seen, problem = found
        if key is not None and not keyed:
            return None
        if logged != 1 + (job_id is not None):
            raise LookupError(f"no hall {hall_id} to record its events in")
        printer = AgentSeen(bool(connected), seen, problem) if job_id is not None else None
        return Enqueued(int(ticket_id), str(number), int(visit_id), job_id, int(seq), printer)

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
        locked = _TICKET_SKIP_LOCKED if skip_locked else _TICKET_LOCKED
        stmt = locked if lock else _TICKET
        return (await self.session.execute(stmt, {"ticket": ticket_id})).scalar_one_or_none()

    async def claim_waiting(self, ticket_id: int, *, skip_locked: bool = True) -> TicketRow | None:
        """Lock ``ticket_id`` if it is still waiting (and, with ``skip_locked``, if no other
        transaction holds it).

        On PostgreSQL this is ``FOR UPDATE SKIP LOCKED``: a counter racing another for the
        same ticket moves on to its next choice instead of waiting. SQLite transactions are
        already serial (BEGIN IMMEDIATE), so there the state check alone decides.
        """
        stmt = _CLAIM_SKIP_LOCKED if skip_locked else _CLAIM_LOCKED
        row = (await self.session.execute(stmt, {"ticket": ticket_id})).scalar_one_or_none()
        if row is not None and row.state != TicketState.WAITING:
            return None
        return row

    async def active_ticket_at(self, counter_id: int, *, lock: bool = False) -> TicketRow | None:
        stmt = _ACTIVE_AT_LOCKED if lock else _ACTIVE_AT
        return (await self.session.execute(stmt, {"counter": counter_id})).scalars().first()

    async def waiting(
        self, hall_id: int, day: date, service_ids: Iterable[int] | None = None
    ) -> list[Candidate]:
        """The day's waiting tickets of these matters (None: of every matter of the hall,
        as the estimate and the look-ahead see the floor): only the columns the policy
        reads (a busy hall has hundreds waiting, and whole ORM rows cost ten times as
        much)."""
        stmt = select(*_CANDIDATE_COLUMNS).where(
            TicketRow.hall_id == hall_id,
            TicketRow.business_day == day,
            TicketRow.state == TicketState.WAITING,
        )
        if service_ids is not None:
            ids = list(service_ids)
            if not ids:
                return []
            stmt = stmt.where(TicketRow.service_id.in_(ids))
        return _candidates(await self.session.execute(stmt))

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
        return _candidates(await self.session.execute(_WAITING_HEADS, values))

    async def record_events(self, events: Sequence[ev.Event], now: datetime) -> None:
        """Append ``events`` to their halls' logs with consecutive per-hall numbers.

        The hall row's ``event_seq`` is bumped with ``UPDATE … RETURNING``; its row lock
        makes the numbers follow commit order within a hall.
        """
        # The change itself first: the hall row's lock, taken next, is then held for the
        # events and the commit only (and always after this change's own row locks).
        await self.session.flush()
        by_hall: dict[int, list[ev.Event]] = {}
        for event in events:
            by_hall.setdefault(event.hall_id, []).append(event)
        postgres = self.session.get_bind().dialect.name == "postgresql"
        for hall_id, hall_events in sorted(by_hall.items()):
            if postgres:
                # One statement numbers and writes them: the hall row's lock, which every
                # change of the hall queues on, is then held for that statement and the
                # commit only, not for one more round trip to this process and back.
                written = await self.session.execute(
                    _PG_RECORD_EVENTS,
                    {
                        "hall": hall_id,
                        "count": len(hall_events),
                        "names": [e.name for e in hall_events],
                        "payloads": [json.dumps(e.payload()) for e in hall_events],
                        "now": now,
                    },
                )
                if len(written.all()) != len(hall_events):
                    raise LookupError(f"no hall {hall_id} to record its events in")
                continue
            bumped = await self.session.execute(
                _BUMP_EVENT_SEQ, {"hall": hall_id, "count": len(hall_events)}
            )
            first = bumped.scalar_one() - len(hall_events) + 1
            await self.session.execute(
                insert(_HALL_EVENTS),
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
