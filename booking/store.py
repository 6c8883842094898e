"""The SQL of online booking: slots and their capacity counters, bookings, holder locks.

Capacity is never read-then-written: a place is taken by one conditional
``UPDATE slots SET booked = booked + 1 WHERE id = ? AND booked < bookable`` and given back
by the opposite, so any number of racing bookers get at most ``bookable`` places.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, and_, bindparam, event, insert, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from booking.domain.booking import Booking, BookingState
from booking.domain.calendar import Slot
from booking.slot_news import Changed, Freed, forget_after_commit
from queue_server.db.tables import (
    BookingHolderRow,
    BookingRow,
    HallRow,
    ServiceRow,
    SlotRow,
)
from queue_server.db.types import json_text
from queue_server.domain.events import Event


@dataclass(frozen=True)
class SlotCount:
    """What the store knows of a slot: its row id and how many places are booked."""

    slot_id: int
    starts_at: datetime
    bookable: int
    booked: int


def booking_from_row(row: BookingRow | Row[Any], timezone: str) -> Booking:
    """The domain booking of a stored row (an ORM row, or a plain row of the table)."""
    return Booking(
        hall_id=row.hall_id,
        service_id=row.service_id,
        slot_start=row.slot_start,
        name=row.name,
        phone=row.phone,
        code=row.code,
        timezone=timezone,
        made_at=row.made_at,
        id_tail=row.id_tail,
        id=row.id,
        state=BookingState(row.state),
        checked_in_at=row.checked_in_at,
        due_at=row.due_at,
    )


def apply_booking(row: BookingRow, booking: Booking) -> None:
    """Copy what a transition may have changed back to the row."""
    row.state = str(booking.state)
    row.slot_start = booking.slot_start
    row.checked_in_at = booking.checked_in_at
    row.due_at = booking.due_at


def holder_keys(phone: str | None, id_tail: str | None, name: str) -> list[str]:
    """The lock keys of a visitor: their phone, and their ID tail with their name."""
    keys = []
    if phone:
        keys.append(f"phone:{phone}")
    if id_tail:
        keys.append(f"id:{id_tail}:{name}"[:96])
    return sorted(keys)


_SLOTS = cast(Table, SlotRow.__table__)
_BOOKINGS = cast(Table, BookingRow.__table__)
# The hot statements are built once: plain table statements (no ORM bookkeeping), bound
# per call.
_TAKE_PLACE = (
    update(_SLOTS)
    .where(_SLOTS.c.id == bindparam("slot"), _SLOTS.c.booked < _SLOTS.c.bookable)
    .values(booked=_SLOTS.c.booked + 1)
    .returning(_SLOTS.c.booked, _SLOTS.c.bookable)
)
_GIVE_BACK_PLACE = (
    update(_SLOTS)
    .where(_SLOTS.c.id == bindparam("slot"), _SLOTS.c.booked > 0)
    .values(booked=_SLOTS.c.booked - 1)
    .returning(_SLOTS.c.hall_id, _SLOTS.c.service_id, _SLOTS.c.starts_at)
)
_HOLDER_UPSERTS: dict[str, Any] = {}

_LOG_BOOKING_EVENTS = """
    ), bumped AS (
        -- The hall row last (the documented lock order), and only for a booking made:
        -- every booking of the hall queues on this lock until its commit.
        UPDATE halls SET event_seq = event_seq + CAST(:count AS bigint)
        WHERE id = CAST(:hall_id AS bigint) AND EXISTS (SELECT 1 FROM made)
        RETURNING event_seq
    ), logged AS (
        INSERT INTO hall_events (hall_id, seq, name, payload, created_at)
        SELECT CAST(:hall_id AS bigint), bumped.event_seq - CAST(:count AS bigint) + e.ord,
               e.name, CAST(e.payload AS json), CAST(:made_at AS timestamptz)
        FROM bumped,
             unnest(CAST(:names AS text[]), CAST(:payloads AS text[]))
                 WITH ORDINALITY AS e(name, payload, ord)
        RETURNING seq
    )
"""
"""The end of both one-statement bookings: the hall's event numbers bumped and the
booking's events (``:names``, ``:payloads``) logged, after a ``made`` CTE."""

_PG_BOOK = text(
    f"""
    WITH taken AS (
        UPDATE slots SET booked = booked + 1
        WHERE id = CAST(:slot_id AS bigint) AND booked < bookable
        RETURNING booked, bookable
    ), made AS (
        INSERT INTO bookings (hall_id, service_id, slot_id, slot_start, code, name, phone,
                              id_tail, state, channel, made_by_user_id, made_at)
        SELECT CAST(:hall_id AS bigint), CAST(:service_id AS bigint), CAST(:slot_id AS bigint),
               CAST(:slot_start AS timestamptz), CAST(:code AS varchar),
               CAST(:name AS varchar), CAST(:phone AS varchar), CAST(:id_tail AS varchar),
               CAST(:state AS varchar), CAST(:channel AS varchar),
               CAST(:made_by_user_id AS bigint), CAST(:made_at AS timestamptz)
        FROM taken
        RETURNING id
    {_LOG_BOOKING_EVENTS}
    SELECT taken.booked, taken.bookable, (SELECT id FROM made),
           (SELECT count(*) FROM logged)
    FROM taken
    """  # noqa: S608 - built from the constant above
)
"""A booking on PostgreSQL in one statement, once its holder is locked and its limits
checked: the slot's place (the conditional update), the booking row, and its events
numbered in the hall's log as ``Repository.record_events`` numbers them."""


def config_hash_sql(hall: str, service: str) -> str:
    """PostgreSQL: an MD5 of what a matter's booking rules depend on (every column of the
    hall but its event counter, every column of the matter, the counters serving it and
    their other primary matters), ``hall`` and ``service`` naming the rows. A statement that
    books from a configuration read earlier compares it with the hash read then."""
    columns = [f"{hall}.{c.name}" for c in HallRow.__table__.columns if c.name != "event_seq"]
    columns += [f"{service}.{c.name}" for c in ServiceRow.__table__.columns]
    # Built from the tables' own column names, never from input.
    counters = (
        "(SELECT string_agg(cs.counter_id || ':' || cs.level || ':' || "  # noqa: S608
        "(SELECT count(*) FROM counter_services o WHERE o.counter_id = cs.counter_id "
        "AND o.level = 'primary'), ',' ORDER BY cs.counter_id) "
        f"FROM counter_services cs JOIN counters c ON c.id = cs.counter_id "
        f"WHERE cs.service_id = {service}.id)"
    )
    return f"md5(CAST(ROW({', '.join(columns)}, {counters}) AS text))"


_PG_BOOK_AT_ONCE = text(
    f"""
    WITH config AS (
        SELECT {config_hash_sql("h", "s")} = CAST(:config AS text) AS same
        FROM halls h JOIN services s ON s.id = CAST(:service_id AS bigint) AND s.hall_id = h.id
        WHERE h.id = CAST(:hall_id AS bigint) AND s.active AND s.booking IS NOT NULL
    ), locked AS (
        -- As booking.context's: a holder row is updated only if no other transaction
        -- changed it since this statement's snapshot, so "mine" below is current.
        INSERT INTO booking_holders AS held (hall_id, key, touched_at)
        SELECT CAST(:hall_id AS bigint), k.key, CAST(:made_at AS timestamptz)
        FROM unnest(CAST(:keys AS varchar[])) AS k(key)
        WHERE (SELECT same FROM config)
          AND EXISTS (SELECT 1 FROM slots sl
                      WHERE sl.service_id = CAST(:service_id AS bigint)
                        AND sl.starts_at = CAST(:slot_start AS timestamptz)
                        AND sl.booked < sl.bookable)
        ORDER BY k.key
        ON CONFLICT (hall_id, key) DO UPDATE SET touched_at = excluded.touched_at
        WHERE held.xmin = (SELECT seen.xmin FROM booking_holders seen
                           WHERE seen.hall_id = held.hall_id AND seen.key = held.key)
        RETURNING held.key
    ), mine AS (
        SELECT b.service_id, b.state, b.slot_start FROM bookings b
        WHERE b.hall_id = CAST(:hall_id AS bigint)
          AND (b.phone = CAST(:phone AS varchar)
               OR (b.id_tail = CAST(:id_tail AS varchar) AND b.name = CAST(:name AS varchar)))
    ), allowed AS (
        -- booking.domain.booking.check_limits, or stricter (the day is widened by two
        -- hours each side): a refusal here is decided again in a transaction.
        SELECT coalesce((SELECT same FROM config), false)
           AND (SELECT count(*) FROM locked) = CAST(:key_count AS bigint)
           AND (SELECT count(*) FROM mine
                WHERE mine.service_id = CAST(:service_id AS bigint) AND mine.state = 'booked')
               < CAST(:max_active AS bigint)
           AND (SELECT count(*) FROM mine
                WHERE mine.state <> 'cancelled'
                  AND mine.slot_start >= CAST(:day_from AS timestamptz)
                  AND mine.slot_start < CAST(:day_until AS timestamptz))
               < CAST(:max_per_day AS bigint)
           AS ok
    ), taken AS (
        UPDATE slots SET booked = booked + 1
        WHERE service_id = CAST(:service_id AS bigint)
          AND starts_at = CAST(:slot_start AS timestamptz)
          AND booked < bookable AND booked < CAST(:places AS integer)
          AND (SELECT ok FROM allowed)
        RETURNING id, booked, bookable
    ), made AS (
        INSERT INTO bookings (hall_id, service_id, slot_id, slot_start, code, name, phone,
                              id_tail, state, channel, made_by_user_id, made_at)
        SELECT CAST(:hall_id AS bigint), CAST(:service_id AS bigint), taken.id,
               CAST(:slot_start AS timestamptz), CAST(:code AS varchar),
               CAST(:name AS varchar), CAST(:phone AS varchar), CAST(:id_tail AS varchar),
               CAST(:state AS varchar), CAST(:channel AS varchar),
               CAST(:made_by_user_id AS bigint), CAST(:made_at AS timestamptz)
        FROM taken
        RETURNING id, slot_id
    {_LOG_BOOKING_EVENTS}
    SELECT taken.booked, taken.bookable, made.id, made.slot_id, (SELECT count(*) FROM logged)
    FROM taken JOIN made ON made.slot_id = taken.id
    """  # noqa: S608 - config_hash_sql is built from column names
)
"""PostgreSQL: a whole booking in one statement, run outside a transaction (it commits by
itself): the configuration unchanged since it was read, the holder's rows locked, their
limits, the slot's place, the booking and its events. The hall row, which every booking of
the hall queues on, is then locked only for the rest of this statement and its commit, not
for a round trip to the server and back. No row when anything is not so; the caller then
books in a transaction, which decides and says why."""


async def book_at_once(engine: AsyncEngine, events: Sequence[Event], **values: Any) -> Taken | None:
    """Run ``_PG_BOOK_AT_ONCE`` on a connection of its own, in autocommit."""
    params = {
        **values,
        "count": len(events),
        "names": [e.name for e in events],
        "payloads": [json_text(e.payload()) for e in events],
    }
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        row = (await connection.execute(_PG_BOOK_AT_ONCE, params)).first()
    if row is None:
        return None
    if int(row[4]) != len(events):
        raise LookupError(f"no hall {values['hall_id']} to record its events in")
    return Taken(int(row[0]), int(row[1]), int(row[2]), int(row[3]))


@dataclass(frozen=True)
class Taken:
    """A place taken: the booking's row id (when stored with it) and the slot's count after."""

    booked: int
    bookable: int
    booking_id: int | None = None
    slot_id: int | None = None

    @property
    def filled(self) -> bool:
        """This booking took the slot's last place."""
        return self.booked >= self.bookable


_FORGET = "onedoor_booking_forget"
"""Where a session keeps the slots its transaction gave places back to, until it commits."""


def _pending(session: AsyncSession) -> tuple[list[Freed], list[Changed]]:
    """The session's list of slots to forget after its commit (hooks set up on first use)."""
    pending: tuple[list[Freed], list[Changed]] | None = session.info.get(_FORGET)
    if pending is None:
        pending = session.info[_FORGET] = ([], [])
        sync = session.sync_session
        event.listen(sync, "after_commit", _forget_committed)
        event.listen(sync, "after_rollback", _drop_pending)
    return pending


def _forget_committed(session: Session) -> None:
    pending = session.info.get(_FORGET)
    if pending and (pending[0] or pending[1]):
        forget_after_commit(*pending)
        pending[0].clear()
        pending[1].clear()


def _drop_pending(session: Session) -> None:
    pending = session.info.get(_FORGET)
    if pending:
        pending[0].clear()
        pending[1].clear()


class BookingStore:
    """All booking SQL over one session (one transaction)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _upsert(self, table: type, **values: object) -> postgresql.Insert | sqlite.Insert:
        """``INSERT`` with the dialect's ``ON CONFLICT`` clauses (both speak the same)."""
        dialect = self.session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = insert(table)
        return stmt.values(**values) if values else stmt

    async def counts(
        self, service_id: int, start: datetime, end: datetime
    ) -> dict[datetime, SlotCount]:
        """Booked places of the matter's stored slots starting in ``[start, end)``: one query."""
        rows = await self.session.execute(
            select(SlotRow.id, SlotRow.starts_at, SlotRow.bookable, SlotRow.booked).where(
                SlotRow.service_id == service_id,
                SlotRow.starts_at >= start,
                SlotRow.starts_at < end,
            )
        )
        return {
            starts_at: SlotCount(slot_id, starts_at, bookable, booked)
            for slot_id, starts_at, bookable, booked in rows
        }

    async def ensure_slots(self, hall_id: int, service_id: int, slots: Sequence[Slot]) -> int:
        """Store the slots that are not stored yet, and bring the places of the stored ones
        up to date (capacity can change with the rules or the counters); return how many
        were new. Never touches ``booked``."""
        if not slots:
            return 0
        existing = await self.counts(service_id, slots[0].start, slots[-1].end)
        new = [s for s in slots if s.start not in existing]
        for s in slots:
            known = existing.get(s.start)
            if known is not None and known.bookable != s.bookable:
                await self.session.execute(
                    update(SlotRow)
                    .where(SlotRow.id == known.slot_id)
                    .values(capacity=s.capacity, bookable=s.bookable)
                )
                if s.bookable > known.bookable:  # more places: no longer full
                    _pending(self.session)[0].append((hall_id, service_id, s.start))
        if new:
            _pending(self.session)[1].append((hall_id, service_id))
            stmt = self._upsert(SlotRow).values(
                [
                    {
                        "hall_id": hall_id,
                        "service_id": service_id,
                        "starts_at": s.start,
                        "ends_at": s.end,
                        "capacity": s.capacity,
                        "bookable": s.bookable,
                        "booked": 0,
                    }
                    for s in new
                ]
            )
            await self.session.execute(stmt.on_conflict_do_nothing())
        return len(new)

    async def slot_id(self, hall_id: int, service_id: int, slot: Slot) -> int:
        """The stored slot's id, storing it first if the release job has not yet."""
        found = await self.session.scalar(
            select(SlotRow.id).where(
                SlotRow.service_id == service_id, SlotRow.starts_at == slot.start
            )
        )
        if found is not None:
            return int(found)
        await self.ensure_slots(hall_id, service_id, [slot])
        return int(
            (
                await self.session.execute(
                    select(SlotRow.id).where(
                        SlotRow.service_id == service_id, SlotRow.starts_at == slot.start
                    )
                )
            ).scalar_one()
        )

    async def booked(self, slot_id: int) -> tuple[int, int]:
        """(booked, bookable) of a slot as last committed: for refusing early, not deciding."""
        row = (
            await self.session.execute(
                select(SlotRow.booked, SlotRow.bookable).where(SlotRow.id == slot_id)
            )
        ).one()
        return int(row[0]), int(row[1])

    async def take_place(self, slot_id: int) -> Taken | None:
        """Take one place of the slot if one is free; None if it is full."""
        row = (await self.session.execute(_TAKE_PLACE, {"slot": slot_id})).first()
        return Taken(int(row[0]), int(row[1])) if row is not None else None

    async def give_back_place(self, slot_id: int) -> None:
        """Give a place back; once committed, this process's memories forget the slot as
        full at once (other processes hear the booking's event)."""
        row = (await self.session.execute(_GIVE_BACK_PLACE, {"slot": slot_id})).first()
        if row is not None:
            _pending(self.session)[0].append((int(row[0]), int(row[1]), row[2]))

    async def book_in_one(self, events: Sequence[Event], **values: Any) -> Taken | None:
        """PostgreSQL: take a place of the slot ``values["slot_id"]``, store the booking
        (``values``: its row) and log its ``events``, in one statement (``_PG_BOOK``); None
        if the slot is full. A clash of the random code raises ``IntegrityError``. The
        caller's unit of work must be told the events are written (``note_recorded``)."""
        params = {
            **values,
            "count": len(events),
            "names": [e.name for e in events],
            "payloads": [json_text(e.payload()) for e in events],
        }
        row = (await self.session.execute(_PG_BOOK, params)).first()
        if row is None:
            return None
        if int(row[3]) != len(events):
            raise LookupError(f"no hall {values['hall_id']} to record its events in")
        return Taken(int(row[0]), int(row[1]), int(row[2]))

    async def lock_holder(self, hall_id: int, keys: Iterable[str], now: datetime) -> None:
        """Upsert the visitor's holder rows, in key order: their row locks, held until
        commit, queue a person's concurrent bookings behind each other."""
        dialect = self.session.get_bind().dialect.name
        stmt = _HOLDER_UPSERTS.get(dialect)
        if stmt is None:
            insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
            holders = cast(Table, BookingHolderRow.__table__)
            upsert = insert_(holders).values(
                hall_id=bindparam("hall"), key=bindparam("holder"), touched_at=bindparam("now")
            )
            stmt = _HOLDER_UPSERTS[dialect] = upsert.on_conflict_do_update(
                index_elements=["hall_id", "key"], set_={"touched_at": upsert.excluded.touched_at}
            )
        for key in sorted(keys):
            await self.session.execute(stmt, {"hall": hall_id, "holder": key, "now": now})

    async def bookings_of(
        self, hall_id: int, phone: str | None, id_tail: str | None
    ) -> list[Row[Any]]:
        """The hall's bookings under this phone number or ID tail (the limits filter
        them), as plain rows: read, not changed."""
        who = []
        if phone:
            who.append(_BOOKINGS.c.phone == phone)
        if id_tail:
            who.append(_BOOKINGS.c.id_tail == id_tail)
        if not who:
            return []
        rows = await self.session.execute(
            select(_BOOKINGS).where(_BOOKINGS.c.hall_id == hall_id, or_(*who))
        )
        return list(rows)

    async def add_booking(self, **values: Any) -> BookingRow:
        """Store a new booking; the answer is a detached row to read its fields from.
        A clash of its random code raises ``IntegrityError``."""
        booking_id = (
            await self.session.execute(insert(_BOOKINGS).values(**values).returning(_BOOKINGS.c.id))
        ).scalar_one()
        return BookingRow(id=booking_id, **values)

    async def by_code(self, code: str, *, lock: bool = False) -> BookingRow | None:
        stmt = select(BookingRow).where(BookingRow.code == code)
        if lock:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def booked_on_day(
        self,
        hall_id: int,
        start: datetime,
        end: datetime,
        *,
        phone: str | None = None,
        service_id: int | None = None,
        lock: bool = False,
    ) -> list[BookingRow]:
        """Bookings still to be used whose slot starts in ``[start, end)``."""
        stmt = select(BookingRow).where(
            BookingRow.hall_id == hall_id,
            BookingRow.state == BookingState.BOOKED,
            BookingRow.slot_start >= start,
            BookingRow.slot_start < end,
        )
        if phone is not None:
            stmt = stmt.where(BookingRow.phone == phone)
        if service_id is not None:
            stmt = stmt.where(BookingRow.service_id == service_id)
        if lock:
            stmt = stmt.with_for_update()
        return list((await self.session.execute(stmt.order_by(BookingRow.slot_start))).scalars())

    async def free_slots_after(
        self, service_id: int, after: datetime, until: datetime, limit: int
    ) -> list[datetime]:
        """The starts of the matter's stored slots with a free place, after ``after``."""
        rows = await self.session.scalars(
            select(SlotRow.starts_at)
            .where(
                SlotRow.service_id == service_id,
                SlotRow.starts_at > after,
                SlotRow.starts_at < until,
                SlotRow.booked < SlotRow.bookable,
            )
            .order_by(SlotRow.starts_at)
            .limit(limit)
        )
        return list(rows)

    async def overdue(self, now: datetime, *, limit: int = 500) -> list[BookingRow]:
        """Unused bookings whose slot has begun, locked (others skipped) for the sweep."""
        stmt = (
            select(BookingRow)
            .where(BookingRow.state == BookingState.BOOKED, BookingRow.slot_start < now)
            .order_by(BookingRow.slot_start)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def to_remind(self, now: datetime, horizon: datetime) -> list[BookingRow]:
        """Unused, not yet reminded bookings whose slot starts between now and ``horizon``."""
        stmt = (
            select(BookingRow)
            .where(
                BookingRow.state == BookingState.BOOKED,
                BookingRow.reminded_at.is_(None),
                and_(BookingRow.slot_start > now, BookingRow.slot_start <= horizon),
            )
            .order_by(BookingRow.slot_start)
            .with_for_update(skip_locked=True)
        )
        return list((await self.session.execute(stmt)).scalars())
