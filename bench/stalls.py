"""What the server's loop watch (queue_server/loop_watch.py) logged during a phase: how
often a worker's event loop was held ``LOOP_STALL_MS`` or more, the longest, and where; and
the garbage collections that held a worker's interpreter as long."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

LOOP_STALL_MS = 15
"""The bench's servers log every event-loop stall this long or longer
(``ONEDOOR_LOOP_STALL_MS``)."""
HELD = re.compile(
    r"event loop held (\d+) ms \(its thread ran (\d+) ms of it, the process's other "
    r"threads (\d+) ms\); mostly in (.+)$",
    re.MULTILINE,
)
COLLECTED = re.compile(
    r"garbage collection of generation (\d) held the interpreter (\d+) ms \((\d+) ms of CPU"
)


def mark(log_path: Path) -> int:
    """Where the server log ends now (read from here after the phase)."""
    return log_path.stat().st_size if log_path.exists() else 0


def note(log_path: Path, since: int) -> str:
    """Two lines for the phase's notes: the stalls logged after ``since``, and the
    garbage collections."""
    with log_path.open("rb") as log:
        log.seek(since)
        text = log.read().decode(errors="replace")
    found = HELD.findall(text)
    held = [(int(ms), place.strip()) for ms, _, _, place in found]
    if not held:
        line = f"    event loop held {LOOP_STALL_MS} ms or more: never"
    else:
        places = Counter(place for _, place in held)
        place, times = places.most_common(1)[0]
        line = (
            f"    event loop held {LOOP_STALL_MS} ms or more: {len(held)} times, "
            f"{sum(ms for ms, _ in held)} ms in all{_split(found)}, the longest "
            f"{max(ms for ms, _ in held)} ms; most often ({times}) in {place[:160]}"
        )
    return f"{line}\n{_collections(text)}"


def _split(found: list[tuple[str, str, str, str]]) -> str:
    """What ran while the loop was held: the loop's own thread, the process's other
    threads, or neither (the process off the CPU, or blocked), each stall's own."""
    told = [(int(ms), int(own), int(others)) for ms, own, others, _ in found]
    own = sum(o for _, o, _ in told)
    others = sum(o for _, _, o in told)
    neither = sum(max(0, ms - o - p) for ms, o, p in told)
    return (
        f" (its thread ran {own} ms, the process's other threads {others} ms, neither {neither} ms)"
    )


def _collections(text: str) -> str:
    """The line of the garbage collections logged in ``text``."""
    found = [(int(g), int(ms), int(cpu)) for g, ms, cpu in COLLECTED.findall(text)]
    if not found:
        return f"    garbage collections of {LOOP_STALL_MS} ms or more: none"
    per = Counter(g for g, _, _ in found)
    generation, longest, cpu = max(found, key=lambda f: f[1])
    return (
        f"    garbage collections of {LOOP_STALL_MS} ms or more: {len(found)} ("
        + ", ".join(f"{n} of generation {g}" for g, n in sorted(per.items()))
        + f"), {sum(ms for _, ms, _ in found)} ms in all ({sum(c for _, _, c in found)} ms "
        f"of CPU), the longest {longest} ms ({cpu} ms of CPU, generation {generation})"
    )
