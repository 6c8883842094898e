"""A kiosk's or board's heartbeat: the page says it is there, so staff hear when it is not."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from litestar import Controller, post
from litestar.di import NamedDependency

from queue_server.service import presence
from queue_server.service.accounts import Principal
from queue_server.service.bus import Bus
from queue_server.settings import Settings

from .auth import roles


@dataclass(frozen=True)
class HeartbeatOut:
    device_id: int
    seen_at: datetime
    next_in_seconds: float
    """When to send the next heartbeat: every 30 s, or four times within the silence
    that makes staff hear of it, if that is shorter."""
    silent_after_seconds: float
    """After this long without one, staff are told the device is offline."""


class DeviceController(Controller):
    path = "/api/devices"
    tags = ["devices"]

    @post("/heartbeat", opt=roles(*presence.SCREENS), status_code=200)
    async def heartbeat(
        self,
        principal: NamedDependency[Principal],
        bus: NamedDependency[Bus],
        settings: NamedDependency[Settings],
    ) -> HeartbeatOut:
        """The calling kiosk or board (by its device token) is there now."""
        assert principal.device_id is not None  # the roles are device kinds
        seen = await bus.run(presence.device_seen, principal.device_id, principal.role)
        silent = settings.screen_silent_seconds
        return HeartbeatOut(
            principal.device_id, seen, min(presence.HEARTBEAT_SECONDS, silent / 4), silent
        )
