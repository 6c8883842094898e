"""A request cancelled mid-transaction (a websocket that went away, a client that hung up)
still ends its transaction cleanly: the connection goes back to the pool rolled back, and
nothing is logged as an error. Litestar and anyio cancel level-triggered: every await after
the first cancellation is cancelled too, the rollback included, unless it is shielded."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio
import pytest
from sqlalchemy import text

from queue_server.service.bus import Bus
from queue_server.service.unit_of_work import UnitOfWork


async def _cancelled_five_times(
    run: Callable[..., Coroutine[Any, Any, Any]], first: Callable[[UnitOfWork], Awaitable[object]]
) -> None:
    """Five units of work run by ``run`` (``bus.run``, ``bus.read``), each cancelled by an
    anyio cancel scope once ``first`` has run in it and while it waits on."""
    started = asyncio.Event()

    async def slow(uow: UnitOfWork) -> None:
        await first(uow)
        started.set()
        await asyncio.sleep(30)

    for _ in range(5):
        started.clear()
        with anyio.move_on_after(5) as scope:
            async with anyio.create_task_group() as group:
                group.start_soon(run, slow)
                await started.wait()
                scope.cancel()
        assert scope.cancelled_caught


async def _none_checked_out(engine: Any) -> None:
    """Until the pool has no connection checked out (the shielded endings finish)."""
    async with asyncio.timeout(5):
        while engine.pool.checkedout():  # noqa: ASYNC110 - a state, not an event
            await asyncio.sleep(0.01)


async def _select_one(uow: UnitOfWork) -> None:
    await uow.session.execute(text("SELECT 1"))


async def test_work_cancelled_by_a_cancel_scope_rolls_back_and_logs_nothing(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    await _cancelled_five_times(bus.run, _select_one)
    await _none_checked_out(bus.sessions.kw["bind"])
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
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

    async def connected_then_session(uow: UnitOfWork) -> None:
        await uow.connect()
        await _select_one(uow)

    caplog.set_level(logging.WARNING)
    await _cancelled_five_times(bus.read, connected_then_session)
    await _none_checked_out(bus.reads.kw["bind"])
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
