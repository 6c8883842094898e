"""Warnings when a serving process's event loop is held (queue_server/loop_watch.py): a
real loop, a real watching thread, real stalls."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import sys
import time
from collections.abc import Callable
from dataclasses import replace

import pytest
from litestar.testing import AsyncTestClient

from queue_server import loop_watch
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
    [warning] = [r for r in caplog.records if r.getMessage().startswith("event loop held")]
    assert warning.getMessage().startswith("event loop held ")
    assert "test_loop_watch.py" in warning.getMessage()
    assert "_hold_the_loop" in warning.getMessage(), "where the loop was held"
    held, own, others = _split(warning.getMessage())
    assert own + others < held / 2, "held by a blocking call: no thread of ours ran"


SPLIT = re.compile(
    r"event loop held (\d+) ms \(its thread ran (\d+) ms of it, the process's other "
    r"threads (\d+) ms\); mostly in .+"
)


def _split(message: str) -> tuple[int, int, int]:
    """A stall's time, the CPU its loop's thread ran meanwhile and the process's other
    threads', in ms, as the warning tells them."""
    found = SPLIT.fullmatch(message)
    assert found is not None, message
    held, own, others = (int(n) for n in found.groups())
    # Measured from the beat before the stall to the one after: at most a tick more.
    assert own <= held + 1000 * loop_watch.TICK_SECONDS + 1, message
    return held, own, others


def _compute(seconds: float) -> None:
    """Work on the CPU in Python, without giving the event loop back."""
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        pass


def _hold_the_interpreter(seconds: float) -> None:
    """C code that keeps the interpreter's lock from every other thread until it ends (as
    a long sort, or a garbage collection, does)."""
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        sum(range(10_000_000))


async def _one_stall(caplog: pytest.LogCaptureFixture, hold: Callable[[], object]) -> str:
    """The one stall a watch logs while ``hold`` runs (on the loop's thread; a coroutine it
    returns is awaited: a thread's work the loop waits for)."""
    caplog.set_level(logging.WARNING, logger="queue_server.loop_watch")
    watch = LoopWatch(threshold=0.05)
    watch.start()
    try:
        await _answered_a_few_times(watch)
        held = hold()
        if asyncio.iscoroutine(held):
            await held
        await _answered_a_few_times(watch)
    finally:
        watch.stop()
    warnings = [r.getMessage() for r in caplog.records if "event loop held" in r.getMessage()]
    # Noted by the loop's own beat: logged even when the watch's thread got no turn to
    # look while the interpreter was held.
    assert warnings and watch.stalls == len(warnings), caplog.text
    return max(warnings, key=lambda message: _split(message)[0])


async def test_a_stall_says_whether_the_loops_own_thread_or_another_one_ran(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Why a loop was held, told apart by the threads' CPU clocks: its own work (its
    thread ran), another thread holding the interpreter (the process's other threads
    ran: a projection played beside, a collection there), or neither (a blocking call, or
    the process off the CPU: the first test)."""
    held, own, others = _split(await _one_stall(caplog, lambda: _compute(0.3)))
    assert own > others and own >= 50, (held, own, others)
    caplog.clear()

    beside = lambda: asyncio.to_thread(_hold_the_interpreter, 0.3)  # noqa: E731
    held, own, others = _split(await _one_stall(caplog, beside))
    assert others > own and others >= 50, (held, own, others)


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
    assert watch._on_collection not in gc.callbacks, "and its collection hook is gone"


FULL_COLLECTION = re.compile(
    r"garbage collection of generation 2 held the interpreter (\d+) ms "
    r"\((\d+) ms of CPU; (\d+) objects freed\)"
)


async def _watched_collection(threshold: float, cycles: int, logged: bool) -> LoopWatch:
    """A watch with ``threshold`` over a full collection of ``cycles`` lists that refer to
    themselves (only the cyclic collector frees them), stopped after (once its thread
    logged a collection, when one is to be ``logged``)."""
    watch = LoopWatch(threshold=threshold)
    watch.start()
    try:
        for _ in range(cycles):
            found: list[object] = []
            found.append(found)
        gc.collect()
        await _answered_a_few_times(watch)
        for _ in range(500):
            if watch.collections or not logged:
                break
            await asyncio.sleep(0.01)
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
    watch = await _watched_collection(threshold=0.001, cycles=1000, logged=True)
    assert watch.collections >= 1
    full = [
        match for r in caplog.records
        if (match := FULL_COLLECTION.fullmatch(r.getMessage())) is not None
    ]  # fmt: skip
    assert full, caplog.text
    held, cpu, freed = (int(n) for n in full[-1].groups())
    assert held >= 1 and cpu >= 0 and freed > 0
    assert {
        r.threadName for r in caplog.records if r.getMessage().startswith("garbage collection")
    } == {"loop-watch"}, "noted inside the collector, written by the watch's thread"
    assert watch._on_collection not in gc.callbacks, "not watched once stopped"
    assert len(kept) == 300_000
    with pytest.raises(RuntimeError):
        watch.start()  # a watch starts once: one hook, one thread


def test_a_collection_is_noted_with_its_time_and_its_cpu_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the hook notes of one collection: its generation, its time on the clock, the
    CPU its thread spent meanwhile (less when the process lost the core) and what it freed;
    one shorter than the threshold is not noted."""
    clock, cpu = [100.0], [7.0]
    places: list[str] = []

    def perf_counter() -> float:  # and where a sample of the loop would place it
        places.append(loop_watch.where(sys._getframe(1)))
        return clock[0]

    monkeypatch.setattr(loop_watch.time, "perf_counter", perf_counter)
    monkeypatch.setattr(loop_watch.time, "thread_time", lambda: cpu[0])
    watch = LoopWatch(threshold=0.05)
    watch._on_collection("start", {"generation": 1, "collected": 0})
    clock[0] += 0.150
    cpu[0] += 0.060
    watch._on_collection("stop", {"generation": 1, "collected": 20})
    watch._on_collection("start", {"generation": 0, "collected": 0})
    clock[0] += 0.010
    watch._on_collection("stop", {"generation": 0, "collected": 3})
    assert [(g, round(s, 3), round(c, 3), n) for g, s, c, n in watch._collected] == [
        (1, 0.15, 0.06, 20)
    ]
    assert places[0].startswith("a garbage collection, in test_loop_watch.py:"), places
    assert "_on_collection" not in places[0], "the code that set it off, not the hook"


async def test_short_collections_are_not_reported(caplog: pytest.LogCaptureFixture) -> None:
    watch = await _watched_collection(threshold=5.0, cycles=100, logged=False)
    assert watch.collections == 0
    assert "garbage collection" not in caplog.text
