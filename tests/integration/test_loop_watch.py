"""Warnings when a serving process's event loop is held (queue_server/loop_watch.py): a
real loop, a real watching thread, real stalls."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import time
from dataclasses import replace

import pytest
from litestar.testing import AsyncTestClient

from queue_server.app import create_app
from queue_server.clock import FixedClock
from queue_server.loop_watch import LoopWatch
from queue_server.settings import Settings


def _hold_the_loop(seconds: float) -> None:
    """Work that never gives the event loop back (as a long projection played on it did)."""
    time.sleep(seconds)


async def _answered_a_few_times(watch: LoopWatch) -> None:
    """Give the watch a few of its rounds with the loop free."""
    for _ in range(5):
        await asyncio.sleep(0.02)


async def test_a_held_loop_is_reported_with_how_long_and_where(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="queue_server.loop_watch")
    watch = LoopWatch(threshold=0.1)
    watch.start()
    try:
        await _answered_a_few_times(watch)
        _hold_the_loop(0.3)
        await _answered_a_few_times(watch)
    finally:
        watch.stop()
    assert watch.stalls == 1
    assert 0.25 <= watch.longest < 5  # asked at most a tick after the hold began
    [warning] = [r for r in caplog.records if r.name == "queue_server.loop_watch"]
    assert warning.getMessage().startswith("event loop held ")
    assert "test_loop_watch.py" in warning.getMessage()
    assert "_hold_the_loop" in warning.getMessage(), "where the loop was held"


async def test_a_loop_that_keeps_answering_is_not_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch = LoopWatch(threshold=0.5)
    watch.start()
    try:
        for _ in range(40):
            _hold_the_loop(0.005)  # short pieces of work, the loop given back between them
            await asyncio.sleep(0.005)
    finally:
        watch.stop()
    assert watch.stalls == 0
    assert "event loop held" not in caplog.text


async def test_the_app_watches_its_loop_when_told_to(settings: Settings, clock: FixedClock) -> None:
    """``ONEDOOR_LOOP_STALL_MS`` turns the watch on for the app's life (its loop: the test
    client serves the app on a loop of its own); off by default."""
    app = create_app(settings, clock)
    async with AsyncTestClient(app, base_url="http://testserver.local") as client:
        assert (await client.get("/healthz")).status_code == 200
        assert app.state.loop_watch is None
    app = create_app(replace(settings, loop_stall_ms=100.0), clock)
    async with AsyncTestClient(app, base_url="http://testserver.local") as client:
        assert (await client.get("/healthz")).status_code == 200
        watch = app.state.loop_watch
        assert watch.threshold == 0.1 and watch.watching
    assert not watch.watching, "stopped with the app"


def test_the_watch_ends_with_its_loop_if_never_stopped() -> None:
    """A loop that ends without ``stop`` (a lifespan whose cleanup failed before it) leaves
    no thread sampling behind it."""
    loop = asyncio.new_event_loop()

    async def watched() -> LoopWatch:
        watch = LoopWatch(threshold=0.1)
        watch.start()
        await asyncio.sleep(0.05)
        return watch

    try:
        watch = loop.run_until_complete(watched())
        assert watch.watching
    finally:
        loop.close()
    deadline = time.monotonic() + 5
    while watch.watching and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not watch.watching, "the thread ended once its loop was closed"


FULL_COLLECTION = re.compile(
    r"garbage collection of generation 2 held the interpreter (\d+) ms "
    r"\((\d+) ms of CPU; (\d+) objects freed\)"
)


async def _watched_collection(threshold: float, cycles: int) -> LoopWatch:
    """A watch with ``threshold`` over a full collection of ``cycles`` lists that refer to
    themselves (only the cyclic collector frees them), stopped after."""
    watch = LoopWatch(threshold=threshold)
    watch.start()
    try:
        for _ in range(cycles):
            found: list[object] = []
            found.append(found)
        gc.collect()
        await _answered_a_few_times(watch)
    finally:
        watch.stop()
    return watch


async def test_a_long_garbage_collection_is_reported_with_its_generation_and_cpu(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A collection holds the interpreter with no Python frame to sample: one over the
    threshold is logged with its generation, how long, the CPU it took and what it freed;
    once the watch stops, collections are no longer watched."""
    caplog.set_level(logging.WARNING, logger="queue_server.loop_watch")
    kept = [[n] for n in range(300_000)]  # objects a full collection walks
    watch = await _watched_collection(threshold=0.001, cycles=1000)
    assert watch.collections >= 1
    full = [
        match for r in caplog.records
        if (match := FULL_COLLECTION.fullmatch(r.getMessage())) is not None
    ]  # fmt: skip
    assert full, caplog.text
    held, cpu, freed = (int(n) for n in full[-1].groups())
    assert held >= 1 and cpu >= 0 and freed > 0
    assert watch._on_collection not in gc.callbacks
    caplog.clear()
    gc.collect()
    assert "garbage collection" not in caplog.text, "not watched once stopped"
    assert len(kept) == 300_000


async def test_short_collections_are_not_reported(caplog: pytest.LogCaptureFixture) -> None:
    watch = await _watched_collection(threshold=5.0, cycles=100)
    assert watch.collections == 0
    assert "garbage collection" not in caplog.text
