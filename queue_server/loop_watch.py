"""Warnings when a serving process's event loop is held: every request of the process
waits while one piece of work runs without giving the loop back, so a stall's length is
what the slowest kiosk, clerk or screen of that moment waits on top of its own work.

The loop runs a beat every ``TICK_SECONDS`` (a timer that notes the time and the CPU
clocks); a beat ``threshold`` seconds or more late notes the stall itself, so none is
missed. A thread looks at the last beat as often and, once one is late, samples where the
loop's thread is until the next beat comes; each stall is logged at WARNING, by that
thread, with how late and where the loop was most often meanwhile (OneDoor's frames when
there are any; "not sampled" when the thread itself got no turn). The thread only reads
the beat's time: it sends the loop nothing and takes no lock the loop holds. (An earlier
version asked the loop, through its self-pipe, to set a threading event every tick, a lock
handed between the two threads: 4% of a busy worker's loop, docs/performance.md,
"2026-12-06, late".) Off unless ``ONEDOOR_LOOP_STALL_MS`` is set (``Settings``); the
bench turns it on and counts the warnings of each phase (bench/README.md). A late beat
also counts time the process was not given the CPU at all (another process on the core),
and C code runs with no Python frame of its own (a stall
placed in the loop's own ``run`` is either). So each stall says how much of it the loop's
thread ran on the CPU and how much the process's other threads did (the CPU clocks the
beats read, from the beat before the stall to the one after, less the watch's own): its
thread's own work (in ``run``: C code, such as the driver decoding a big result), the
interpreter held by another thread (a projection played beside, a garbage collection
there), or, where neither ran, the process off the CPU or blocked in a system call.

A garbage collection holds the interpreter, and with it the loop, without a Python frame to
sample: each one ``threshold`` or longer, on any thread, is logged too, with its generation
and the CPU it took (``gc.callbacks``; the hook only notes it, the watch's thread writes
the line, the last ones as it ends). A stall sampled inside the hook is placed as "a garbage
collection, in" the code that set it off. Two watches in one process would each log every
such collection. Its time far beyond its CPU means the process lost the core meanwhile
(docs/performance.md, "2026-12-07, evening").
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TypeVar

log = logging.getLogger(__name__)
_T = TypeVar("_T")
TICK_SECONDS = 0.01
"""How often the loop beats, and the watch looks at its last beat."""
SAMPLE_SECONDS = 0.002
"""How often the loop's thread is looked at while its beat is late."""
OURS = ("queue_server", "booking", "display", "printer")
MESSAGE = (
    "event loop held %.0f ms (its thread ran %.0f ms of it, the process's other threads "
    "%.0f ms); mostly in %s"
)
COLLECTION_MESSAGE = (
    "garbage collection of generation %d held the interpreter %.0f ms (%.0f ms of CPU; "
    "%d objects freed)"
)
NOT_SAMPLED = (
    "(not sampled: the process had no CPU, or C code such as a garbage collection held "
    "the interpreter)"
)


class LoopWatch:
    """Watches the running event loop of the thread that starts it."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.stalls = 0
        self.longest = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._beat = 0.0
        """When the loop last ran its beat (``time.perf_counter``)."""
        self._clocks: tuple[float, float, float, float] | None = None
        """At the last beat: when, the loop thread's CPU, the process's, the watch's."""
        self._watch_cpu = 0.0
        """The watch thread's own CPU, as of its last look (``time.thread_time``)."""
        self._held: deque[tuple[float, float, float, float]] = deque(maxlen=1000)
        """Stalls the loop found in its beats, not logged yet: the beat it was late after,
        how late (s), the CPU its thread ran meanwhile, the process's other threads'."""
        self._timer: asyncio.TimerHandle | None = None
        self.collections = 0
        """Garbage collections that held the interpreter ``threshold`` or more."""
        self._collecting: tuple[float, float] | None = None
        """When the collection under way began: ``time.perf_counter``, ``time.thread_time``."""
        self._collected: deque[tuple[int, float, float, int]] = deque(maxlen=1000)
        """Long collections not logged yet: generation, seconds, seconds of CPU, freed."""

    def start(self) -> None:
        """Start watching the running loop (call it on the loop's thread), and the
        process's garbage collections."""
        if self._thread is not None:
            raise RuntimeError("a loop watch starts once")
        loop = asyncio.get_running_loop()
        self._beat_on(loop)
        gc.callbacks.append(self._on_collection)
        self._thread = threading.Thread(
            target=self._watch, args=(loop, threading.get_ident()), name="loop-watch", daemon=True
        )
        self._thread.start()

    @property
    def watching(self) -> bool:
        """Whether its thread is watching a loop."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop watching (call it on the loop's thread, as ``start``)."""
        self._stop.set()
        self._unhook()
        if self._timer is not None:
            self._timer.cancel()
        if self._thread is not None:
            self._thread.join(timeout=1.0)  # its thread logs those left as it ends

    def _unhook(self) -> None:
        if self._on_collection in gc.callbacks:
            gc.callbacks.remove(self._on_collection)

    def _on_collection(self, phase: str, info: dict[str, int]) -> None:
        """A ``gc.callbacks`` hook, on whichever thread collects (holding the interpreter,
        so every thread of the process waits): a collection ``threshold`` or longer is
        kept for the watch's thread to log (nothing is written from inside the
        collector)."""
        if phase == "start":
            self._collecting = (time.perf_counter(), time.thread_time())
            return
        began, self._collecting = self._collecting, None
        if began is None:
            return
        held = time.perf_counter() - began[0]
        if held >= self.threshold:
            cpu = time.thread_time() - began[1]
            self._collected.append((info["generation"], held, cpu, info["collected"]))

    def _log_collections(self) -> None:
        for generation, held, cpu, freed in _drained(self._collected):
            self.collections += 1
            log.warning(COLLECTION_MESSAGE, generation, held * 1000, cpu * 1000, freed)

    def _beat_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop's beat: it notes the time and the CPU clocks, and a beat that comes
        ``threshold`` late notes the stall (the loop's own measure: nothing the watch's
        thread could miss while it waited for the interpreter too), with the CPU its own
        thread and the process's others ran since the beat before."""
        now, own, process = time.perf_counter(), time.thread_time(), time.process_time()
        watch = self._watch_cpu
        if self._clocks is not None:
            before, own_before, process_before, watch_before = self._clocks
            held = now - before - TICK_SECONDS
            if held >= self.threshold:
                ran = own - own_before
                others = process - process_before - ran - (watch - watch_before)
                self._held.append((before, held, ran, max(0.0, others)))
        self._clocks = (now, own, process, watch)
        self._beat = now  # after the stall is noted: the watch then finds it
        if not self._stop.is_set():
            self._timer = loop.call_later(TICK_SECONDS, self._beat_on, loop)

    def _log_stalls(self, places: dict[float, str]) -> None:
        """Log the stalls the loop noted, each where the watch saw the loop most often
        (``places``, by the beat it was late after) if it was looking."""
        for beat, held, ran, others in _drained(self._held):
            self.stalls += 1
            self.longest = max(self.longest, held)
            place = places.pop(beat, NOT_SAMPLED)
            log.warning(MESSAGE, held * 1000, ran * 1000, others * 1000, place)

    def _watch(self, loop: asyncio.AbstractEventLoop, loop_thread: int) -> None:
        places: dict[float, str] = {}
        try:
            self._watching(loop, loop_thread, places)
        finally:  # stopped, or its loop ended without ``stop``: the hook goes with it
            self._unhook()
            self._log_collections()
            self._log_stalls(places)

    def _watching(
        self, loop: asyncio.AbstractEventLoop, loop_thread: int, places: dict[float, str]
    ) -> None:
        while not self._stop.wait(TICK_SECONDS):
            self._watch_cpu = time.thread_time()
            self._log_collections()
            self._log_stalls(places)
            places.clear()  # any left were of stalls shorter than the threshold
            if loop.is_closed():
                return
            beat = self._beat
            if time.perf_counter() - beat < TICK_SECONDS + SAMPLE_SECONDS:
                continue
            # The beat is late: the loop is held. Where it is, until it beats again.
            seen: Counter[str] = Counter()
            while self._beat == beat:
                if self._stop.is_set() or loop.is_closed():
                    return
                frame = sys._current_frames().get(loop_thread)
                if frame is not None:
                    seen[where(frame)] += 1
                time.sleep(SAMPLE_SECONDS)
            if seen:
                places[beat] = seen.most_common(1)[0][0]


def _drained(noted: deque[_T]) -> Iterator[_T]:
    """What ``noted`` holds, oldest first, each taken out as it is given (another thread
    may append meanwhile: ``popleft`` is atomic)."""
    while True:
        try:
            yield noted.popleft()
        except IndexError:
            return


def where(frame: FrameType, depth: int = 3) -> str:
    """The innermost ``depth`` of OneDoor's frames under ``frame`` (the innermost frames of
    any code when none is OneDoor's), innermost first: ``file.py:line function``. Caught in
    the watch's own collection hook, the place is ``a garbage collection, in`` the code that
    set it off."""
    ours: list[str] = []
    anyone: list[str] = []
    current: FrameType | None = frame
    prefix = ""
    if current is not None and current.f_code is LoopWatch._on_collection.__code__:
        prefix = "a garbage collection, in "  # the hook runs only inside a collection
        current = current.f_back
    while current is not None and len(ours) < depth:
        code = current.f_code
        place = f"{Path(code.co_filename).name}:{current.f_lineno} {code.co_name}"
        if any(f"/{package}/" in code.co_filename for package in OURS):
            ours.append(place)
        elif len(anyone) < depth:
            anyone.append(place)
        current = current.f_back
    return prefix + " < ".join(ours or anyone)
