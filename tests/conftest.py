"""Fixtures shared by the integration and end-to-end tiers.

Databases are real: a SQLite file per test (copied from one migrated template) and a
PostgreSQL database per test session (tables truncated between tests). PostgreSQL comes
from ONEDOOR_TEST_POSTGRES_URL (default: the local server, database ``test``). Without a
server those tests skip, saying how to run them; with ONEDOOR_REQUIRE_SERVICES=1 (CI) they
fail instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.engine import make_url

from queue_server.app import create_app
from queue_server.clock import FixedClock
from queue_server.db.engine import create_engine, session_factory
from queue_server.db.migrate import upgrade
from queue_server.service import estimates
from queue_server.service.bus import Bus
from queue_server.settings import Settings

POSTGRES_URL = os.environ.get(
    "ONEDOOR_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REQUIRE_SERVICES = os.environ.get("ONEDOOR_REQUIRE_SERVICES") == "1"
HOW_TO_RUN_POSTGRES = (
    "PostgreSQL is not reachable at {url} ({error}). Start it (Debian: pg_ctlcluster "
    "--skip-systemctl-redirect $(ls /etc/postgresql) main start) or point "
    "ONEDOOR_TEST_POSTGRES_URL at a server where the user may CREATE DATABASE."
)
# Monday 2026-03-02 10:00 in Shanghai: the demo-like halls are open.
MONDAY_10AM_SHANGHAI = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


def _plain_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin_execute(sql: str) -> None:
    conn = await asyncpg.connect(_plain_dsn(POSTGRES_URL), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session."""
    name = f"onedoor_t_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(_admin_execute(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        message = HOW_TO_RUN_POSTGRES.format(url=POSTGRES_URL, error=exc)
        if REQUIRE_SERVICES:
            pytest.fail(f"ONEDOOR_REQUIRE_SERVICES=1 but {message}")
        pytest.skip(message)
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    asyncio.run(_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file; each test gets a copy."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


TABLES = (
    "hall_events, idempotency_keys, ratings, bookings, booking_holders, slots, print_jobs, tickets, "
    "visits, number_sequences, counter_services, counters, devices, users, services, halls, "
    "scheduler_leader"
)


def empty_postgres(url: str) -> str:
    """Empty every table of the session's PostgreSQL database and return its URL."""

    async def truncate() -> None:
        conn = await asyncpg.connect(_plain_dsn(url))
        try:
            await conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
        finally:
            await conn.close()

    asyncio.run(truncate())
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty, migrated database: SQLite, then PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "onedoor.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    return empty_postgres(request.getfixturevalue("postgres_url"))


@pytest.fixture
def pg_url(postgres_url: str) -> str:
    """An empty PostgreSQL database (for tests that need several server processes)."""
    return empty_postgres(postgres_url)


REDIS_URL = os.environ.get("ONEDOOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
HOW_TO_RUN_REDIS = (
    "Redis is not reachable at {url} ({error}). Start it (redis-server --daemonize yes "
    "--bind 127.0.0.1 --port 6379 --save '' --appendonly no) or set ONEDOOR_TEST_REDIS_URL."
)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis server the multi-process tests fan out through."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except (redis.exceptions.ConnectionError, OSError) as exc:
        message = HOW_TO_RUN_REDIS.format(url=REDIS_URL, error=exc)
        if REQUIRE_SERVICES:
            pytest.fail(f"ONEDOOR_REQUIRE_SERVICES=1 but {message}")
        pytest.skip(message)
    return REDIS_URL


@pytest.fixture(autouse=True)
def forget_kept_plans_and_projections() -> Iterator[None]:
    """Each test has a database of its own, whose hall 1 is not the last test's hall 1:
    what a process keeps per hall for a while (booking plans, wait projections, no-show
    rates, what issuing last read of a hall) must not cross from one test into the next."""
    from booking import plan
    from queue_server.service import estimates, floor, queue, staffing

    yield
    plan.forget()
    estimates.forget()
    floor.forget()
    staffing.forget()
    queue.forget()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(MONDAY_10AM_SHANGHAI)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        var_dir=tmp_path / "var",
        database_url=database_url,
        public_base_url="https://hall.example.org",
        db_pool_size=25,
        # Tests run the jobs themselves, at the moments they choose.
        scheduler=False,
    )


@pytest.fixture
async def bus(settings: Settings, clock: FixedClock) -> AsyncIterator[Bus]:
    engine = create_engine(settings.effective_database_url, pool_size=settings.db_pool_size)
    try:
        yield Bus(session_factory(engine), clock)
    finally:
        await estimates.stop()  # a projection refreshed beside the test's answers
        await engine.dispose()


class ServerError(AssertionError):
    pass


async def _fail_on_5xx(response: httpx.Response) -> None:
    # The suite fails on any 500 it sees, whatever the test asserted.
    if response.status_code >= 500:
        raise ServerError(
            f"{response.request.method} {response.request.url} answered {response.status_code}"
        )


@pytest.fixture
async def client(settings: Settings, clock: FixedClock) -> AsyncIterator[AsyncTestClient[Any]]:
    """The app over HTTP (in process), failing the test on any 5xx answer."""
    app = create_app(settings, clock)
    async with AsyncTestClient(app, base_url="http://testserver.local") as test_client:
        test_client.event_hooks["response"].append(_fail_on_5xx)
        yield test_client


@pytest.fixture(scope="module")
def private_redis() -> Iterator[str]:
    """A Redis of the module's own (tests.servers), for tests whose app must remember
    (``tests.support.remembering``)."""
    from tests.servers import PrivateRedis

    broker = PrivateRedis().start()
    yield broker.url
    broker.stop()
