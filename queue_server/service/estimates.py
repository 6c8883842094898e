"""What a waiting visitor is told (estimate v2), with one projection per hall state.

Every follower of a hall re-reads their ticket when the queue moves, and every kiosk
answer tells the new ticket's wait; the projection of the whole queue answers all of them,
so it is made once per hall at a time (whoever asks meanwhile waits for it, or for the next
one when they need a newer state) and kept a few seconds (the clock moves on; the next
event makes a new one anyway).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select

from queue_server.db.repository import hall_from_row, policy_config
from queue_server.db.tables import HallRow
from queue_server.domain.estimate import Told, project, queue_order, tell
from queue_server.domain.floor import Floor
from queue_server.domain.hours import business_day
from queue_server.domain.policy import Chooser, chooser

from .floor import hall_floor
from .unit_of_work import UnitOfWork

log = logging.getLogger(__name__)
KEEP_SECONDS = 5.0
KEEP_HALLS = 1024


@dataclass(frozen=True)
class _Projection:
    made: float
    seq: int
    floor: Floor
    called: dict[int, datetime]
    orders: dict[int, list[int]] = field(default_factory=dict)
    """Per matter no open counter serves, its queue's order (made when first asked)."""


_projections: dict[int, _Projection] = {}
_making: dict[int, tuple[int, asyncio.Future[_Projection]]] = {}
"""Per hall, the projection being made: the event number its floor includes, and it."""


async def told(uow: UnitOfWork, hall_row: HallRow, ticket_id: int) -> Told | None:
    """What the visitor of waiting ticket ``ticket_id`` is told now (None: no open counter
    serves their matter, so nobody can say).

    ``hall_row`` was read in the caller's transaction, after the ticket was committed: any
    projection of a floor that includes the hall's event ``hall_row.event_seq`` includes the
    ticket. One projection is made per hall at a time; whoever needs a newer one than the
    one being made waits for it and then makes the next, which every request waiting
    meanwhile shares. So a rush of kiosks costs one projection per projection time, not
    one per ticket, and each visitor is still told from a floor that holds their ticket.
    """
    hall = hall_from_row(hall_row)
    choose = chooser(policy_config(hall), hall.tz)
    need = hall_row.event_seq
    while True:
        kept = _projections.get(hall.id)
        if kept is not None and kept.seq >= need and time.monotonic() - kept.made < KEEP_SECONDS:
            break
        making = _making.get(hall.id)
        if making is not None:
            try:
                shared = await asyncio.shield(making[1])
            except Exception as exc:
                log.info("hall %s: a shared projection failed (%s); making one", hall.id, exc)
                continue
            if shared.seq >= need:
                kept = shared
                break
            continue
        kept = await _make(uow, hall.id, need, hall.tz, choose)
        break
    made = kept

    def orders(service_id: int) -> list[int]:
        if service_id not in made.orders:
            made.orders[service_id] = queue_order(service_id, made.floor, choose)
        return made.orders[service_id]

    return tell(ticket_id, kept.floor, choose, kept.called, orders)


async def _make(
    uow: UnitOfWork, hall_id: int, need: int, tz: ZoneInfo, choose: Chooser
) -> _Projection:
    making: asyncio.Future[_Projection] = asyncio.get_running_loop().create_future()
    _making[hall_id] = (need, making)
    try:
        # Everything committed up to this number is in the floor read next.
        seq = await uow.session.scalar(select(HallRow.event_seq).where(HallRow.id == hall_id))
        _making[hall_id] = (max(need, seq or 0), making)
        now = uow.clock.now()
        floor = await hall_floor(uow, hall_id, business_day(now, tz), now)
        kept = _Projection(time.monotonic(), max(need, seq or 0), floor, project(floor, choose))
        making.set_result(kept)
    except BaseException as exc:
        making.set_exception(exc)
        making.exception()  # retrieved: waiters get it, nobody warns
        raise
    finally:
        if _making.get(hall_id, (0, None))[1] is making:
            del _making[hall_id]
    if len(_projections) >= KEEP_HALLS:
        _projections.clear()
    _making.clear()
    _projections[hall_id] = kept
    return kept


def forget() -> None:
    """Drop what this process keeps (tests: each has a database of its own)."""
    _projections.clear()
    _making.clear()
