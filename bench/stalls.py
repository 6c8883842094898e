"""What the server's loop watch (queue_server/loop_watch.py) logged during a phase: how
often a worker's event loop was held ``LOOP_STALL_MS`` or more, the longest, and where."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

LOOP_STALL_MS = 15
"""The bench's servers log every event-loop stall this long or longer
(``ONEDOOR_LOOP_STALL_MS``)."""
HELD = re.compile(r"event loop held (\d+) ms; mostly in (.+)$", re.MULTILINE)


def mark(log_path: Path) -> int:
    """Where the server log ends now (read from here after the phase)."""
    return log_path.stat().st_size if log_path.exists() else 0


def note(log_path: Path, since: int) -> str:
    """One line for the phase's notes: the stalls logged after ``since``."""
    with log_path.open("rb") as log:
        log.seek(since)
        text = log.read().decode(errors="replace")
    held = [(int(ms), place.strip()) for ms, place in HELD.findall(text)]
    if not held:
        return f"    event loop held {LOOP_STALL_MS} ms or more: never"
    places = Counter(place for _, place in held)
    place, times = places.most_common(1)[0]
    return (
        f"    event loop held {LOOP_STALL_MS} ms or more: {len(held)} times, "
        f"{sum(ms for ms, _ in held)} ms in all, the longest {max(ms for ms, _ in held)} ms; "
        f"most often ({times}) in {place[:160]}"
    )
