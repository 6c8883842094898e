"""Engine and session factory for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import functools
import re
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
    # Sessions in UTC, as every time is stored and read (``types.UTCDateTime``): the times
    # PostgreSQL itself renders as text (``statements.PG_WAITING_JSON``) are then UTC too,
    # whatever the server's own time zone. The only other such text, the booking
    # configuration's hash (``booking.store.config_hash_sql``), is compared with one made
    # by the same engine's sessions; no statement does date arithmetic in the session's
    # zone.
    connect_args = (
        {"server_settings": {"timezone": "UTC"}}
        if make_url(url).get_driver_name() == "asyncpg"
        else {}
    )
    return create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args=connect_args,
        **JSON_CODEC,
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
    """The session of a read: it refuses to flush (and ``UnitOfWork.commit``), and its
    connection any statement that writes or locks (on PostgreSQL each statement of a read
    commits on its own)."""


@event.listens_for(ReadSession, "before_flush")
def _refuse_flush(session: Session, *_: Any) -> None:
    if session.new or session.dirty or session.deleted:
        raise ReadOnly("a read may not change anything; run it as a command (Bus.run)")


@event.listens_for(ReadSession, "do_orm_execute")
def _refuse_locking(state: ORMExecuteState) -> None:
    # Also on SQLite, where the statement is sent without its FOR UPDATE: a read that
    # locks fails there as on PostgreSQL.
    if state.is_select and getattr(state.statement, "_for_update_arg", None) is not None:
        raise ReadOnly("a read may not write or lock; run it as a command (Bus.run)")


_READING = re.compile(r"\s*(SELECT|WITH|VALUES|SHOW|TABLE|BEGIN)\b", re.IGNORECASE)
_WRITING = re.compile(r"\b(INSERT|UPDATE|DELETE|MERGE|SHARE|INTO)\b", re.IGNORECASE)
_COMMENT = re.compile(r"--[^\n]*")


@functools.lru_cache(maxsize=1024)
def _writes(statement: str) -> bool:
    """Whether ``statement`` may write or lock: anything but a query (SELECT, WITH,
    VALUES…), or a query with a writing part (a data-modifying CTE, SELECT … INTO) or a
    lock (FOR UPDATE, FOR SHARE). Comments are left out of the look."""
    bare = _COMMENT.sub("", statement)
    return not _READING.match(bare) or _WRITING.search(bare) is not None


def _refuse_writing_sql(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
    """Any statement a read's connection sends (ORM, Core or text) that may write or lock
    is refused before it reaches the database."""
    if _writes(statement):
        raise ReadOnly("a read may not write or lock; run it as a command (Bus.run)")


def read_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for reads. On PostgreSQL outside a transaction (AUTOCOMMIT: no BEGIN and
    COMMIT round trips); each statement sees what was committed when it began, which is
    what a READ COMMITTED transaction gives each of its statements too. On SQLite a
    transaction as any other (the database's write lock orders it with the writers). The
    same pool either way; what is sent through it is checked (``_refuse_writing_sql``)."""
    if engine.dialect.name == "postgresql":
        reading = engine.execution_options(isolation_level="AUTOCOMMIT")
    else:
        reading = engine.execution_options(onedoor_read=True)
    event.listen(reading.sync_engine, "before_cursor_execute", _refuse_writing_sql)
    return async_sessionmaker(reading, expire_on_commit=False, sync_session_class=ReadSession)
