"""Warnings when a serving process's event loop is held: every request of the process
waits while one piece of work runs without giving the loop back, so a stall's length is
what the slowest kiosk, clerk or screen of that moment waits on top of its own work.

A thread asks the loop to run a callback every ``TICK_SECONDS`` and, while it waits for
it, samples where the loop's thread is. A wait of ``threshold`` seconds or more is logged
at WARNING with how long and where the loop was most often meanwhile (OneDoor's frames
when there are any). Off unless ``ONEDOOR_LOOP_STALL_MS`` is set (``Settings``); the bench
turns it on and counts the warnings of each phase (bench/README.md). A wait also counts
time the process was not given the CPU at all (another process on the core): a stall
whose place is the loop's own C code (``run``) is usually that.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import FrameType

log = logging.getLogger(__name__)
TICK_SECONDS = 0.01
"""How often the loop is asked to answer when it is not stalled."""
SAMPLE_SECONDS = 0.002
"""How often the loop's thread is looked at while the loop has not answered."""
OURS = ("queue_server", "booking", "display", "printer")
MESSAGE = "event loop held %.0f ms; mostly in %s"
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

    def start(self) -> None:
        """Start watching the running loop (call it on the loop's thread)."""
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()
        self._thread = threading.Thread(
            target=self._watch, args=(loop, loop_thread), name="loop-watch", daemon=True
        )
        self._thread.start()

    @property
    def watching(self) -> bool:
        """Whether its thread is watching a loop."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def _watch(self, loop: asyncio.AbstractEventLoop, loop_thread: int) -> None:
        while not self._stop.is_set():
            answered = threading.Event()
            began = time.perf_counter()
            try:
                loop.call_soon_threadsafe(answered.set)
            except RuntimeError:  # the loop is closed
                return
            seen: Counter[str] = Counter()
            while not answered.wait(SAMPLE_SECONDS):
                if self._stop.is_set():
                    return
                frame = sys._current_frames().get(loop_thread)
                if frame is not None:
                    seen[where(frame)] += 1
            held = time.perf_counter() - began
            if held >= self.threshold:
                self.stalls += 1
                self.longest = max(self.longest, held)
                place = seen.most_common(1)[0][0] if seen else NOT_SAMPLED
                log.warning(MESSAGE, held * 1000, place)
            self._stop.wait(TICK_SECONDS)


def where(frame: FrameType, depth: int = 3) -> str:
    """The innermost ``depth`` of OneDoor's frames under ``frame`` (the innermost frames of
    any code when none is OneDoor's), innermost first: ``file.py:line function``."""
    ours: list[str] = []
    anyone: list[str] = []
    current: FrameType | None = frame
    while current is not None and len(ours) < depth:
        code = current.f_code
        place = f"{Path(code.co_filename).name}:{current.f_lineno} {code.co_name}"
        if any(f"/{package}/" in code.co_filename for package in OURS):
            ours.append(place)
        elif len(anyone) < depth:
            anyone.append(place)
        current = current.f_back
    return " < ".join(ours or anyone)
