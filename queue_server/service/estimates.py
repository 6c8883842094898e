"""What a waiting visitor is told (estimate v2), with one projection per hall state.

Every follower of a hall re-reads their ticket when the queue moves; the projection of the
whole queue answers all of them, so it is made once per hall and event number and kept a
few seconds (the clock moves on; the next event makes a new one anyway).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from queue_server.db.repository import hall_from_row, policy_config
from queue_server.db.tables import HallRow
from queue_server.domain.estimate import Told, project, tell
from queue_server.domain.floor import Floor
from queue_server.domain.hours import business_day
from queue_server.domain.policy import chooser

from .floor import hall_floor
from .unit_of_work import UnitOfWork

KEEP_SECONDS = 5.0
KEEP_HALLS = 1024


@dataclass(frozen=True)
class _Projection:
    made: float
    seq: int
    floor: Floor
    called: dict[int, datetime]


_projections: dict[int, _Projection] = {}


async def told(uow: UnitOfWork, hall_row: HallRow, ticket_id: int) -> Told | None:
    """What the visitor of waiting ticket ``ticket_id`` is told now (None: no open counter
    serves their matter, so nobody can say)."""
    hall = hall_from_row(hall_row)
    choose = chooser(policy_config(hall), hall.tz)
    kept = _projections.get(hall.id)
    fresh = (
        kept is not None
        and kept.seq == hall_row.event_seq
        and time.monotonic() - kept.made < KEEP_SECONDS
        and any(c.ticket_id == ticket_id for c in kept.floor.waiting)
    )
    if not fresh:
        now = uow.clock.now()
        floor = await hall_floor(uow, hall.id, business_day(now, hall.tz), now)
        kept = _Projection(time.monotonic(), hall_row.event_seq, floor, project(floor, choose))
        if len(_projections) >= KEEP_HALLS:
            _projections.clear()
        _projections[hall.id] = kept
    assert kept is not None
    return tell(ticket_id, kept.floor, choose, kept.called)


def forget() -> None:
    """Drop what this process keeps (tests: each has a database of its own)."""
    _projections.clear()
