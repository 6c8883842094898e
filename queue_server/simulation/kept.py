"""A hall's last kept simulation, as the manager pages read it."""

from __future__ import annotations

import re
from typing import Any

from queue_server.db.tables import HallRow
from queue_server.service.errors import NotFound
from queue_server.service.unit_of_work import UnitOfWork

from .figures import FIGURES
from .saved import latest_run

HOW_TO_MAKE = (
    "run `onedoor simulate --from-hall {hall} --save` or use Run simulation on the manager page"
)
# The name ``history.scenario_from_hall`` gives a scenario measured from a hall.
_FROM_HALL = re.compile(r"^hall (\d+) history \((\d+) days\)$")


async def kept_simulation(uow: UnitOfWork, hall_id: int) -> dict[str, Any]:
    """The hall's last kept simulation: ``report.as_json`` with its ``id`` and
    ``created_at``, how to show each figure (``figure_formats``: percent, digits) and, when
    it was measured from a hall, the hall and the days of history (``history``, else None).

    Raises NotFound for an unknown hall, and NotFound saying how to make one when the hall
    has none kept.
    """
    if await uow.session.get(HallRow, hall_id) is None:
        raise NotFound(f"no hall with id {hall_id}")
    run = await latest_run(uow, hall_id)
    if run is None:
        raise NotFound(
            f"hall {hall_id} has no simulation kept yet: " + HOW_TO_MAKE.format(hall=hall_id)
        )
    return {
        **run,
        "figure_formats": {f.key: {"percent": f.percent, "digits": f.digits} for f in FIGURES},
        "history": history_of(run),
    }


def history_of(result: dict[str, Any]) -> dict[str, int] | None:
    """``{"hall_id", "days"}`` of a simulation measured from a hall's history, else None."""
    scenario = result.get("scenario") or {}
    found = _FROM_HALL.match(str(scenario.get("name", "")))
    if found is None or scenario.get("source") != f"hall:{found.group(1)}":
        return None
    return {"hall_id": int(found.group(1)), "days": int(found.group(2))}
