"""The ceiling: what this machine's stack answers with no OneDoor logic at all.

A bare Litestar app served like ``onedoor serve`` (uvicorn with the same options, the same
number of workers, pinned to the same CPUs) on the same database. Its one POST handler,
``/api/halls/{hall_id}/tickets`` so that the issue phase's wrk script drives it unchanged,
parses the same JSON body and does one ``INSERT … RETURNING id`` into a scratch table in
its own transaction (with ``?statements=N``, N statements: the insert, then N - 1 reads of
the row by its key, each a round trip, as OneDoor's commands make a few), through a
SQLAlchemy async engine made by OneDoor's own ``queue_server.db.engine.create_engine``
(asyncpg or aiosqlite, the same pool, pre-ping and SQLite settings) on the URL OneDoor's
settings give (``ONEDOOR_DATABASE_URL``, else the SQLite file in ``ONEDOOR_VAR_DIR``).
No authentication, no ORM session, no events.

``python -m bench.ceiling`` serves it the way ``onedoor serve`` serves OneDoor: one uvicorn
process, or ``queue_server.serving``'s supervisor of workers each on a ``SO_REUSEPORT``
socket of its own (the benchmark starts it through ``running_ceiling``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Annotated

import msgspec
import uvicorn
from litestar import Litestar, get, post
from litestar.params import Parameter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from queue_server import serving
from queue_server.db.engine import create_engine, is_sqlite
from queue_server.settings import load_settings

from .server import RunningServer, ServerSpec, free_port, running_process, server_env

APP = "bench.ceiling:create_app"
LOG_LEVEL = "warning"
TABLE = "bench_ceiling"
INSERT = text(f"INSERT INTO {TABLE} (service_id) VALUES (:service_id) RETURNING id")
READ = text(f"SELECT service_id FROM {TABLE} WHERE id = :id")
MAX_STATEMENTS = 20
CREATE = {
    "postgresql": f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, "
    "service_id bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
    "sqlite": f"CREATE TABLE IF NOT EXISTS {TABLE} (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "service_id INTEGER NOT NULL, created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
}


class IssueIn(msgspec.Struct, forbid_unknown_fields=True):
    service_id: int


def create_app() -> Litestar:
    """The ceiling app, configured from the ``ONEDOOR_*`` variables (one per worker)."""
    settings = load_settings()
    engine: AsyncEngine = create_engine(
        settings.effective_database_url, pool_size=settings.db_pool_size
    )

    @post("/api/halls/{hall_id:int}/tickets")
    async def issue(
        hall_id: int,
        data: IssueIn,
        statements: Annotated[int, Parameter(ge=1, le=MAX_STATEMENTS)] = 1,
    ) -> dict[str, int]:
        async with engine.begin() as connection:
            new_id = (await connection.execute(INSERT, {"service_id": data.service_id})).scalar()
            for _ in range(statements - 1):
                await connection.execute(READ, {"id": new_id})
        return {"id": int(new_id or 0), "hall_id": hall_id}

    @get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return Litestar([issue, healthz], on_shutdown=[engine.dispose])


def prepare(database_url: str) -> None:
    """Create the scratch table (empty) before the ceiling's workers start."""

    async def create() -> None:
        engine = create_engine(database_url)
        try:
            async with engine.begin() as connection:
                await connection.execute(text(f"DROP TABLE IF EXISTS {TABLE}"))
                dialect = "sqlite" if is_sqlite(database_url) else "postgresql"
                await connection.execute(text(CREATE[dialect]))
        finally:
            await engine.dispose()

    asyncio.run(create())


def database_url(spec: ServerSpec, var_dir: Path) -> str:
    """The URL OneDoor is given for ``spec`` (its SQLite file when it has none)."""
    return spec.database_url or f"sqlite+aiosqlite:///{var_dir / 'onedoor.sqlite3'}"


@contextmanager
def running_ceiling(
    spec: ServerSpec, var_dir: Path, log_path: Path, cpus: frozenset[int]
) -> Iterator[RunningServer]:
    """The ceiling app served like OneDoor would be for ``spec``, on OneDoor's database."""
    port = free_port()
    env = server_env(spec, var_dir, port)
    prepare(database_url(spec, var_dir))
    command = [sys.executable, "-m", "bench.ceiling"]
    with running_process(command, env, port, spec.workers, log_path, cpus) as server:
        yield server


def run_worker(
    slot: int, count: int, host: str, port: int, log_level: str, parent: int, conn: Connection
) -> None:
    """One ceiling worker, as ``serving.run_worker`` runs one of OneDoor's (uvicorn on a
    ``SO_REUSEPORT`` socket of its own, started by the same ``Supervisor``)."""
    serving._die_with_parent(parent)
    config = uvicorn.Config(
        APP, factory=True, host=host, port=port, **serving.uvicorn_options(log_level)
    )
    serving._WorkerServer(config, conn, f"ceiling worker {slot} of {count}").run()


def main() -> int:
    """Serve the ceiling app the way ``onedoor serve`` serves OneDoor (queue_server/serving.py):
    one uvicorn process, or the same supervisor of balanced workers, with the same options."""
    settings = load_settings()
    host, port, workers = settings.host, settings.port, settings.workers
    if workers == 1 or not serving.reuseport_balances():
        options = serving.uvicorn_options(LOG_LEVEL)
        uvicorn.run(APP, factory=True, host=host, port=port, workers=workers, **options)
        return 0
    return serving.Supervisor(host, port, workers, LOG_LEVEL, target=run_worker).run()


if __name__ == "__main__":
    sys.exit(main())
