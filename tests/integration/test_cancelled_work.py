"""A request cancelled mid-transaction (a websocket that went away, a client that hung up)
still ends its transaction cleanly: the connection goes back to the pool rolled back, and
nothing is logged as an error. Litestar and anyio cancel level-triggered: every await after
the first cancellation is cancelled too, the rollback included, unless it is shielded."""

from __future__ import annotations

import asyncio
import logging

import anyio
import pytest
from sqlalchemy import text

from queue_server.service.bus import Bus
from queue_server.service.unit_of_work import UnitOfWork


async def test_work_cancelled_by_a_cancel_scope_rolls_back_and_logs_nothing(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    started = asyncio.Event()

    async def slow(uow: UnitOfWork) -> None:
        await uow.session.execute(text("SELECT 1"))
        started.set()
        await asyncio.sleep(30)

    caplog.set_level(logging.WARNING)
    for _ in range(5):
        started.clear()
        with anyio.move_on_after(5) as scope:
            async with anyio.create_task_group() as group:
                group.start_soon(bus.run, slow)
                await started.wait()
                scope.cancel()
        assert scope.cancelled_caught
    await asyncio.sleep(0.2)  # the shielded endings finish
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    engine = bus.sessions.kw["bind"]
    assert engine.pool.checkedout() == 0
    # And the database is usable: the next unit of work runs.

    async def one(uow: UnitOfWork) -> int:
        return int((await uow.session.execute(text("SELECT 1"))).scalar_one())

    assert await bus.run(one) == 1


async def test_a_read_cancelled_with_a_session_on_its_driver_connection_gives_it_back(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    """A read that held its connection first (``UnitOfWork.connect``: on PostgreSQL the
    driver's) and then made a session on it, as a kiosk's answer making the hall's
    projection does, cancelled: the session ends and the connection goes back to the
    pool, each of them, with nothing logged (a second shielded ending was never reached:
    the connection stayed checked out until the garbage collector threw it away)."""
    started = asyncio.Event()

    async def slow(uow: UnitOfWork) -> None:
        await uow.connect()
        await uow.session.execute(text("SELECT 1"))
        started.set()
        await asyncio.sleep(30)

    caplog.set_level(logging.WARNING)
    engine = bus.reads.kw["bind"]
    for _ in range(5):
        started.clear()
        with anyio.move_on_after(5) as scope:
            async with anyio.create_task_group() as group:
                group.start_soon(bus.read, slow)
                await started.wait()
                scope.cancel()
        assert scope.cancelled_caught
    async with asyncio.timeout(5):
        while engine.pool.checkedout():  # noqa: ASYNC110 - until the shielded endings end
            await asyncio.sleep(0.01)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
