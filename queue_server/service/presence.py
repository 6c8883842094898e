"""Whether the hall's screens are there: kiosks and boards send a heartbeat while their page
is open, and one that has shown up and then gone silent is reported to staff.

A device that never sent one is not reported: it may be registered before it is set up.
Print agents report over their own websocket (``printing.report_status``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update

from queue_server.db.tables import DeviceRow
from queue_server.service.errors import Invalid
from queue_server.service.unit_of_work import UnitOfWork

HEARTBEAT_SECONDS = 30
"""How often an open kiosk or board page says it is there."""
SCREENS = ("kiosk", "board")
SCREEN_OFFLINE = {"kiosk": "kiosk offline", "board": "board offline"}


async def device_seen(uow: UnitOfWork, device_id: int, kind: str) -> datetime:
    """Record that the screen ``device_id`` is there now; the moment recorded."""
    if kind not in SCREENS:
        raise Invalid(
            "device", f"only kiosks and boards send heartbeats; a {kind} reports otherwise"
        )
    now = uow.clock.now()
    await uow.session.execute(
        update(DeviceRow).where(DeviceRow.id == device_id).values(last_seen_at=now)
    )
    await uow.commit()
    return now


def screen_problem(
    kind: str, last_seen_at: datetime | None, now: datetime, silent_after: timedelta
) -> str | None:
    """ "kiosk offline" / "board offline" for a screen silent for ``silent_after``, else None."""
    if kind not in SCREENS or last_seen_at is None:
        return None
    return SCREEN_OFFLINE[kind] if now - last_seen_at > silent_after else None
