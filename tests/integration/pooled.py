"""What the tests of the driver's own connection share (``test_issue_driver``,
``test_call_driver``): an engine with a pool of its own, how many of its connections are
checked out, and waits on what PostgreSQL's sessions are doing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from queue_server.db.engine import create_engine


@pytest.fixture
async def engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(pg_url, pool_size=10)
    try:
        yield engine
    finally:
        await engine.dispose()


def checked_out(engine: AsyncEngine) -> int:
    return int(engine.sync_engine.pool.checkedout())  # type: ignore[attr-defined]


async def backend_where(watcher: asyncpg.Connection, condition: str) -> int:
    """The process id of the first session of this database for which SQL ``condition``
    on ``pg_stat_activity`` holds, once there is one."""
    async with asyncio.timeout(20):
        while not (  # noqa: ASYNC110 - no event to wait on
            found := await watcher.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                f" AND {condition}"
            )
        ):
            await asyncio.sleep(0.01)
    return int(found)


async def backend_waiting_on_a_lock(watcher: asyncpg.Connection) -> int:
    """The process id of the first session of this database waiting for a lock."""
    return await backend_where(watcher, "wait_event_type = 'Lock'")


async def session_ended(watcher: asyncpg.Connection, pid: int) -> None:
    """Return once the session of process ``pid`` has ended."""
    async with asyncio.timeout(20):
        while await watcher.fetchval(  # noqa: ASYNC110 - no event to wait on
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid
        ):
            await asyncio.sleep(0.05)
