"""What a waiting visitor is told (estimate v2), with one projection per hall state.

Every follower of a hall re-reads their ticket when the queue moves; the projection of the
whole queue answers all of them, so it is made once per hall and event number (followers
asking at the same moment wait for the one being made) and kept a few seconds (the clock
moves on; the next event makes a new one anyway).
"""

from __future__ import annotations

import asyncio
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
_making: dict[tuple[int, int], asyncio.Future[_Projection]] = {}


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
        key = (hall.id, hall_row.event_seq)
        making = _making.get(key)
        if making is not None:
            # Another follower's request is projecting this very state: share its result.
            kept = await asyncio.shield(making)
        else:
            making = asyncio.get_running_loop().create_future()
            _making[key] = making
            try:
                now = uow.clock.now()
                floor = await hall_floor(uow, hall.id, business_day(now, hall.tz), now)
                kept = _Projection(
                    time.monotonic(), hall_row.event_seq, floor, project(floor, choose)
                )
                making.set_result(kept)
            except BaseException as exc:
                making.set_exception(exc)
                making.exception()  # retrieved: waiters get it, nobody warns
                raise
            finally:
                del _making[key]
            if len(_projections) >= KEEP_HALLS:
                _projections.clear()
            _projections[hall.id] = kept
        if not any(c.ticket_id == ticket_id for c in kept.floor.waiting):
            # Made before this ticket joined (its own transaction, not committed then).
            now = uow.clock.now()
            floor = await hall_floor(uow, hall.id, business_day(now, hall.tz), now)
            kept = _Projection(time.monotonic(), hall_row.event_seq, floor, project(floor, choose))
    assert kept is not None
    return tell(ticket_id, kept.floor, choose, kept.called)


def forget() -> None:
    """Drop what this process keeps (tests: each has a database of its own)."""
    _projections.clear()
