"""The throwaway PostgreSQL database the benchmark runs against."""

from __future__ import annotations

import asyncio
import os
import re

import asyncpg
from sqlalchemy.engine import URL, make_url

URL_ENV = "ONEDOOR_BENCH_POSTGRES_URL"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/onedoor_bench"
MAINTENANCE_DATABASE = "postgres"
SAFE_NAME = re.compile(r"^[a-z_][a-z0-9_]*bench[a-z0-9_]*$")
CONNECT_TIMEOUT_S = 5.0


class DatabaseError(RuntimeError):
    """The bench database could not be dropped and recreated."""


def bench_url() -> URL:
    """The bench database (``ONEDOOR_BENCH_POSTGRES_URL``); its name must contain "bench"
    because every run drops and recreates it."""
    url = make_url(os.environ.get(URL_ENV, DEFAULT_URL))
    if not SAFE_NAME.match(url.database or ""):
        raise ValueError(
            f"{URL_ENV}: database {url.database!r} is dropped on every run, so its name must "
            "be lower-case letters, digits and underscores, and contain 'bench'"
        )
    return url


def server_url(url: URL) -> str:
    """The URL a OneDoor server is given (asyncpg driver), password included."""
    return url.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


async def _connect(url: URL, database: str) -> asyncpg.Connection:
    return await asyncpg.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        database=database,
        timeout=CONNECT_TIMEOUT_S,
    )


async def connect(url: URL) -> asyncpg.Connection:
    """A connection to the bench database itself."""
    return await _connect(url, str(url.database))


async def _probe(url: URL) -> None:
    connection = await _connect(url, MAINTENANCE_DATABASE)
    await connection.close()


async def _recreate(url: URL) -> None:
    connection = await _connect(url, MAINTENANCE_DATABASE)
    try:
        # The name was checked against SAFE_NAME, so it needs no quoting.
        await connection.execute(f"DROP DATABASE IF EXISTS {url.database} WITH (FORCE)")
        await connection.execute(f"CREATE DATABASE {url.database}")
    finally:
        await connection.close()


def unreachable_reason(url: URL) -> str | None:
    """None if PostgreSQL at ``url`` accepts a connection, else why not."""
    try:
        asyncio.run(_probe(url))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        where = f"{url.host or '127.0.0.1'}:{url.port or 5432}"
        return f"PostgreSQL at {where} is unreachable ({type(exc).__name__}: {exc})"
    return None


def skipped(prog: str, url: URL) -> int | None:
    """None when PostgreSQL at ``url`` accepts a connection; else say why ``prog`` does not
    run and return its exit code: 1 under ONEDOOR_REQUIRE_SERVICES=1 (CI), else 0."""
    unreachable = unreachable_reason(url)
    if unreachable is None:
        return None
    print(f"{prog}: {unreachable}")
    return 1 if os.environ.get("ONEDOOR_REQUIRE_SERVICES") == "1" else 0


def recreate_database(url: URL) -> None:
    """Drop the bench database (disconnecting any leftover session) and create it empty;
    DatabaseError if PostgreSQL refuses."""
    try:
        asyncio.run(_recreate(url))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise DatabaseError(f"could not recreate database {url.database!r}: {exc}") from exc
