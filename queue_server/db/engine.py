"""Engine and session factory for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import ORMExecuteState, Session

from .types import JSON_CODEC

SQLITE_BUSY_TIMEOUT_S = 30


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def ensure_sqlite_dir(url: str) -> None:
    """Create the folder of a SQLite file so a fresh checkout needs no manual step."""
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def create_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    """An async engine for ``url``; nothing connects until first use."""
    if is_sqlite(url):
        ensure_sqlite_dir(url)
        engine = create_async_engine(
            url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, **JSON_CODEC
        )
        _make_sqlite_transactions_immediate(engine)
        return engine
    # No ping before each checkout: it cost a round trip per transaction. A connection
    # found dead fails that one request (503, api/errors.py) and SQLAlchemy then drops the
    # pool's other connections too, so the next requests connect afresh.
    return create_async_engine(
        url, echo=echo, pool_size=pool_size, max_overflow=pool_size, **JSON_CODEC
    )


def _make_sqlite_transactions_immediate(engine: AsyncEngine) -> None:
    """Every SQLite transaction takes the write lock when it begins.

    pysqlite's deferred BEGIN lets two transactions read and then both try to write, and
    one fails with "database is locked" at once; BEGIN IMMEDIATE makes them queue on the
    busy timeout instead, which is what turns SQLite into a correct (serial) queue store.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


class ReadOnly(RuntimeError):
    """A read (``read_session_factory``) tried to write or lock."""


class ReadSession(Session):
    """The session of a read: it refuses to flush, and to run an INSERT, UPDATE, DELETE or
    a locking SELECT (on PostgreSQL each statement of a read commits on its own)."""


@event.listens_for(ReadSession, "before_flush")
def _refuse_flush(session: Session, *_: Any) -> None:
    if session.new or session.dirty or session.deleted:
        raise ReadOnly("a read may not change anything; run it as a command (Bus.run)")


@event.listens_for(ReadSession, "do_orm_execute")
def _refuse_writes(state: ORMExecuteState) -> None:
    locking = state.is_select and getattr(state.statement, "_for_update_arg", None) is not None
    if state.is_insert or state.is_update or state.is_delete or locking:
        raise ReadOnly("a read may not write or lock; run it as a command (Bus.run)")


def read_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for reads. On PostgreSQL outside a transaction (AUTOCOMMIT: no BEGIN and
    COMMIT round trips); each statement sees what was committed when it began, which is
    what a READ COMMITTED transaction gives each of its statements too. On SQLite a
    transaction as any other (the database's write lock orders it with the writers)."""
    if engine.dialect.name == "postgresql":
        engine = engine.execution_options(isolation_level="AUTOCOMMIT")
    return async_sessionmaker(engine, expire_on_commit=False, sync_session_class=ReadSession)
