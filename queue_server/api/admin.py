"""Hall configuration for managers (and admins, who also create halls and managers)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from booking import calendar_change
from booking import config as booking_config
from queue_server.domain.model import DEFAULT_PRIORITY_BOOSTS
from queue_server.service import accounts, hall_config
from queue_server.service.accounts import DeviceKind, NewDevice, NewUser, Principal, Role
from queue_server.service.bus import Bus
from queue_server.service.hall_config import CounterOut, DeviceOut, HallOut, ServiceOut, StaffOut
from queue_server.settings import Settings

from .auth import ADMIN, MANAGERS, STAFF, roles
from .schemas import (
    CounterIn,
    CounterPatch,
    DeviceIn,
    HallIn,
    HallPatch,
    NoticeIn,
    ServiceIn,
    ServicePatch,
    StaffIn,
    StaffPatch,
    given,
)


def _profile(entries: Any) -> list[tuple[int, str]]:
    return [(e.service_id, e.level) for e in entries]


class HallAdminController(Controller):
    path = "/api/halls"
    tags = ["hall configuration"]
    opt = roles(*MANAGERS)

    @get("/", opt=roles(*STAFF))
    async def list_halls(
        self, bus: NamedDependency[Bus], principal: NamedDependency[Principal]
    ) -> list[HallOut]:
        """Halls the caller manages (all of them for an admin)."""
        only = None if principal.role == Role.ADMIN else principal.hall_id
        return await bus.run(hall_config.list_halls, only)

    @post("/", opt=roles(*ADMIN))
    async def create_hall(
        self, data: JSONBody[HallIn], bus: NamedDependency[Bus], settings: NamedDependency[Settings]
    ) -> HallOut:
        """Create a hall. Opening hours: {"mon": [["08:30", "12:00"], ["13:30", "17:00"]], ...}."""
        fields: dict[str, Any] = {
            "name_zh": data.name_zh,
            "name_en": data.name_en,
            "timezone": data.timezone or settings.default_timezone,
            "opening_hours": data.opening_hours,
            "secondary_after_minutes": data.secondary_after_minutes,
            "repeat_window_days": data.repeat_window_days,
            "personal_data_days": data.personal_data_days,
            "priority_boosts": (
                data.priority_boosts
                if data.priority_boosts is not None
                else dict(DEFAULT_PRIORITY_BOOSTS)
            ),
        }
        return await bus.run(hall_config.create_hall, fields)

    @get("/{hall_id:int}", opt=roles(*STAFF))
    async def get_hall(self, hall_id: FromPath[int], bus: NamedDependency[Bus]) -> HallOut:
        return await bus.run(hall_config.get_hall, hall_id)

    @patch("/{hall_id:int}")
    async def update_hall(
        self, hall_id: FromPath[int], data: JSONBody[HallPatch], bus: NamedDependency[Bus]
    ) -> HallOut:
        """Change the hall. New ``opening_hours`` that close times visitors have booked are
        refused (409, ``extra.stranded`` lists them) unless ``cancel_stranded`` and a
        ``reason`` confirm it: then those bookings are cancelled and each visitor told."""
        fields = given(data)
        confirm = bool(fields.pop("cancel_stranded", False))
        reason = calendar_change.check_reason(confirm, fields.pop("reason", None))
        if "opening_hours" in fields:
            return await bus.run(calendar_change.change_opening_hours, hall_id, fields, reason)
        return await bus.run(hall_config.update_hall, hall_id, fields)

    @put("/{hall_id:int}/notice")
    async def set_notice(
        self, hall_id: FromPath[int], data: JSONBody[NoticeIn], bus: NamedDependency[Bus]
    ) -> HallOut:
        """Set the scrolling notice on the hall's boards; an empty string clears it."""
        return await bus.run(hall_config.set_notice, hall_id, data.notice)

    @get("/{hall_id:int}/services", opt=roles(*STAFF))
    async def list_services(
        self, hall_id: FromPath[int], bus: NamedDependency[Bus]
    ) -> list[ServiceOut]:
        return await bus.run(hall_config.list_services, hall_id)

    @post("/{hall_id:int}/services")
    async def create_service(
        self, hall_id: FromPath[int], data: JSONBody[ServiceIn], bus: NamedDependency[Bus]
    ) -> ServiceOut:
        """Add a matter; ``prefix`` starts its ticket numbers (A → A001, A002, ...)."""
        return await bus.run(hall_config.create_service, hall_id, given(data))

    @patch("/{hall_id:int}/services/{service_id:int}")
    async def update_service(
        self,
        hall_id: FromPath[int],
        service_id: FromPath[int],
        data: JSONBody[ServicePatch],
        bus: NamedDependency[Bus],
    ) -> ServiceOut:
        """Rename a matter, change its typical minutes, documents or prefix, or (de)activate
        it (places of booked-online matters derived from typical minutes follow at once)."""
        fields = given(data)
        updated = await bus.run(hall_config.update_service, hall_id, service_id, fields)
        if "typical_minutes" in fields or "active" in fields:
            await bus.run(booking_config.follow_counters, hall_id)
        return updated

    @get("/{hall_id:int}/counters", opt=roles(*STAFF))
    async def list_counters(
        self, hall_id: FromPath[int], bus: NamedDependency[Bus]
    ) -> list[CounterOut]:
        return await bus.run(hall_config.list_counters, hall_id)

    @post("/{hall_id:int}/counters")
    async def create_counter(
        self, hall_id: FromPath[int], data: JSONBody[CounterIn], bus: NamedDependency[Bus]
    ) -> CounterOut:
        """Add a counter and the matters it serves, each at primary or secondary level
        (places of booked-online matters derived from their counters follow at once)."""
        created = await bus.run(
            hall_config.create_counter, hall_id, data.number, data.name, _profile(data.profile)
        )
        await bus.run(booking_config.follow_counters, hall_id)
        return created

    @patch("/{hall_id:int}/counters/{counter_id:int}")
    async def update_counter(
        self,
        hall_id: FromPath[int],
        counter_id: FromPath[int],
        data: JSONBody[CounterPatch],
        bus: NamedDependency[Bus],
    ) -> CounterOut:
        """Rename, renumber, or replace the profile (the whole list) of a counter."""
        fields = given(data)
        profile = fields.pop("profile", None)
        updated = await bus.run(
            hall_config.update_counter,
            hall_id,
            counter_id,
            fields,
            _profile(profile) if profile is not None else None,
        )
        if profile is not None:
            await bus.run(booking_config.follow_counters, hall_id)
        return updated

    @get("/{hall_id:int}/staff")
    async def list_staff(self, hall_id: FromPath[int], bus: NamedDependency[Bus]) -> list[StaffOut]:
        return await bus.run(hall_config.list_staff, hall_id)

    @post("/{hall_id:int}/staff")
    async def create_staff(
        self,
        hall_id: FromPath[int],
        data: JSONBody[StaffIn],
        bus: NamedDependency[Bus],
        principal: NamedDependency[Principal],
    ) -> NewUser:
        """Add a clerk (managers and admins) or a manager (admins only)."""
        return await bus.run(
            accounts.create_user,
            data.username,
            data.password,
            Role(data.role),
            hall_id,
            data.display_name,
            by_role=principal.role,
        )

    @patch("/{hall_id:int}/staff/{user_id:int}")
    async def update_staff(
        self,
        hall_id: FromPath[int],
        user_id: FromPath[int],
        data: JSONBody[StaffPatch],
        bus: NamedDependency[Bus],
        principal: NamedDependency[Principal],
    ) -> StaffOut:
        """Rename, reset the password of, or deactivate (``active: false``) a staff member;
        a manager's account only by an admin."""
        return await bus.run(
            hall_config.update_staff, hall_id, user_id, given(data), principal.role
        )

    @get("/{hall_id:int}/devices")
    async def list_devices(
        self, hall_id: FromPath[int], bus: NamedDependency[Bus]
    ) -> list[DeviceOut]:
        return await bus.run(hall_config.list_devices, hall_id)

    @post("/{hall_id:int}/devices")
    async def create_device(
        self, hall_id: FromPath[int], data: JSONBody[DeviceIn], bus: NamedDependency[Bus]
    ) -> NewDevice:
        """Register a kiosk, board or print agent. The answer holds its token, shown only once."""
        return await bus.run(
            accounts.create_device, hall_id, DeviceKind(data.kind), data.name, data.kiosk_id
        )

    @delete("/{hall_id:int}/devices/{device_id:int}", status_code=200)
    async def revoke_device(
        self, hall_id: FromPath[int], device_id: FromPath[int], bus: NamedDependency[Bus]
    ) -> DeviceOut:
        """Revoke a device's token; the device is refused from then on."""
        return await bus.run(hall_config.revoke_device, hall_id, device_id)
