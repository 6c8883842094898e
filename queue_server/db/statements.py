"""The statements of the hot paths, built once at import with their values bound at
execution: building one per request cost more CPU than running it (docs/performance.md).
``repository`` runs them."""

from __future__ import annotations

import functools
from typing import Any, cast

from sqlalchemy import (
    CompoundSelect,
    Integer,
    Select,
    Table,
    Text,
    TextClause,
    bindparam,
    func,
    literal_column,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.types import NullType

from queue_server.domain.model import ACTIVE_STATES, TicketKind, TicketState

from .tables import (
    BookingRow,
    CounterRow,
    CounterServiceRow,
    HallEventRow,
    HallRow,
    IdempotencyKeyRow,
    ServiceRow,
    TicketRow,
    VisitRow,
)

HALLS = cast(Table, HallRow.__table__)
HALL_EVENTS = cast(Table, HallEventRow.__table__)
TICKETS = cast(Table, TicketRow.__table__)
# Built once, and a plain table statement: no hall object of a writing session needs its
# counter kept in step (only the read-only snapshot views read it).
BUMP_EVENT_SEQ = (
    update(HALLS)
    .where(HALLS.c.id == bindparam("hall"))
    .values(event_seq=HALLS.c.event_seq + bindparam("count"))
    .returning(HALLS.c.event_seq)
)


_RECORD_EVENTS = """
    {changed}INSERT INTO hall_events (hall_id, seq, name, payload, created_at)
    SELECT CAST(:hall AS bigint), -nextval('hall_event_placeholders'),
           e.name, CAST(e.payload AS json), CAST(:now AS timestamptz)
    FROM unnest(CAST(:names AS text[]), CAST(:payloads AS text[]))
             WITH ORDINALITY AS e(name, payload, ord)
    {only}ORDER BY e.ord{returning}
    """
"""A transaction's events of one hall, in order, with placeholder numbers: the trigger of
migration 0016 numbers them from the hall row's ``event_seq`` as the transaction commits,
in the order they were written, so the hall row is locked for the commit only. The
statements that number in the statement itself (``PG_ENQUEUE``, the bookings') lock the
hall row until the commit and run before this one in any transaction (this one runs in
``UnitOfWork.commit``), so a transaction's events keep the order they were written in."""
PG_RECORD_EVENTS = text(_RECORD_EVENTS.format(changed="", only="", returning=""))


@functools.cache
def pg_record_events_with_ticket(columns: tuple[str, ...]) -> TextClause:
    """``PG_RECORD_EVENTS`` that also writes the change to ticket ``:t_id``'s ``columns``
    (values bound as ``:t_<column>``, through the columns' own types), for a ticket row the
    transaction has locked: the change and its events in one statement
    (``Repository.record_events``)."""
    types = {column: TICKETS.c[column].type for column in columns}
    # Column names of the tickets table only (KeyError above otherwise); values bound
    # through the columns' types (asyncpg: $n::TYPE without a length, so an over-long value
    # is refused as by a flush, not cut by a cast to VARCHAR(n)).
    sets = ", ".join(f"{column} = :t_{column}" for column in types)
    changed = f"WITH changed AS (UPDATE tickets SET {sets} WHERE id = CAST(:t_id AS bigint)) "  # noqa: S608
    return text(_RECORD_EVENTS.format(changed=changed, only="", returning="")).bindparams(
        *(bindparam(f"t_{column}", type_=type_) for column, type_ in types.items())
    )


TICKET_VERSION_COLUMNS = ("state", "counter_id", "call_count", "called_at")
"""What every transition of a called or served ticket changes (its state, or its call's
count and time): a ticket with these as they were read has not moved since."""


@functools.cache
def pg_record_events_with_ticket_if_unchanged(columns: tuple[str, ...]) -> TextClause:
    """``pg_record_events_with_ticket`` for a ticket row read without a lock: the change
    and its events are written only if the row's ``TICKET_VERSION_COLUMNS`` still hold
    the values it was read with (bound as ``:o_<column>``). Returns a row per event
    written: none when the ticket moved meanwhile (the command is then run again, on the
    row as it is now). One statement, committed alone: no lock is held across a round
    trip, and no BEGIN or COMMIT is sent (``driven.record_with_ticket_if_unchanged``)."""
    types = {column: TICKETS.c[column].type for column in (*columns, *TICKET_VERSION_COLUMNS)}
    sets = ", ".join(f"{column} = :t_{column}" for column in columns)
    unchanged = " AND ".join(
        f"{column} IS NOT DISTINCT FROM :o_{column}" for column in TICKET_VERSION_COLUMNS
    )
    # Column names of the tickets table only (KeyError above otherwise).
    changed = (
        f"WITH changed AS (UPDATE tickets SET {sets} "  # noqa: S608
        f"WHERE id = CAST(:t_id AS bigint) AND {unchanged} RETURNING id) "
    )
    statement = _RECORD_EVENTS.format(
        changed=changed, only="WHERE EXISTS (SELECT 1 FROM changed) ", returning=" RETURNING id"
    )
    return text(statement).bindparams(
        *(bindparam(f"t_{column}", type_=types[column]) for column in columns),
        *(bindparam(f"o_{column}", type_=types[column]) for column in TICKET_VERSION_COLUMNS),
    )


_ENQUEUE = """
    WITH {facts}numbered AS (
        INSERT INTO number_sequences AS ns (hall_id, business_day, prefix, last_seq)
        {new_sequence}
        ON CONFLICT (hall_id, business_day, prefix) DO UPDATE SET last_seq = ns.last_seq + 1
        RETURNING last_seq
    ), visit AS (
        INSERT INTO visits (hall_id, business_day, follow_token, created_at)
        {new_visit}
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
        -- No ON CONFLICT: a key another request holds fails the whole statement, which
        -- may be a transaction of its own (issuing, queue.issue_new), so no ticket is
        -- made without its key; the request runs again and returns the winner's ticket.
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
        -- The hall row last (the documented lock order): the count reads the rows above,
        -- and the key is written before it (a statement taking the hall row first and the
        -- key after could deadlock with one doing the opposite).
        UPDATE halls SET event_seq = event_seq + (SELECT count(*) FROM news)
        WHERE id = CAST(:hall AS bigint){only} AND (SELECT count(*) FROM keyed) >= 0
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
_NEW_SEQUENCE = "VALUES (CAST(:hall AS bigint), CAST(:day AS date), CAST(:prefix AS varchar), 1)"
_NEW_VISIT = """VALUES (CAST(:hall AS bigint), CAST(:day AS date), CAST(:token AS varchar),
                CAST(:now AS timestamptz))"""
PG_ENQUEUE = text(
    _ENQUEUE.format(facts="", new_sequence=_NEW_SEQUENCE, new_visit=_NEW_VISIT, only="")
)
"""A visit joins the queue in one statement on PostgreSQL: its day's next number, the visit,
the ticket, the kiosk printer's job, the Idempotency-Key and the events numbered in the
hall's log (``Repository.enqueue``)."""

ISSUE_HALL_COLUMNS = ("id", "name_zh", "name_en", "timezone", "opening_hours",
                      "priority_boosts", "secondary_after_minutes", "notice")  # fmt: skip
"""What issuing reads of its hall: ``repository.hall_from_row``'s columns and the print
payload's."""
ISSUE_MATTER_COLUMNS = ("id", "prefix", "name_zh", "name_en", "active")
"""What issuing reads of its matter."""
ISSUE_FACTS = "md5(CAST(ROW({}) AS text))".format(
    ", ".join(
        [f"halls.{column}" for column in ISSUE_HALL_COLUMNS]
        + [f"services.{column}" for column in ISSUE_MATTER_COLUMNS]
    )
)
"""A digest of everything issuing reads of its hall and matter (``ISSUE_*_COLUMNS``, in a
query that joins the tables under their own names): equal digests, the same facts."""
PG_ENQUEUE_IF_FACTS = text(
    _ENQUEUE.format(
        facts=f"""facts AS (
        SELECT 1 FROM halls JOIN services ON services.hall_id = halls.id
        WHERE halls.id = CAST(:hall AS bigint) AND services.id = CAST(:service AS bigint)
          AND {ISSUE_FACTS} = CAST(:facts AS text)
    ), """,  # noqa: S608 (column names of this module's own, no value)
        new_sequence=(
            "SELECT CAST(:hall AS bigint), CAST(:day AS date), CAST(:prefix AS varchar), 1 "
            "FROM facts"
        ),
        new_visit="""SELECT CAST(:hall AS bigint), CAST(:day AS date), CAST(:token AS varchar),
               CAST(:now AS timestamptz) FROM facts""",
        only=" AND EXISTS (SELECT 1 FROM facts)",
    )
)
"""``PG_ENQUEUE`` only if the hall and matter are still as issuing last read them: their
``ISSUE_FACTS`` digest equal to ``:facts``. Otherwise nothing is written, no row is
locked and no row is returned (the issue then reads them again: ``queue._issue_driven``).
The check and the change are one statement, so a ticket is never made on facts that had
changed before it began."""


_ENQUEUE_MANY = """
    WITH sent AS (
        SELECT * FROM unnest(
            CAST(:services AS bigint[]), CAST(:prefixes AS text[]), CAST(:facts AS text[]),
            CAST(:days AS date[]), CAST(:tokens AS text[]), CAST(:nows AS timestamptz[]),
            CAST(:kinds AS text[]), CAST(:priorities AS text[]), CAST(:dues AS timestamptz[]),
            CAST(:devices AS bigint[]), CAST(:users AS bigint[]), CAST(:job_payloads AS text[]),
            CAST(:scopes AS text[]), CAST(:keys AS text[]), CAST(:fingerprints AS text[]),
            CAST(:events AS text[]), CAST(:job_events AS text[])
        ) WITH ORDINALITY AS g(service, prefix, facts, day, token, now, kind, priority, due,
                               device, usr, job_payload, scope, key, fingerprint, event,
                               job_event, ord)
    ), given AS (
        -- An issue whose Idempotency-Key is stored already (a tap again) is left out: its
        -- request reads the ticket the key was stored with.
        SELECT * FROM sent
        WHERE sent.key IS NULL OR NOT EXISTS (
            SELECT 1 FROM idempotency_keys AS k WHERE k.scope = sent.scope AND k.key = sent.key)
    ), facts AS (
        -- Every (matter, digest) of the batch still as its issue read it, or nothing at all.
        SELECT 1 WHERE (SELECT count(*) FROM (SELECT DISTINCT service, facts FROM sent) AS p)
            = (SELECT count(*) FROM (SELECT DISTINCT service, facts FROM sent) AS p
               JOIN services ON services.id = p.service
               JOIN halls ON halls.id = services.hall_id
               WHERE halls.id = CAST(:hall AS bigint) AND {facts} = p.facts)
    ), counted AS (
        SELECT day, prefix, count(*) AS n FROM given GROUP BY day, prefix
    ), numbered AS (
        INSERT INTO number_sequences AS ns (hall_id, business_day, prefix, last_seq)
        SELECT CAST(:hall AS bigint), day, prefix, n FROM counted, facts
        ORDER BY day, prefix
        ON CONFLICT (hall_id, business_day, prefix)
            DO UPDATE SET last_seq = ns.last_seq + excluded.last_seq
        RETURNING business_day, prefix, last_seq
    ), seqd AS (
        SELECT g.*, numbered.last_seq - counted.n
                    + row_number() OVER (PARTITION BY g.day, g.prefix ORDER BY g.ord) AS seq
        FROM given AS g
        JOIN counted ON counted.day = g.day AND counted.prefix = g.prefix
        JOIN numbered ON numbered.business_day = g.day AND numbered.prefix = g.prefix
    ), visit AS (
        INSERT INTO visits (hall_id, business_day, follow_token, created_at)
        SELECT CAST(:hall AS bigint), day, token, now FROM seqd ORDER BY ord
        RETURNING id, follow_token
    ), ticket AS (
        INSERT INTO tickets (hall_id, visit_id, service_id, number, prefix, seq, business_day,
                             kind, priority, state, issued_at, queued_at, due_at, call_count,
                             issued_by_device_id, issued_by_user_id)
        SELECT CAST(:hall AS bigint), visit.id, s.service,
               -- format_number: the prefix, then at least three digits
               s.prefix || lpad(CAST(s.seq AS text), greatest(3, length(CAST(s.seq AS text))), '0'),
               s.prefix, s.seq, s.day, s.kind, s.priority, 'waiting', s.now, s.now, s.due, 0,
               s.device, s.usr
        FROM seqd AS s JOIN visit ON visit.follow_token = s.token
        ORDER BY s.ord
        RETURNING id, number, visit_id
    ), made AS (
        SELECT ticket.id, ticket.number, ticket.visit_id, s.ord, s.device, s.now, s.scope,
               s.key, s.fingerprint, s.event, s.job_payload, s.job_event
        FROM ticket JOIN visit ON visit.id = ticket.visit_id
        JOIN seqd AS s ON s.token = visit.follow_token
    ), printer AS (
        SELECT DISTINCT ON (kiosk_id) kiosk_id, id, connected, last_seen_at,
               status ->> 'problem' AS problem
        FROM devices
        WHERE kiosk_id IN (SELECT device FROM given) AND kind = 'printer' AND revoked_at IS NULL
        ORDER BY kiosk_id, id
    ), job AS (
        INSERT INTO print_jobs (hall_id, ticket_id, printer_id, payload, state, created_at)
        SELECT CAST(:hall AS bigint), made.id, printer.id,
               CAST(CAST(made.job_payload AS jsonb) || jsonb_build_object('number', made.number)
                    AS json),
               'pending', made.now
        FROM made JOIN printer ON printer.kiosk_id = made.device
        ORDER BY made.ord
        RETURNING id, printer_id, ticket_id
    ), keyed AS (
        INSERT INTO idempotency_keys (scope, key, ticket_id, created_at, fingerprint)
        SELECT made.scope, made.key, made.id, made.now, made.fingerprint
        FROM made WHERE made.key IS NOT NULL
        ORDER BY made.ord
        -- No ON CONFLICT: a key another request holds fails the whole statement (nothing
        -- of the batch is written) and each of its issues runs again on its own.
        RETURNING ticket_id
    ), news AS (
        SELECT made.ord, 1 AS sub, 'TicketIssued' AS name,
               CAST(made.event AS jsonb)
               || jsonb_build_object('ticket_id', made.id, 'number', made.number) AS payload
        FROM made
        UNION ALL
        SELECT made.ord, 2, 'PrintJobQueued',
               CAST(made.job_event AS jsonb)
               || jsonb_build_object('job_id', job.id, 'printer_id', job.printer_id,
                                     'ticket_id', job.ticket_id)
        FROM made JOIN job ON job.ticket_id = made.id
    ), ranked AS (
        SELECT news.*, row_number() OVER (ORDER BY news.ord, news.sub) AS rank,
               count(*) OVER () AS total
        FROM news
    ), bumped AS (
        -- The hall row last (the documented lock order): the count reads the rows above,
        -- and the keys are written before it, as in _ENQUEUE.
        UPDATE halls SET event_seq = event_seq + (SELECT count(*) FROM news)
        WHERE id = CAST(:hall AS bigint) AND EXISTS (SELECT 1 FROM facts)
          AND (SELECT count(*) FROM keyed) >= 0
        RETURNING event_seq
    ), logged AS (
        INSERT INTO hall_events (hall_id, seq, name, payload, created_at)
        SELECT CAST(:hall AS bigint), bumped.event_seq - ranked.total + ranked.rank,
               ranked.name, CAST(ranked.payload AS json), made.now
        FROM bumped, ranked JOIN made ON made.ord = ranked.ord
        ORDER BY ranked.rank
        RETURNING seq
    ), mine AS (
        SELECT ord, count(*) AS logged, max(rank - total) AS last FROM ranked GROUP BY ord
    )
    SELECT made.ord, made.id, made.number, made.visit_id, job.id, mine.logged,
           (SELECT event_seq FROM bumped) + mine.last,
           printer.connected, printer.last_seen_at, printer.problem,
           (SELECT count(*) FROM keyed), (SELECT count(*) FROM logged)
    FROM made JOIN mine ON mine.ord = made.ord
    LEFT JOIN job ON job.ticket_id = made.id
    LEFT JOIN printer ON printer.kiosk_id = made.device
    UNION ALL
    -- An issue left out for its key: a row with no ticket.
    SELECT sent.ord, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL,
           (SELECT count(*) FROM keyed), (SELECT count(*) FROM logged)
    FROM sent
    WHERE EXISTS (SELECT 1 FROM facts) AND sent.ord NOT IN (SELECT ord FROM given)
    ORDER BY 1
    """
PG_ENQUEUE_MANY = text(_ENQUEUE_MANY.format(facts=ISSUE_FACTS))
"""Several walk-ins of one hall join the queue in one statement, each as
``PG_ENQUEUE_IF_FACTS`` would have made it alone, in the order given: numbered in that
order within their matter's day (one update of each day counter), their visits, tickets,
print jobs, Idempotency-Keys, and their events numbered in the hall's log in that order
(one update of the hall row). Each issue's values are the arrays' element at its place
(``driven.enqueue_many``). Only if every matter of them is still as its issue read it
(each (matter, digest) pair checked, ``ISSUE_FACTS``); otherwise nothing is written and no
row is returned. One row per issue, in the order given: its ticket, or, for an issue whose
Idempotency-Key is stored already, no ticket (nothing made for it).

Sent when issues wait while the hall's statement of the process is out
(``service/issue_batches.py``): at 8 statements at once, each ticket alone cost the database
1.1 ms of CPU as the crowd passed the hall row along; four at a time in one statement,
0.33–0.45 ms (pgbench, docs/performance.md "2026-12-07, later")."""

CANDIDATE_COLUMNS = (
    TICKETS.c.id,
    TICKETS.c.number,
    TICKETS.c.service_id,
    TICKETS.c.kind,
    TICKETS.c.priority,
    TICKETS.c.queued_at,
    TICKETS.c.due_at,
)
"""What the policy reads of a waiting ticket (``Candidate``), in its field order."""

PG_WAITING_JSON = select(
    func.json_agg(
        # Times with their offset (the session's time zone): aware, whatever it is.
        func.json_build_array(*CANDIDATE_COLUMNS),
        type_=NullType(),
    ).cast(Text)
).where(
    TICKETS.c.hall_id == bindparam("hall"),
    TICKETS.c.business_day == bindparam("day"),
    # Written out, not bound: read from the partial index on waiting tickets
    # (ix_tickets_waiting_heads) under a generic plan too, as ``COUNT_WAITING``.
    TICKETS.c.state == literal_column("'waiting'"),
)
"""A hall's waiting tickets of a day as one JSON text: an array of arrays, each a ticket's
``CANDIDATE_COLUMNS`` (NULL with nobody waiting), which the driver hands over as one
string and msgspec decodes straight into candidates in C (``repository.candidates_from_json``;
30,000 waiting: 5–7 ms of the loop's CPU to receive, 9–17 ms to decode). A row per ticket
made a driver record per ticket on the event loop (thousands of objects the garbage
collector then walked); a row of arrays, which replaced it, had the driver decode every
value on the loop in C code with no Python frame: 28–53 ms of CPU for 30,000, up to 190 ms
of the loop on a busy core (docs/performance.md, "2026-12-07, night")."""

# The statements of a clerk's every action are built once, here, with their values bound at
# execution: building one per request cost more CPU than running it (issue 12's profile).

COUNTER = (
    select(CounterRow, CounterServiceRow.service_id, CounterServiceRow.level)
    .outerjoin(CounterServiceRow, CounterServiceRow.counter_id == CounterRow.id)
    .where(CounterRow.id == bindparam("counter"))
)
COUNTER_LOCKED = COUNTER.with_for_update(of=CounterRow)

COUNTERS = cast(Table, CounterRow.__table__)
COUNTER_SERVICES = cast(Table, CounterServiceRow.__table__)
# The same for a counter that is only read (a clerk acting at it): table columns, no ORM
# row to load and track.
COUNTER_READ = (
    select(
        COUNTERS.c.id,
        COUNTERS.c.hall_id,
        COUNTERS.c.number,
        COUNTERS.c.name,
        COUNTERS.c.state,
        COUNTERS.c.clerk_id,
        COUNTER_SERVICES.c.service_id,
        COUNTER_SERVICES.c.level,
    )
    .outerjoin(COUNTER_SERVICES, COUNTER_SERVICES.c.counter_id == COUNTERS.c.id)
    .where(COUNTERS.c.id == bindparam("counter"))
)
COUNTER_READ_LOCKED = COUNTER_READ.with_for_update(of=COUNTERS)
# The same with the counter's hall (its row only read, not locked), for a call: the
# policy reads the hall's settings, and this saves the call a round trip for them. The
# hall is as of the statement's start (a wait for the counter's lock re-reads only the
# counter): its settings are what the call uses; its event_seq is not to be relied on.
COUNTER_AND_HALL_READ_LOCKED = (
    select(HallRow, *COUNTER_READ_LOCKED.selected_columns)
    .select_from(
        COUNTERS.join(HallRow, HallRow.id == COUNTERS.c.hall_id).outerjoin(
            COUNTER_SERVICES, COUNTER_SERVICES.c.counter_id == COUNTERS.c.id
        )
    )
    .where(COUNTERS.c.id == bindparam("counter"))
    .with_for_update(of=COUNTERS)
)

TICKET = select(TicketRow).where(TicketRow.id == bindparam("ticket"))
TICKET_LOCKED = TICKET.with_for_update()
TICKET_SKIP_LOCKED = TICKET.with_for_update(skip_locked=True)

CLAIM = (
    select(TicketRow)
    .where(TicketRow.id == bindparam("ticket"), TicketRow.state == TicketState.WAITING)
    # The identity map may hold an older copy of the row (read earlier in this
    # transaction): the locked row's values replace it, in this one statement.
    .execution_options(populate_existing=True)
)

# What a clerk's answer shows beside the ticket row (``views.TicketView``), read with the
# lock a counter command takes on its ticket: the answer then needs no statement of its own
# (``Repository.view_parts``). Only the ticket row is locked.
VIEW_PARTS = (
    ServiceRow.name_zh,
    ServiceRow.name_en,
    ServiceRow.desk,
    VisitRow.follow_token,
    BookingRow,
)


def _with_view_parts(stmt: Select[Any]) -> Select[Any]:
    return (
        stmt.add_columns(*VIEW_PARTS)
        .join(ServiceRow, ServiceRow.id == TicketRow.service_id)
        .join(VisitRow, VisitRow.id == TicketRow.visit_id)
        .outerjoin(BookingRow, BookingRow.ticket_id == TicketRow.id)
        .limit(1)
    )


CLAIM_SKIP_LOCKED = _with_view_parts(CLAIM).with_for_update(of=TicketRow, skip_locked=True)
CLAIM_LOCKED = _with_view_parts(CLAIM).with_for_update(of=TicketRow)

IS_ACTIVE = TicketRow.state.in_([literal_column(f"'{state}'") for state in sorted(ACTIVE_STATES)])
"""A ticket called or being served. Written out, not bound: PostgreSQL then reads a
counter's active ticket from the partial index ix_tickets_active_at_counter under a
generic plan too (its predicate must follow from the statement's)."""

IS_DONE = TicketRow.state == literal_column(f"'{TicketState.DONE}'")
"""A ticket served to its end, written out for the partial index ix_tickets_done_by_matter
(as ``IS_ACTIVE``)."""


@functools.cache
def newest_services(matters: int, per_matter: int) -> CompoundSelect[Any]:
    """The latest ``per_matter`` services of each of ``matters`` matters (bound as
    ``matter_0`` …), that ended on a business day from ``:since``: (service_id, started_at,
    finished_at), by matter, newest first. Built once per number of matters.

    One statement; per matter a limited read of ix_tickets_done_by_matter, newest first,
    each a subquery of its own (SQLite wants a compound's limited parts so; it takes at
    most 500 of them). The index holds the end, not the business day: ``:ended_from``, a
    bound at or before the start of ``:since`` in any time zone, stops the read of a
    matter with fewer recent services at the window's edge instead of at its first
    ticket. So a matter served rarely, or not for years, reads as few entries as a busy
    one, in a hall's first week as in its third year."""
    return union_all(
        *(
            select(TicketRow.service_id, TicketRow.started_at, TicketRow.finished_at)
            .where(
                TicketRow.service_id == bindparam(f"matter_{n}"),
                IS_DONE,
                TicketRow.finished_at >= bindparam("ended_from"),
                TicketRow.started_at.is_not(None),
                TicketRow.business_day >= bindparam("since"),
            )
            .order_by(TicketRow.finished_at.desc())
            .limit(per_matter)
            .subquery()
            .select()
            for n in range(matters)
        )
    ).order_by(literal_column("service_id"), literal_column("finished_at").desc())


ACTIVE_AT = (
    select(TicketRow)
    .where(
        TicketRow.counter_id == bindparam("counter"),
        IS_ACTIVE,
    )
    .order_by(TicketRow.id)
)
ACTIVE_AT_WITH_VIEW_PARTS = _with_view_parts(ACTIVE_AT)
ACTIVE_AT_LOCKED = ACTIVE_AT_WITH_VIEW_PARTS.with_for_update(of=TicketRow)

PG_COUNTER_AND_ACTIVE = (
    select(TicketRow, *VIEW_PARTS, *COUNTER_READ_LOCKED.selected_columns)
    .select_from(COUNTERS)
    .join(
        TicketRow,
        (TicketRow.counter_id == COUNTERS.c.id) & IS_ACTIVE,
    )
    .join(ServiceRow, ServiceRow.id == TicketRow.service_id)
    .join(VisitRow, VisitRow.id == TicketRow.visit_id)
    .outerjoin(BookingRow, BookingRow.ticket_id == TicketRow.id)
    .outerjoin(COUNTER_SERVICES, COUNTER_SERVICES.c.counter_id == COUNTERS.c.id)
    .where(COUNTERS.c.id == bindparam("counter"))
    .order_by(TicketRow.id)
)
"""PostgreSQL: a counter with its profile and the ticket called or served there with its
view parts, in one statement (a row per matter the counter serves; none when the counter
has no such ticket), read without a lock: for a clerk's action written only if the ticket
has not moved since (``driven.counter_and_active``)."""
PG_COUNTER_AND_ACTIVE_LOCKED = PG_COUNTER_AND_ACTIVE.with_for_update(of=(COUNTERS, TicketRow))
"""PostgreSQL: ``COUNTER_READ_LOCKED`` and ``ACTIVE_AT_LOCKED`` in one statement (a row
per matter the counter serves), for a clerk acting on their current ticket: one round
trip, the counter locked before the ticket as the two statements lock them. No row when
the counter has no active ticket in the statement's snapshot, or when a wait for one of
the locks ended with the ticket no longer active (the locked row is read again after a
wait): then the two statements tell which (``Repository.counter_and_active_ticket``)."""


def _waiting_heads() -> Select[Any]:
    # Table columns, not ORM attributes: a plain Core statement skips the ORM's compile
    # and loading steps.
    tickets = TICKETS.c
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
        select(*CANDIDATE_COLUMNS, appointment.label("appointment"), place)
        .where(
            tickets.hall_id == bindparam("hall"),
            tickets.business_day == bindparam("day"),
            tickets.state == TicketState.WAITING,
            tickets.service_id.in_(bindparam("services", expanding=True)),
        )
        .subquery()
    )
    columns = [ranked.c[column.key] for column in CANDIDATE_COLUMNS]
    return select(*columns).where(
        ranked.c.appointment | (ranked.c.place <= bindparam("per_kind", type_=Integer))
    )


WAITING_HEADS = _waiting_heads()

COUNT_WAITING = select(func.count()).where(
    TICKETS.c.hall_id == bindparam("hall"),
    TICKETS.c.business_day == bindparam("day"),
    # Written out, not bound: PostgreSQL then counts from the partial index on waiting
    # tickets (ix_tickets_waiting_heads) under a generic plan too.
    TICKETS.c.state == literal_column("'waiting'"),
    TICKETS.c.service_id.in_(bindparam("services", expanding=True)),
)
"""How many of a hall's tickets of some matters wait on a business day."""

_PG_WAITING_HEADS = """
    WITH RECURSIVE grp AS (
        -- The matter, kind and priority groups that have someone waiting, found by
        -- skipping through ix_tickets_waiting_heads (one probe per group) instead of
        -- reading every waiting ticket.
        SELECT f.service_id, f.kind, f.priority
        FROM unnest(CAST(:services AS bigint[])) AS s(id) CROSS JOIN LATERAL (
            SELECT t.service_id, t.kind, t.priority FROM tickets t
            WHERE t.hall_id = CAST(:hall AS bigint) AND t.business_day = CAST(:day AS date)
              AND t.state = 'waiting'
              AND t.service_id = s.id
            ORDER BY t.kind, t.priority LIMIT 1
        ) AS f
        UNION ALL
        SELECT n.service_id, n.kind, n.priority
        FROM grp CROSS JOIN LATERAL (
            SELECT t.service_id, t.kind, t.priority FROM tickets t
            WHERE t.hall_id = CAST(:hall AS bigint) AND t.business_day = CAST(:day AS date)
              AND t.state = 'waiting'
              AND t.service_id = grp.service_id
              AND (t.kind, t.priority) > (grp.kind, grp.priority)
            ORDER BY t.kind, t.priority LIMIT 1
        ) AS n
    )
    SELECT h.id, h.number, h.service_id, h.kind, h.priority, h.queued_at, h.due_at /* active */
    FROM grp CROSS JOIN LATERAL (
        SELECT t.id, t.number, t.service_id, t.kind, t.priority, t.queued_at, t.due_at
        FROM tickets t
        WHERE t.hall_id = CAST(:hall AS bigint) AND t.business_day = CAST(:day AS date)
          AND t.state = 'waiting'
          AND t.service_id = grp.service_id AND t.kind = grp.kind
          AND t.priority = grp.priority
        ORDER BY t.queued_at, t.id LIMIT CAST(:per_kind AS integer)
    ) AS h
    UNION
    SELECT t.id, t.number, t.service_id, t.kind, t.priority, t.queued_at, t.due_at /* active */
    FROM tickets t
    WHERE t.hall_id = CAST(:hall AS bigint) AND t.business_day = CAST(:day AS date)
      AND t.state = 'waiting'
      AND t.service_id = ANY(CAST(:services AS bigint[]))
      AND t.kind = 'appointment' AND t.due_at IS NOT NULL
    /* busy */
"""

PG_WAITING_HEADS = text(_PG_WAITING_HEADS)
"""``WAITING_HEADS`` on PostgreSQL, the same rows: a few index probes per group, where the
window read every waiting ticket of the matters (22 ms of the database's CPU per call-next
with 8,300 waiting, 0.4 ms this way)."""

PG_WAITING_HEADS_UNLESS_BUSY = text(
    _PG_WAITING_HEADS.replace("/* active */", ", NULL AS active").replace(
        "/* busy */",
        """UNION ALL
    SELECT t.id, t.number, t.service_id, t.kind, t.priority, t.queued_at, t.due_at,
           t.state AS active
    FROM tickets t
    WHERE t.counter_id = CAST(:counter AS bigint) AND t.state IN ('called', 'serving')""",
    )
)
"""``PG_WAITING_HEADS`` with, in a last column, the state of any ticket called or served
at the counter ``:counter`` (a row of its own; NULL on the heads' rows): a call-next's one
read once it holds the counter's lock (a statement begun after the lock was granted sees
every ticket the counter's last command committed)."""

HALL_AND_MATTER = (
    select(HallRow, ServiceRow, IdempotencyKeyRow.ticket_id, IdempotencyKeyRow.fingerprint)
    .outerjoin(
        ServiceRow,
        (ServiceRow.id == bindparam("service")) & (ServiceRow.hall_id == HallRow.id),
    )
    .outerjoin(
        IdempotencyKeyRow,
        (IdempotencyKeyRow.scope == bindparam("scope"))
        & (IdempotencyKeyRow.key == bindparam("key")),
    )
    .where(HallRow.id == bindparam("hall"))
)
"""A hall and one of its matters (None if it has no such matter), for issuing a ticket, and
the ticket and request fingerprint an Idempotency-Key ``(:scope, :key)`` was stored with
(None if it was not, or ``:key`` is None): an issue's one read."""

EVENTS_SINCE = (
    select(HallEventRow.seq, HallEventRow.name, HallEventRow.payload)
    .where(HallEventRow.hall_id == bindparam("hall"), HallEventRow.seq > bindparam("seq"))
    .order_by(HallEventRow.seq)
    .limit(bindparam("limit", type_=Integer))
)
"""A hall's events after ``seq``, at most ``limit`` of them, in order."""
