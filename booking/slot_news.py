"""News of slots given places back or stored again, from a commit of this process, for
whoever keeps slots in memory (``booking.slot_memory``). The store tells it here; the
memories listen: so the store needs nothing of the memory (no import circle)."""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

Freed = tuple[int, int, datetime]
"""(hall, matter, slot start) of a slot with one place more."""
Changed = tuple[int, int]
"""(hall, matter) whose stored slots changed."""


class Listener(Protocol):
    def freed(self, hall_id: int, service_id: int, start: datetime) -> None: ...

    def slots_changed(self, hall_id: int, service_id: int) -> None: ...


_LISTENERS: weakref.WeakSet[Listener] = weakref.WeakSet()


def listen(listener: Listener) -> None:
    """``listener`` hears every commit's news while it lives."""
    _LISTENERS.add(listener)


def forget_after_commit(freed: Iterable[Freed], changed: Iterable[Changed]) -> None:
    """A commit of this process gave places back or stored slots: every listener of the
    process forgets them (other processes hear of it through the events)."""
    freed, changed = list(freed), list(changed)
    for listener in list(_LISTENERS):
        for hall_id, service_id, start in freed:
            listener.freed(hall_id, service_id, start)
        for hall_id, service_id in changed:
            listener.slots_changed(hall_id, service_id)
