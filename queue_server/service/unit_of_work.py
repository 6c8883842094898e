"""One transaction per command, retried when a concurrent writer forces it."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar, TypeVarTuple, overload

import asyncpg
from sqlalchemy import Connection, Executable, PoolProxiedConnection, Result
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.sql.selectable import TypedReturnsRows
from sqlalchemy.util import greenlet_spawn

from queue_server.clock import Clock
from queue_server.db import driven
from queue_server.db.driven import ConnectionLost
from queue_server.db.engine import ReadOnly, ReadSession
from queue_server.db.repository import Repository, ViewParts
from queue_server.domain import events as ev

from .errors import RetryTransaction

log = logging.getLogger(__name__)
T = TypeVar("T")
Ts = TypeVarTuple("Ts")
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
        self.answer: Callable[[UnitOfWork, int], Awaitable[object | None]] | None = None
        """Set by ``Bus.execute_answered``: reads the answer for the ticket a command acted
        on, in the command's own transaction (``commit(answering=…)``)."""
        self.answered: object | None = None

    async def __aenter__(self) -> UnitOfWork:
        self._session: AsyncSession | None = None
        self._repo: Repository | None = None
        self._connection: AsyncConnection | None = None
        """SQLAlchemy's connection around the driver's: made only for work that needs it
        (``_core_connection``)."""
        self._raw: PoolProxiedConnection | None = None
        """The pool's connection the driver's is (``driver``)."""
        self._driver: asyncpg.Connection | None = None
        self._in_transaction = False
        """Whether the driver's connection is in a transaction of this unit's
        (``begin_on_driver``)."""
        self._core = False
        """Whether the driver's connection also runs SQLAlchemy statements (``execute``)."""
        self._written: list[ev.Event] = []
        self._driven_parts: dict[int, ViewParts] = {}
        self._driven_counters: dict[int, int] = {}
        self.events = []
        self._recorded = False
        return self

    def another(self) -> UnitOfWork:
        """A unit of work of its own (to enter) on the same database, with the same clock:
        for work that goes on after this one ends."""
        return UnitOfWork(self._sessions, self.clock)

    @property
    def session(self) -> AsyncSession:
        """The unit's session, made when the work first asks for it: work answered from
        what the process keeps (most kiosk answers in a rush, told from a projection
        another request made) makes none, and has none to roll back and close."""
        session = self._session
        if session is None:
            if self._raw is None:
                session = self._sessions()
            elif self._reads_alone():  # never in a transaction there (``begin_on_driver``)
                # A read that held the driver's connection first (``connect``) and then
                # needs more than its statements: a session on that same connection.
                session = self._sessions(bind=self._core_connection())
            else:
                raise RuntimeError("a unit of work uses its session or the driver, not both")
            self._session = session
            session.info[NOW_KEY] = self.clock.now
        return session

    def _reads_alone(self) -> bool:
        """Whether the unit's statements each commit alone and may not write: a read's
        unit on PostgreSQL (``db.engine.read_session_factory``: AUTOCOMMIT, and a
        statement that writes or locks is refused before it is sent)."""
        return (
            self._is_read()
            and self._engine.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
        )

    def _is_read(self) -> bool:
        """Whether this is a read's unit (``Bus.read``: its sessions refuse to write)."""
        reading = self._sessions.kw.get("sync_session_class")
        return isinstance(reading, type) and issubclass(reading, ReadSession)

    async def connect(self) -> None:
        """Hold a connection of the pool for the rest of the unit, before work that others
        wait on (``estimates.told_at``, making a hall's projection). A read on PostgreSQL
        with no session yet holds the driver's connection: what it reads first runs
        there without a session (``driven.events_since``), and a session, if it needs one
        after, is made on that same connection. Any other unit connects its session."""
        if self._raw is not None:
            return
        if self._session is None and self.dialect == "postgresql" and self._reads_alone():
            await self.driver()
        else:
            await self.session.connection()

    @property
    def repo(self) -> Repository:
        repo = self._repo
        if repo is None:
            repo = self._repo = Repository(self.session)
        return repo

    @property
    def view_parts(self) -> dict[int, ViewParts]:
        """For the tickets a counter command locked in this transaction, by id: what their
        view shows besides the row, read with the lock (``Repository.view_parts``, or the
        driver's, ``driven.claim_waiting``)."""
        return self._driven_parts if self._driver is not None else self.repo.view_parts

    @property
    def counter_numbers(self) -> dict[int, int]:
        """The numbers of the counters read in this transaction, by id."""
        return self._driven_counters if self._driver is not None else self.repo.counter_numbers

    @property
    def on_driver(self) -> bool:
        """Whether this unit works on the driver's connection (``driver``)."""
        return self._driver is not None

    @overload
    async def execute(  # type: ignore[overload-overlap]  # as SQLAlchemy's own overloads
        self, statement: TypedReturnsRows[*Ts], values: Mapping[str, Any] | None = None
    ) -> Result[*Ts]: ...
    @overload
    async def execute(
        self, statement: Executable, values: Mapping[str, Any] | None = None
    ) -> Result[Any]: ...
    async def execute(
        self, statement: Executable, values: Mapping[str, Any] | None = None
    ) -> Result[Any]:
        """Run a SQLAlchemy statement in this unit: through its session, or, in a unit on
        the driver's connection, through SQLAlchemy's connection around it, inside the
        transaction the unit began there (``begin_on_driver``). For reads a hot path makes
        now and then (the policy's look-ahead), not for its every statement."""
        if (
            self._raw is None
            or self._session is not None
            # A read that holds the driver's connection (``connect``): in a session on it.
            or self._reads_alone()
        ):
            return await self.session.execute(statement, values)
        connection = self._core_connection()
        if not self._core:
            # SQLAlchemy must not begin a transaction of its own around the unit's.
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            self._core = True
        return await connection.execute(statement, values)

    def _core_connection(self) -> AsyncConnection:
        """SQLAlchemy's connection on the driver's (``driver``), made when first asked for:
        as ``AsyncEngine.connect`` makes it, with the engine's own options (a read's
        AUTOCOMMIT) and events, but on the pool's connection the unit holds already."""
        connection = self._connection
        if connection is None:
            assert self._raw is not None, "the unit holds no connection of the pool"
            sync = Connection(self._engine.sync_engine, connection=self._raw)
            connection = self._connection = AsyncConnection(self._engine, sync)
        return connection

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
        for the hottest commands, whose statements need nothing the ORM keeps (issuing a
        walk-in, a counter's call and the clerk's actions but a finish: ``db.driven``).
        asyncpg runs no implicit transaction, so each statement commits on its own unless
        the unit begins one (``begin_on_driver``). The connection goes back to the pool
        as the unit ends: if it failed under a statement (``driven.ConnectionLost``, or
        the database ended the session) the pool's connections are marked stale, as
        SQLAlchemy does on a disconnect, so the next requests connect afresh
        (``_release``)."""
        driver = self._driver
        if driver is None:
            if self._session is not None:
                raise RuntimeError("a unit of work uses its session or the driver, not both")
            # The pool's connection itself, not SQLAlchemy's around it (made only if the
            # work needs one, ``_core_connection``): a third less CPU to check out and in,
            # up to twice per kiosk answer (docs/performance.md, "2026-12-07").
            raw = self._raw = await greenlet_spawn(self._checkout)
            driver = self._driver = raw.driver_connection
        return driver

    def _checkout(self) -> PoolProxiedConnection:
        """A connection of the engine's pool, a failure to connect told as
        ``Engine.connect`` tells it (a ``DBAPIError``, the pool's connections marked stale
        on a disconnect): the API answers 503 for a database away as before."""
        engine = self._engine.sync_engine
        try:
            return engine.raw_connection()
        except engine.dialect.loaded_dbapi.Error as exc:
            # SQLAlchemy's own (private) call for it, as in 2.0 and 2.1; the failed checkout
            # test in tests/integration/test_issue_driver.py fails if it stops wrapping.
            Connection._handle_dbapi_exception_noconnection(exc, engine.dialect, engine)

    async def begin_on_driver(self) -> asyncpg.Connection:
        """``driver``, in a transaction (``driven.begin``) that ``commit`` commits: for a
        command whose statements must commit together (a call: the counter's lock held
        while the ticket is chosen and claimed). Its changes' events are written by its
        own statements (``note_written``); if the work fails, the unit rolls it back as it
        ends."""
        if self._is_read():
            raise ReadOnly("a read may not write or lock; run it as a command (Bus.run)")
        driver = await self.driver()
        if not self._in_transaction:
            await driven.begin(driver)
            self._in_transaction = True
        return driver

    def note_written(self, events: list[ev.Event]) -> None:
        """A statement on the driver's connection wrote ``events`` (with the change they
        record): ``commit`` tells them to the relay once committed."""
        self._written.extend(events)
        events.clear()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Shielded, as one: a cancelled request (a websocket gone, a client that hung up)
        # is cancelled again at every await under anyio's cancel scopes, and an
        # interrupted rollback leaves the pool a connection it can only throw away, with
        # an error; a second shielded await would never be reached.
        if self._session is not None or self._raw is not None:
            await asyncio.shield(self._end_all(exc))

    async def _end_all(self, exc: BaseException | None) -> None:
        """End the session, then give the driver's connection back: a read's session
        made on that connection (``connect``) ends before it, and the connection goes
        back even if ending the session failed."""
        session, raw = self._session, self._raw
        try:
            if session is not None:
                await self._end(session)
        finally:
            if raw is not None:
                rollback, self._in_transaction = self._in_transaction, False
                await self._release(raw, self._connection, self._driver, exc, rollback)

    async def _release(
        self,
        raw: PoolProxiedConnection,
        connection: AsyncConnection | None,
        driver: asyncpg.Connection | None,
        exc: BaseException | None,
        rollback: bool = False,
    ) -> None:
        """Give the driver's connection back to the pool (``rollback``: after rolling back
        the unit's transaction on it), or drop it if it may be broken:
        closed, failed, or interrupted mid-statement (a cancelled request). A database
        that ended the session (a restart, a failover) ended the others too: every
        connection of the pool as old as this one is then marked stale, to be connected
        afresh at its next checkout (``Pool._invalidate``, what SQLAlchemy itself does when
        a statement of its own meets a disconnect). ``connection``: SQLAlchemy's around
        it, if the work made one (``_core_connection``), closed with it."""
        self._raw = self._connection = self._driver = None
        self._core = False
        # Never raises: it runs as the unit ends, and the work's own error (a lost race to
        # run again, a database away to answer 503) must be the one that leaves it.
        try:
            if (connection is not None and connection.invalidated) or not raw.is_valid:
                # SQLAlchemy dropped it already, under a statement of its own
                # (``execute``): a lost connection marked the pool stale then, and a
                # cancelled one must not do so now.
                pass
            elif driver is not None and (driver.is_closed() or _connection_failed(exc)):
                # SQLAlchemy's own (private) call for a disconnect, as in 2.0 and 2.1; the
                # ended-sessions test in tests/integration/test_issue_driver.py fails if
                # it stops marking the pool's other connections stale.
                await greenlet_spawn(self._engine.sync_engine.pool._invalidate, raw, exc)
            elif driver is None or (exc is not None and not isinstance(exc, Exception)):
                await greenlet_spawn(raw.invalidate)
            elif rollback:
                try:
                    await driver.execute("ROLLBACK")
                except Exception:
                    log.info("rolling back on the driver's connection failed", exc_info=True)
                    await greenlet_spawn(raw.invalidate)
        except Exception:
            log.warning("dropping a failed connection of the pool failed", exc_info=True)
        finally:
            try:
                if connection is not None:
                    await connection.close()
                else:
                    await greenlet_spawn(raw.close)
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

    def committed_by_another(self) -> None:
        """This unit's change was written with its events and committed by a statement
        another unit sent (issues sent together, ``issue_batches``): the relay is told,
        as ``commit`` would tell it."""
        self._committed([], True)

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
        the transaction.) A unit on the driver's connection commits as
        ``_commit_driven`` says."""
        if self._driver is not None and self._session is None:
            if self._is_read():
                raise ReadOnly("a read may not commit a change; run it as a command (Bus.run)")
            await self._commit_driven(answering)
            return
        if isinstance(self.session.sync_session, ReadSession):
            raise ReadOnly("a read may not commit a change; run it as a command (Bus.run)")
        if answering is not None and self.answer is not None:
            self.answered = await self.answer(self, answering)
        recorded = bool(self.events) or self._recorded
        events = self.events
        if events:
            await self.repo.record_events(events, self.clock.now())
        await self.session.commit()
        self._committed(events, recorded)

    async def _commit_driven(self, answering: int | None) -> None:
        """``commit`` of a unit on the driver's connection: each statement committed as it
        ran, or (``begin_on_driver``) the transaction commits now, after the answer is made
        from what it read (a view that needs more is read after the commit: None)."""
        driver = self._driver
        assert driver is not None
        if self.events:
            raise RuntimeError("a unit on the driver's connection writes its events itself")
        if self._in_transaction:
            if answering is not None and self.answer is not None:
                self.answered = await self.answer(self, answering)
            await driven.commit(driver)
            self._in_transaction = False
        elif answering is not None and self.answer is not None:
            self.answered = await self._answer_committed(answering)
        written, self._written = self._written, []
        self._committed(written, self._recorded or bool(written))

    async def _answer_committed(self, answering: int) -> object | None:
        """The answer for a change its statement committed already: one that fails is
        logged and left to be read again after (None), the change stands and is never run
        a second time."""
        assert self.answer is not None
        try:
            return await self.answer(self, answering)
        except Exception:
            log.warning("answering for ticket %s after its change failed", answering,
                        exc_info=True)  # fmt: skip
            return None

    def _committed(self, events: list[ev.Event], recorded: bool) -> None:
        self.events = []
        self._recorded = False
        # What the repository read with this transaction's locks holds no longer.
        self._driven_parts.clear()
        self._driven_counters.clear()
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
