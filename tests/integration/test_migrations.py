"""Migrations are the only way the schema is made: they must match the tables exactly."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from queue_server.db.engine import create_engine
from queue_server.db.migrate import alembic_config, upgrade_async
from queue_server.db.tables import Base


async def test_migrated_schema_matches_the_tables(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:

            def diff(sync_conn: Any) -> list[Any]:
                context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
                return list(compare_metadata(context, Base.metadata))

            assert await conn.run_sync(diff) == []
    finally:
        await engine.dispose()


async def test_downgrade_and_upgrade_again(database_url: str) -> None:
    await upgrade_async(database_url, "head")  # already there: nothing to do

    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "base")
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
        assert set(tables) <= {"alembic_version"}
        await upgrade_async(database_url)
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
        assert {"tickets", "halls", "hall_events", "number_sequences"} <= set(tables)
    finally:
        await engine.dispose()
