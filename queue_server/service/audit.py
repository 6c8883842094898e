"""The audit log: every privileged action, who did it, when, from where, before and after.

Changes to a hall's configuration and accounts are caught where they are stored: after each
flush (``_after_flush``) the rows of the audited tables that were created, changed or
deleted are written to ``audit_log`` in the same transaction, with the columns that changed
(secrets masked: passwords, tokens, keys), so nothing configured through any route escapes
it and nothing is logged for a change that was rolled back. What changes no such row — a
download, the day close, a clerk calling a ticket out of turn — is recorded by its route
or job (``record``).

Who: the request's staff member or device and its address, set by the access guard
(``set_actor``) for the request's duration; ``system`` for what no request did (the
command line, start-up). Jobs name themselves (``as_actor``).

No route changes or deletes an entry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Session, UOWTransaction
from sqlalchemy.orm.util import identity_key

from queue_server.db.tables import (
    AuditRow,
    CounterRow,
    CounterServiceRow,
    DeviceRow,
    HallRow,
    OutcomeChangeRow,
    ServiceRow,
    UserRow,
    WebhookRow,
)

from .errors import Invalid, NotFound
from .exports import Sheet
from .unit_of_work import NOW_KEY, UnitOfWork


@dataclass(frozen=True)
class Actor:
    name: str
    user_id: int | None = None
    device_id: int | None = None
    address: str | None = None


SYSTEM = Actor("system")
_actor: ContextVar[Actor | None] = ContextVar("onedoor_audit_actor", default=None)


def set_actor(actor: Actor) -> None:
    """Who the current request is (the access guard says so)."""
    _actor.set(actor)


def begin_request() -> Token[Actor | None]:
    """Start a request with nobody named; ``end_request`` forgets whoever it named."""
    return _actor.set(None)


def end_request(token: Token[Actor | None]) -> None:
    _actor.reset(token)


@contextlib.contextmanager
def as_actor(actor: Actor) -> Iterator[None]:
    """Name the actor of what runs inside (a job, a command)."""
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


def current_actor() -> Actor:
    return _actor.get() or SYSTEM


@dataclass(frozen=True)
class Audited:
    """How a table's rows are logged."""

    kind: str
    target: Callable[[Any], str]
    hall: Callable[[Session, Any], int | None]
    ignored: frozenset[str] = frozenset()
    """Columns whose changes are not privileged actions (states, heartbeats, cursors)."""
    masked: frozenset[str] = frozenset()
    """Secrets: logged as changed, never with their value."""


def _own_hall(_: Session, row: Any) -> int | None:
    return row.hall_id  # type: ignore[no-any-return]


def _counter_hall(session: Session, row: Any) -> int | None:
    counter = session.identity_map.get(identity_key(CounterRow, row.counter_id))
    return counter.hall_id if isinstance(counter, CounterRow) else None


AUDITED: dict[type, Audited] = {
    HallRow: Audited(
        "hall", lambda r: f"hall {r.id}", lambda _, r: r.id,
        ignored=frozenset({"event_seq"}), masked=frozenset({"visitor_salt"}),
    ),
    ServiceRow: Audited("matter", lambda r: f"matter {r.id} ({r.prefix})", _own_hall),
    CounterRow: Audited(
        "counter", lambda r: f"counter {r.number}", _own_hall,
        ignored=frozenset({"state", "clerk_id", "state_since"}),
    ),
    CounterServiceRow: Audited(
        "counter profile", lambda r: f"counter id {r.counter_id}, matter {r.service_id}",
        _counter_hall,
    ),
    UserRow: Audited(
        "staff", lambda r: f"user {r.id} ({r.username})", _own_hall,
        masked=frozenset({"password_hash"}),
    ),
    DeviceRow: Audited(
        "device", lambda r: f"device {r.id} ({r.kind} {r.name})", _own_hall,
        ignored=frozenset({"last_seen_at", "status", "connected"}),
        masked=frozenset({"token_hash"}),
    ),
    WebhookRow: Audited(
        "webhook", lambda r: f"webhook {r.id}", _own_hall,
        ignored=frozenset({"cursor"}), masked=frozenset({"secret"}),
    ),
}  # fmt: skip
MASK = "(changed; not shown)"


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, dict | list | str | int | float | bool) or value is None:
        return value
    return str(value)


def _columns(row: Any) -> list[str]:
    return [c.key for c in inspect(row).mapper.column_attrs]


def _whole(row: Any, audited: Audited) -> dict[str, Any]:
    return {
        c: (MASK if c in audited.masked else _plain(getattr(row, c)))
        for c in _columns(row)
        if c not in audited.ignored
    }


def _changes(row: Any, audited: Audited) -> tuple[dict[str, Any], dict[str, Any]]:
    state = inspect(row)
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for name in _columns(row):
        if name in audited.ignored:
            continue
        history = state.attrs[name].history
        if not history.has_changes():
            continue
        old = history.deleted[0] if history.deleted else None
        new = history.added[0] if history.added else None
        if old == new:
            continue
        if name in audited.masked:
            before[name], after[name] = MASK, MASK
        else:
            before[name], after[name] = _plain(old), _plain(new)
    return before, after


def _entry(
    session: Session, row: Any, audited: Audited, action: str, before: Any, after: Any
) -> AuditRow:
    actor = current_actor()
    return AuditRow(
        hall_id=audited.hall(session, row), at=_now(session), user_id=actor.user_id,
        device_id=actor.device_id, actor=actor.name, address=actor.address,
        action=f"{audited.kind} {action}", target=audited.target(row)[:128],
        before=before, after=after,
    )  # fmt: skip


def _now(session: Session) -> datetime:
    now = session.info.get(NOW_KEY)
    return now() if callable(now) else datetime.now().astimezone()


def _after_flush(session: Session, _: UOWTransaction) -> None:
    entries: list[AuditRow] = []
    for row in session.new:
        if isinstance(row, OutcomeChangeRow):
            entries.append(_outcome_entry(session, row))
            continue
        audited = AUDITED.get(type(row))
        if audited is not None:
            entries.append(_entry(session, row, audited, "created", None, _whole(row, audited)))
    for row in session.dirty:
        audited = AUDITED.get(type(row))
        if audited is None or not session.is_modified(row):
            continue
        before, after = _changes(row, audited)
        if after:
            entries.append(_entry(session, row, audited, "changed", before, after))
    for row in session.deleted:
        audited = AUDITED.get(type(row))
        if audited is not None:
            entries.append(_entry(session, row, audited, "removed", _whole(row, audited), None))
    if entries:
        session.add_all(entries)  # flushed by the commit's next round


def _outcome_entry(session: Session, row: OutcomeChangeRow) -> AuditRow:
    actor = current_actor()
    return AuditRow(
        hall_id=row.hall_id, at=_now(session), user_id=actor.user_id,
        device_id=actor.device_id, actor=actor.name, address=actor.address,
        action="outcome corrected", target=f"ticket id {row.ticket_id}",
        before=row.before, after={**row.after, "reason": row.reason},
    )  # fmt: skip


def listen() -> None:
    """Log the audited tables' changes from now on (once per process)."""
    if not event.contains(Session, "after_flush", _after_flush):
        event.listen(Session, "after_flush", _after_flush)


async def record(
    uow: UnitOfWork, hall_id: int | None, action: str, target: str, details: dict[str, Any]
) -> None:
    """Log an action that changes no audited row (a download, a call out of turn, a day
    close); commits."""
    actor = current_actor()
    uow.session.add(
        AuditRow(
            hall_id=hall_id,
            at=uow.clock.now(),
            user_id=actor.user_id,
            device_id=actor.device_id,
            actor=actor.name,
            address=actor.address,
            action=action,
            target=target[:128],
            before=None,
            after=details,
        )
    )
    await uow.commit()


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    user_id: int | None
    device_id: int | None
    address: str | None
    action: str
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


AUDIT_LIMIT = 1000


async def hall_log(
    uow: UnitOfWork,
    hall_id: int,
    start: date | None,
    end: date | None,
    action: str | None = None,
    limit: int = AUDIT_LIMIT,
) -> list[AuditEntry]:
    """The hall's entries of hall days ``start`` to ``end`` (default: the last 7), newest
    first, at most ``limit``; only those whose action starts with ``action``."""
    hall = await uow.session.get(HallRow, hall_id)
    if hall is None:
        raise NotFound(f"no hall with id {hall_id}")
    zone = ZoneInfo(hall.timezone)
    today = uow.clock.now().astimezone(zone).date()
    end = end or today
    start = start or end - timedelta(days=6)
    if start > end:
        raise Invalid("from", f"the range starts ({start}) after it ends ({end})")
    if (end - start).days > 366:
        raise Invalid("from", "ask for at most a year (366 days) at a time")
    first = datetime.combine(start, time(), zone)
    last = datetime.combine(end + timedelta(days=1), time(), zone)
    query = (
        select(AuditRow)
        .where(AuditRow.hall_id == hall_id, AuditRow.at >= first, AuditRow.at < last)
        .order_by(AuditRow.at.desc(), AuditRow.id.desc())
        .limit(limit)
    )
    if action:
        query = query.where(AuditRow.action.startswith(action, autoescape=True))
    rows = await uow.session.scalars(query)
    return [
        AuditEntry(
            r.id,
            r.at,
            r.actor,
            r.user_id,
            r.device_id,
            r.address,
            r.action,
            r.target,
            r.before,
            r.after,
        )
        for r in rows
    ]


def audit_sheet(entries: list[AuditEntry], zone: ZoneInfo, title: str = "Audit") -> Sheet:
    """The entries as a table to download (hall time; secrets were never kept)."""
    return Sheet(
        title,
        ["id", "at", "actor", "address", "action", "target", "before", "after"],
        [
            [e.id, e.at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"), e.actor,
             e.address or "", e.action, e.target, e.before or "", e.after or ""]
            for e in entries
        ],
    )  # fmt: skip
