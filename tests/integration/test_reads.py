"""``Bus.read``: work that only reads runs on PostgreSQL outside a transaction (no BEGIN
and COMMIT round trips) and, on both databases, cannot write or lock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select, text, update

from queue_server.db.engine import ReadOnly
from queue_server.db.tables import HallRow
from queue_server.service.bus import Bus
from queue_server.service.unit_of_work import UnitOfWork
from tests.support import hall_with_matter


async def in_transaction(uow: UnitOfWork) -> bool:
    """Whether the driver's connection is in a transaction after a statement ran."""
    await uow.session.execute(select(1))
    connection = await uow.session.connection()
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    if hasattr(driver, "is_in_transaction"):  # asyncpg
        return bool(driver.is_in_transaction())
    return bool(driver.in_transaction)  # aiosqlite


async def name_of(uow: UnitOfWork, hall_id: int) -> str:
    return str(await uow.session.scalar(select(HallRow.name_en).where(HallRow.id == hall_id)))


async def test_a_read_sees_what_is_committed_and_on_postgresql_opens_no_transaction(
    bus: Bus, database_url: str
) -> None:
    hall_id, _ = await hall_with_matter(bus)
    assert await bus.read(name_of, hall_id) == "Hall"

    async def renamed(uow: UnitOfWork) -> None:
        await uow.session.execute(
            update(HallRow).where(HallRow.id == hall_id).values(name_en="Renamed")
        )
        await uow.commit()

    await bus.run(renamed)
    assert await bus.read(name_of, hall_id) == "Renamed"
    # SQLite's reads keep their transaction: its write lock orders them with the writers.
    assert await bus.read(in_transaction) is database_url.startswith("sqlite")
    assert await bus.run(in_transaction) is True


async def test_a_read_that_tries_to_write_or_lock_is_refused_and_changes_nothing(
    bus: Bus,
) -> None:
    hall_id, _ = await hall_with_matter(bus)

    async def changes_the_row(uow: UnitOfWork) -> None:
        row = await uow.repo.hall_row(hall_id)
        assert row is not None
        row.name_en = "Written in a read"
        await uow.session.flush()

    async def updates(uow: UnitOfWork) -> None:
        await uow.session.execute(
            update(HallRow).where(HallRow.id == hall_id).values(name_en="Written in a read")
        )

    async def writes_by_text(uow: UnitOfWork) -> None:
        await uow.session.execute(
            text("UPDATE halls SET name_en = 'Written in a read' WHERE id = :id"), {"id": hall_id}
        )

    async def truncates(uow: UnitOfWork) -> None:  # not a query at all
        await uow.session.execute(text("TRUNCATE halls CASCADE"))

    async def selects_into(uow: UnitOfWork) -> None:
        await uow.session.execute(text("SELECT * INTO copied_halls FROM halls"))

    async def commits(uow: UnitOfWork) -> None:
        await uow.commit()

    async def locks(uow: UnitOfWork) -> None:
        await uow.session.execute(select(HallRow).where(HallRow.id == hall_id).with_for_update())

    async def begins_on_the_driver(uow: UnitOfWork) -> None:
        await uow.begin_on_driver()

    def connected_first(work: Callable[[UnitOfWork], Awaitable[None]]) -> Any:
        """``work`` in a read that held its connection first (``UnitOfWork.connect``: on
        PostgreSQL the driver's, its session then made on that connection)."""

        async def connected(uow: UnitOfWork) -> None:
            await uow.connect()
            await work(uow)

        return connected

    works = (changes_the_row, updates, writes_by_text, truncates, selects_into, commits, locks)
    for work in (*works, *map(connected_first, (*works, begins_on_the_driver))):
        with pytest.raises(ReadOnly, match="run it as a command"):
            await bus.read(work)
    assert await bus.read(name_of, hall_id) == "Hall"
