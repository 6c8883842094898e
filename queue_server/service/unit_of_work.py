"""One transaction per command, retried when a concurrent writer forces it."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TypeVar

import asyncpg
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.util import greenlet_spawn

from queue_server.clock import Clock
from queue_server.db.driven import ConnectionLost
from queue_server.db.engine import ReadOnly, ReadSession
from queue_server.db.repository import Repository
from queue_server.domain import events as ev

from .errors import RetryTransaction

log = logging.getLogger(__name__)
T = TypeVar("T")
Committed = Callable[[list[ev.Event]], None]
"""Told after a commit that wrote events: those the unit of work recorded one by one (a
ticket issued in one statement on PostgreSQL is written without an ``Event`` here)."""
MAX_ATTEMPTS = 5
# PostgreSQL: serialization_failure, deadlock_detected. SQLite: busy past its timeout.
TRANSIENT_SQLSTATES = {"40001", "40P01"}


NOW_KEY = "onedoor_now"
"""Where a unit of work leaves its clock for what its flushes write (the audit log)."""


class UnitOfWork:
    """A session and its repository; ``commit`` writes the collected events with the change."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        on_events: Committed | None = None,
    ) -> None:
        self._sessions = sessions
        self.clock = clock
        self.events: list[ev.Event] = []
        self._on_events = on_events
        self._recorded = False
        self._alone = False
        """Whether its statements commit on their own (``commit_each_statement``)."""
        self._checked = False
        """Whether its one change, to one ticket read unlocked, is written if unchanged."""
        self.answer: Callable[[UnitOfWork, int], Awaitable[object | None]] | None = None
        """Set by ``Bus.execute_answered``: reads the answer for the ticket a command acted
        on, in the command's own transaction (``commit(answering=…)``)."""
        self.answered: object | None = None

    async def __aenter__(self) -> UnitOfWork:
        self._session: AsyncSession | None = None
        self._repo: Repository | None = None
        self._connection: AsyncConnection | None = None
        self._driver: asyncpg.Connection | None = None
        self.events = []
        self._recorded = False
        self._alone = False
        self._checked = False
        return self

    @property
    def session(self) -> AsyncSession:
        """The unit's session, made when the work first asks for it: work answered from
        what the process keeps (most kiosk answers in a rush, told from a projection
        another request made) makes none, and has none to roll back and close."""
        session = self._session
        if session is None:
            if self._driver is not None:
                raise RuntimeError("a unit of work uses its session or the driver, not both")
            session = self._session = self._sessions()
            session.info[NOW_KEY] = self.clock.now
        return session

    @property
    def repo(self) -> Repository:
        repo = self._repo
        if repo is None:
            repo = self._repo = Repository(self.session)
        return repo

    @property
    def dialect(self) -> str:
        """The database's dialect name ("postgresql", "sqlite"), without making a session."""
        return self._engine.dialect.name

    @property
    def _engine(self) -> AsyncEngine:
        bind = self._sessions.kw["bind"]
        assert isinstance(bind, AsyncEngine)
        return bind

    async def driver(self) -> asyncpg.Connection:
        """PostgreSQL: a connection of the engine's pool as the driver's own (asyncpg),
        for work whose every statement commits alone and reads nothing the ORM keeps
        (issuing a walk-in, ``db.driven``). asyncpg runs no implicit transaction, so each
        statement commits on its own, as in ``commit_each_statement``; ``commit`` then
        only wakes the relay. The connection goes back to the pool as the unit ends: if it
        failed under a statement (``driven.ConnectionLost``, or the database ended the
        session) the pool's connections are marked stale, as SQLAlchemy does on a
        disconnect, so the next requests connect afresh (``_release``)."""
        driver = self._driver
        if driver is None:
            if self._session is not None:
                raise RuntimeError("a unit of work uses its session or the driver, not both")
            self._connection = await self._engine.connect()
            raw = await self._connection.get_raw_connection()
            driver = self._driver = raw.driver_connection
            self._alone = True
        return driver

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._connection is not None:
            await asyncio.shield(self._release(self._connection, self._driver, exc))
        if self._session is None:
            return
        # Shielded: a cancelled request (a websocket gone, a client that hung up) is
        # cancelled again at every await under anyio's cancel scopes, and an interrupted
        # rollback leaves the pool a connection it can only throw away, with an error.
        await asyncio.shield(self._end(self._session))

    async def _release(
        self,
        connection: AsyncConnection,
        driver: asyncpg.Connection | None,
        exc: BaseException | None,
    ) -> None:
        """Give the driver's connection back to the pool, or drop it if it may be broken:
        closed, failed, or interrupted mid-statement (a cancelled request). A database
        that ended the session (a restart, a failover) ended the others too: every
        connection of the pool as old as this one is then marked stale, to be connected
        afresh at its next checkout (``Pool._invalidate``, what SQLAlchemy itself does when
        a statement of its own meets a disconnect)."""
        self._connection = self._driver = None
        # Never raises: it runs as the unit ends, and the work's own error (a lost race to
        # run again, a database away to answer 503) must be the one that leaves it.
        try:
            if driver is not None and (driver.is_closed() or _connection_failed(exc)):
                proxied = await connection.get_raw_connection()
                # SQLAlchemy's own (private) call for a disconnect, as in 2.0 and 2.1; the
                # ended-sessions test in tests/integration/test_issue_driver.py fails if
                # it stops marking the pool's other connections stale.
                await greenlet_spawn(self._engine.sync_engine.pool._invalidate, proxied, exc)
            elif driver is None or (exc is not None and not isinstance(exc, Exception)):
                await connection.invalidate()
        except Exception:
            log.warning("dropping a failed connection of the pool failed", exc_info=True)
        finally:
            try:
                await connection.close()
            except Exception:
                log.warning("giving a connection back to the pool failed", exc_info=True)

    @staticmethod
    async def _end(session: AsyncSession) -> None:
        try:
            await session.rollback()
        finally:
            await session.close()

    def collect(self, events: list[ev.Event]) -> None:
        """Take the events an entity recorded, to be written by ``commit``."""
        self.events.extend(events)
        events.clear()

    def note_recorded(self) -> None:
        """A statement of this transaction wrote events to the log itself (one that does
        the whole change at once): the relay must be woken after the commit too."""
        self._recorded = True

    async def commit_each_statement(self, *, one_ticket_checked: bool = False) -> None:
        """PostgreSQL: from here on, each statement of this unit commits on its own
        (AUTOCOMMIT), for work whose one change is one statement (issuing:
        ``Repository.enqueue``). The locks that statement takes are then held for it and
        its commit only, never across a round trip to this process and back, and the unit
        sends no BEGIN or COMMIT. Its reads each see what was committed when they began,
        as in a READ COMMITTED transaction. Call it before the unit's first statement;
        ``commit`` then still wakes the relay. On SQLite it changes nothing: its writers
        take turns by their transactions (``BEGIN IMMEDIATE``).

        ``one_ticket_checked``: the unit's one change is to one ticket it read (with its
        view parts, no lock), with that ticket's events: ``commit`` writes them in one
        statement if the ticket has not moved since it was read, and otherwise raises
        ``RetryTransaction`` (the unit runs again, on the ticket as it is then). A clerk's
        no-show, recall, start or return then costs two statements and no BEGIN or
        COMMIT, and holds no lock across a round trip."""
        if self.session.in_transaction():
            raise RuntimeError("a unit that has begun its transaction cannot leave it")
        if self.repo.dialect == "postgresql":
            await self.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            self._alone = True
            self._checked = one_ticket_checked
            # Nothing flushes before ``commit``: a flush now would commit the change alone,
            # without its events and without the check.
            self.session.sync_session.autoflush = False

    async def commit(self, *, answering: int | None = None) -> None:
        """Commit the change with its events; then tell the relay there is news to publish.

        ``answering``: the ticket the command acted on. When the caller asked for an answer
        (``answer``), it is made first, in this transaction, before the events are
        written: the clerk's answer costs at most one statement (none when built from what
        the command's locks read), not a transaction of its own after the commit. (The
        events take the hall row's lock as the transaction commits on PostgreSQL, and at
        their statement on SQLite: the hall's other changes never wait for the answer.) An
        answer that reads does so through the ORM, which flushes the change first. (What
        it says is what the commit makes true; if the commit fails, the answer goes with
        the transaction.) A unit whose one ticket change is checked
        (``commit_each_statement(one_ticket_checked=True)``) answers just after the
        statement that wrote and committed it (``_commit_checked``)."""
        if self._driver is not None and self._session is None:
            # Each statement on the driver's connection committed as it ran.
            if self.events:
                raise RuntimeError("a unit on the driver's connection records no events")
            self._committed([], self._recorded)
            return
        if isinstance(self.session.sync_session, ReadSession):
            raise ReadOnly("a read may not commit a change; run it as a command (Bus.run)")
        session = self.session
        changing = bool(self.events or session.new or session.dirty or session.deleted)
        checked = self._alone and self._checked and changing
        if self._alone and changing and not checked:
            # Each statement committed on its own: these would be written and committed
            # apart from the change they belong to, or a change without its events.
            raise RuntimeError("a unit whose statements commit alone has no change to commit")
        if checked:
            await self._commit_checked(answering)
            return
        if answering is not None and self.answer is not None:
            self.answered = await self.answer(self, answering)
        recorded = bool(self.events) or self._recorded
        events = self.events
        if events:
            await self.repo.record_events(events, self.clock.now())
        await self.session.commit()
        self._committed(events, recorded)

    async def _commit_checked(self, answering: int | None) -> None:
        """``commit`` of a unit whose one change, to one ticket, is written with its events
        by one statement that commits it, if the ticket is as read
        (``commit_each_statement(one_ticket_checked=True)``). The answer is made after
        that statement (a read then sees the change committed); an answer that fails then
        is logged and left to be read again after (None): the change stands, and is never
        run a second time."""
        session, events = self.session, self.events
        if session.new or session.deleted:
            raise RuntimeError("a unit whose statements commit alone changes one ticket")
        if not await self.repo.record_ticket_change_if_unchanged(events, self.clock.now()):
            raise RetryTransaction("the ticket moved since it was read")
        if answering is not None and self.answer is not None:
            try:
                self.answered = await self.answer(self, answering)
            except Exception:
                log.warning("answering for ticket %s after its change failed", answering,
                            exc_info=True)  # fmt: skip
                self.answered = None
        await session.commit()
        self._committed(events, recorded=True)

    def _committed(self, events: list[ev.Event], recorded: bool) -> None:
        self.events = []
        self._recorded = False
        # What the repository read with this transaction's locks holds no longer.
        if self._repo is not None:
            self._repo.view_parts.clear()
            self._repo.counter_numbers.clear()
        if recorded and self._on_events is not None:
            self._on_events(events)


def _connection_failed(exc: BaseException | None) -> bool:
    """``exc`` says the connection under a driver's statement is lost, not the statement
    refused (``driven.ConnectionLost``; the database ending the session: class 08, or
    ``ENDED_SQLSTATES``)."""
    if isinstance(exc, ConnectionLost):
        return True
    code = getattr(exc, "sqlstate", None)
    return isinstance(code, str) and (code.startswith("08") or code in ENDED_SQLSTATES)


ENDED_SQLSTATES = {"57P01", "57P02", "57P03"}
"""admin_shutdown, crash_shutdown, cannot_connect_now: the database ended or refused the
session (as ``api.errors.AWAY_SQLSTATES``)."""


def is_transient(exc: Exception) -> bool:
    """A failure that running the transaction again may cure (a lost race)."""
    if isinstance(exc, RetryTransaction):
        return True
    if isinstance(exc, OperationalError) and "database is locked" in str(exc):
        return True
    if isinstance(exc, DBAPIError):
        code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        return code in TRANSIENT_SQLSTATES
    # The driver's own error, from a statement on its connection (``UnitOfWork.driver``).
    return isinstance(exc, asyncpg.PostgresError) and exc.sqlstate in TRANSIENT_SQLSTATES


async def run_in_transaction(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    work: Callable[[UnitOfWork], Awaitable[T]],
    on_events: Committed | None = None,
) -> T:
    """Run ``work`` in a fresh unit of work, again (with a short backoff) if it lost a race."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            async with UnitOfWork(sessions, clock, on_events) as uow:
                return await work(uow)
        except Exception as exc:
            if attempt == MAX_ATTEMPTS or not is_transient(exc):
                raise
            log.info("transaction retried (attempt %d): %s", attempt, exc.__class__.__name__)
            await asyncio.sleep(random.uniform(0.01, 0.05) * attempt)  # noqa: S311 - jitter
    raise AssertionError("unreachable")
