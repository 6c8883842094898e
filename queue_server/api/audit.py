"""The audit log, read-only: managers browse and download their hall's entries."""

from __future__ import annotations

from datetime import date
from typing import Annotated
from zoneinfo import ZoneInfo

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from queue_server.service import audit, hall_config
from queue_server.service.audit import AuditEntry
from queue_server.service.bus import Bus

from .auth import MANAGERS, roles
from .statistics import Format, download

Start = Annotated[date | None, QueryParameter(name="from", description="first hall date")]
End = Annotated[date | None, QueryParameter(name="to", description="last hall date")]
Action = Annotated[
    str | None,
    QueryParameter(max_length=64, description="only actions starting so, e.g. staff or device"),
]


class AuditController(Controller):
    path = "/api/halls/{hall_id:int}/audit"
    tags = ["audit"]
    opt = roles(*MANAGERS)

    @get("/")
    async def audit_log(
        self,
        hall_id: FromPath[int],
        bus: NamedDependency[Bus],
        start: Start = None,
        end: End = None,
        action: Action = None,
    ) -> list[AuditEntry]:
        """Privileged actions of hall days ``from`` to ``to`` (default the last 7), newest
        first, at most 1,000: who (and from which address), when, what, before and after.
        Secrets show as changed, never their value. There is no route to change or delete
        an entry."""
        return await bus.run(audit.hall_log, hall_id, start, end, action)

    @get("/export")
    async def export_audit_log(
        self,
        hall_id: FromPath[int],
        bus: NamedDependency[Bus],
        start: Start = None,
        end: End = None,
        action: Action = None,
        format: Format = "xlsx",
    ) -> Response[bytes]:
        """The same entries as CSV or XLSX (the download is itself logged)."""
        entries = await bus.run(audit.hall_log, hall_id, start, end, action)
        zone = ZoneInfo((await bus.run(hall_config.get_hall, hall_id)).timezone)
        sheet = audit.audit_sheet(entries, zone)
        return await download(bus, hall_id, f"onedoor-audit-hall{hall_id}", format, [sheet])
