"""Simulations kept for a hall's manager pages: the last ones of each hall, as JSON."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select

from queue_server.db.tables import HallRow, SimulationRunRow
from queue_server.service.errors import NotFound
from queue_server.service.unit_of_work import UnitOfWork

KEEP = 10
"""Simulations kept per hall; older ones are dropped."""


async def save_run(uow: UnitOfWork, hall_id: int, result: dict[str, Any]) -> int:
    """Keep ``result`` (``report.as_json``) for hall ``hall_id``; return its id."""
    if await uow.session.get(HallRow, hall_id) is None:
        raise NotFound(f"no hall with id {hall_id}")
    row = SimulationRunRow(
        hall_id=hall_id,
        created_at=uow.clock.now(),
        scenario=str(result.get("scenario", {}).get("name", ""))[:200],
        result=result,
    )
    uow.session.add(row)
    await uow.session.flush()
    old = (
        select(SimulationRunRow.id)
        .where(SimulationRunRow.hall_id == hall_id)
        .order_by(SimulationRunRow.created_at.desc(), SimulationRunRow.id.desc())
        .offset(KEEP)
    )
    await uow.session.execute(delete(SimulationRunRow).where(SimulationRunRow.id.in_(old)))
    await uow.commit()
    return row.id


async def latest_run(uow: UnitOfWork, hall_id: int) -> dict[str, Any] | None:
    """The hall's last kept simulation with when it was made, or None."""
    row = await uow.session.scalar(
        select(SimulationRunRow)
        .where(SimulationRunRow.hall_id == hall_id)
        .order_by(SimulationRunRow.created_at.desc(), SimulationRunRow.id.desc())
        .limit(1)
    )
    if row is None:
        return None
    return {"id": row.id, "created_at": row.created_at.isoformat(), **row.result}
