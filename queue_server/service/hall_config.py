"""Hall configuration for managers: halls, matters, counters and their profiles, staff, devices."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from queue_server.db.tables import (
    CounterRow,
    CounterServiceRow,
    DeviceRow,
    HallRow,
    ServiceRow,
    UserRow,
)
from queue_server.domain.events import HallNoticeChanged
from queue_server.domain.hours import OpeningHours
from queue_server.domain.model import NO_PRIORITY, PREFIX_PATTERN, ServiceLevel

from . import sessions
from .accounts import hash_password
from .errors import Conflict, Forbidden, Invalid, NotFound
from .unit_of_work import UnitOfWork


@dataclass(frozen=True)
class HallOut:
    id: int
    name_zh: str
    name_en: str
    timezone: str
    opening_hours: dict[str, list[list[str]]]
    priority_boosts: dict[str, int]
    secondary_after_minutes: int
    notice: str
    repeat_window_days: int = 30
    """A visit for the same matter by the same visitor within this many days is a repeat."""
    personal_data_days: int = 180
    """Visitors' names, phone numbers, ID tails and their hashes are erased after this many
    days (privacy.py)."""


@dataclass(frozen=True)
class ServiceOut:
    id: int
    hall_id: int
    name_zh: str
    name_en: str
    prefix: str
    typical_minutes: int
    documents: list[str]
    active: bool
    desk: bool = False
    """The hall's "can't get it done" desk: escalated visits queue for this matter."""


@dataclass(frozen=True)
class ProfileEntry:
    service_id: int
    level: str


@dataclass(frozen=True)
class CounterOut:
    id: int
    hall_id: int
    number: int
    name: str
    state: str
    clerk_id: int | None
    profile: list[ProfileEntry]


@dataclass(frozen=True)
class StaffOut:
    id: int
    username: str
    display_name: str
    role: str
    hall_id: int | None
    active: bool


@dataclass(frozen=True)
class DeviceOut:
    id: int
    hall_id: int
    kind: str
    name: str
    token_hint: str
    created_at: datetime
    revoked_at: datetime | None
    kiosk_id: int | None
    connected: bool
    status: dict[str, Any] | None
    """A print agent's last report: online, paper, cover, problem."""
    last_seen_at: datetime | None


def hall_out(r: HallRow) -> HallOut:
    return HallOut(
        r.id, r.name_zh, r.name_en, r.timezone, r.opening_hours, r.priority_boosts,
        r.secondary_after_minutes, r.notice, r.repeat_window_days, r.personal_data_days,
    )  # fmt: skip


def service_out(r: ServiceRow) -> ServiceOut:
    return ServiceOut(
        r.id, r.hall_id, r.name_zh, r.name_en, r.prefix, r.typical_minutes, r.documents, r.active,
        r.desk,
    )  # fmt: skip


def staff_out(r: UserRow) -> StaffOut:
    return StaffOut(r.id, r.username, r.display_name, r.role, r.hall_id, r.active)


def device_out(r: DeviceRow) -> DeviceOut:
    return DeviceOut(
        r.id, r.hall_id, r.kind, r.name, r.token_hint, r.created_at, r.revoked_at, r.kiosk_id,
        r.connected, r.status, r.last_seen_at,
    )  # fmt: skip


def _check_hall_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Validate what a hall create/update gives and return it in stored form."""
    out = dict(fields)
    if "timezone" in out:
        try:
            ZoneInfo(out["timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            raise Invalid(
                "timezone", f"{out['timezone']!r} is not a known timezone, e.g. Asia/Shanghai"
            ) from None
    if "opening_hours" in out:
        try:
            out["opening_hours"] = OpeningHours.from_json(out["opening_hours"]).to_json()
        except ValueError as exc:
            raise Invalid("opening_hours", str(exc)) from None
    if "priority_boosts" in out:
        boosts = out["priority_boosts"]
        if NO_PRIORITY in boosts:
            raise Invalid("priority_boosts", f"{NO_PRIORITY!r} is reserved for no priority")
        if any(not 0 <= v <= 240 for v in boosts.values()):
            raise Invalid("priority_boosts", "each boost is 0 to 240 minutes of waiting")
    return out


def _check_keep_days(window: int, keep: int) -> None:
    """Repeat visits are found by the hashes kept: they must outlive the repeat window."""
    if keep < window:
        raise Invalid(
            "personal_data_days",
            f"keep personal data at least as long as the repeat window ({window} days), or "
            "shorten the window first",
        )


async def _hall_row(uow: UnitOfWork, hall_id: int) -> HallRow:
    row = await uow.session.get(HallRow, hall_id)
    if row is None:
        raise NotFound(f"no hall with id {hall_id}")
    return row


async def create_hall(uow: UnitOfWork, fields: Mapping[str, Any]) -> HallOut:
    values = _check_hall_fields(fields)
    _check_keep_days(values.get("repeat_window_days", 30), values.get("personal_data_days", 180))
    row = HallRow(
        event_seq=0, notice="", created_at=uow.clock.now(), visitor_salt=secrets.token_hex(32),
        **values,
    )  # fmt: skip
    uow.session.add(row)
    await uow.commit()
    return hall_out(row)


async def update_hall(uow: UnitOfWork, hall_id: int, fields: Mapping[str, Any]) -> HallOut:
    row = await _hall_row(uow, hall_id)
    for key, value in _check_hall_fields(fields).items():
        setattr(row, key, value)
    _check_keep_days(row.repeat_window_days, row.personal_data_days)
    await uow.commit()
    return hall_out(row)


async def list_halls(uow: UnitOfWork, only: int | None) -> list[HallOut]:
    stmt = select(HallRow).order_by(HallRow.id)
    if only is not None:
        stmt = stmt.where(HallRow.id == only)
    return [hall_out(r) for r in (await uow.session.execute(stmt)).scalars()]


async def get_hall(uow: UnitOfWork, hall_id: int) -> HallOut:
    return hall_out(await _hall_row(uow, hall_id))


def _check_prefix(fields: Mapping[str, Any]) -> None:
    if "prefix" in fields and not PREFIX_PATTERN.match(fields["prefix"]):
        raise Invalid("prefix", "one or two capital letters A-Z, e.g. A or SB")


async def _check_one_desk(
    uow: UnitOfWork, hall_id: int, fields: Mapping[str, Any], own: int
) -> None:
    """A hall has at most one desk matter (escalations need one place to go)."""
    if not fields.get("desk"):
        return
    other = await uow.session.scalar(
        select(ServiceRow.id).where(
            ServiceRow.hall_id == hall_id, ServiceRow.desk.is_(True), ServiceRow.id != own
        )
    )
    if other is not None:
        raise Invalid("desk", f"matter {other} is this hall's desk already; unset it there first")


async def _commit_desk(uow: UnitOfWork, hall_id: int, fields: Mapping[str, Any], own: int) -> None:
    """Commit; when another matter became the desk meanwhile (the one-desk index refused
    this one), say which, as the check before would have."""
    try:
        await uow.commit()
    except IntegrityError:
        if not fields.get("desk"):
            raise
        await uow.session.rollback()
        await _check_one_desk(uow, hall_id, fields, own)
        raise


async def create_service(uow: UnitOfWork, hall_id: int, fields: Mapping[str, Any]) -> ServiceOut:
    await _hall_row(uow, hall_id)
    _check_prefix(fields)
    await _check_one_desk(uow, hall_id, fields, 0)
    row = ServiceRow(hall_id=hall_id, active=True, **{"documents": [], **fields})
    uow.session.add(row)
    await _commit_desk(uow, hall_id, fields, 0)
    return service_out(row)


async def _service_row(uow: UnitOfWork, hall_id: int, service_id: int) -> ServiceRow:
    row = await uow.session.get(ServiceRow, service_id)
    if row is None or row.hall_id != hall_id:
        raise NotFound(f"hall {hall_id} has no matter with id {service_id}")
    return row


async def update_service(
    uow: UnitOfWork, hall_id: int, service_id: int, fields: Mapping[str, Any]
) -> ServiceOut:
    row = await _service_row(uow, hall_id, service_id)
    _check_prefix(fields)
    await _check_one_desk(uow, hall_id, fields, service_id)
    for key, value in fields.items():
        setattr(row, key, value)
    await _commit_desk(uow, hall_id, fields, service_id)
    return service_out(row)


async def list_services(
    uow: UnitOfWork, hall_id: int, *, active_only: bool = False
) -> list[ServiceOut]:
    await _hall_row(uow, hall_id)
    stmt = select(ServiceRow).where(ServiceRow.hall_id == hall_id).order_by(ServiceRow.id)
    if active_only:
        stmt = stmt.where(ServiceRow.active.is_(True))
    return [service_out(r) for r in (await uow.session.execute(stmt)).scalars()]


async def _counter_out(uow: UnitOfWork, row: CounterRow) -> CounterOut:
    profile = await uow.repo.profile(row.id)
    return CounterOut(
        row.id, row.hall_id, row.number, row.name, row.state, row.clerk_id,
        [ProfileEntry(sid, str(level)) for sid, level in sorted(profile.items())],
    )  # fmt: skip


async def _set_profile(
    uow: UnitOfWork, hall_id: int, counter_id: int, profile: list[tuple[int, str]]
) -> None:
    service_ids = [sid for sid, _ in profile]
    if len(set(service_ids)) != len(service_ids):
        raise Invalid("profile", "each matter may appear once")
    known = set(
        (
            await uow.session.execute(
                select(ServiceRow.id).where(
                    ServiceRow.hall_id == hall_id, ServiceRow.id.in_(service_ids)
                )
            )
        ).scalars()
    )
    for sid, level in profile:
        if sid not in known:
            raise Invalid("profile", f"hall {hall_id} has no matter with id {sid}")
        if level not in set(ServiceLevel):
            raise Invalid("profile", f"level {level!r} must be primary or secondary")
    await uow.session.execute(
        delete(CounterServiceRow).where(CounterServiceRow.counter_id == counter_id)
    )
    for sid, level in profile:
        uow.session.add(CounterServiceRow(counter_id=counter_id, service_id=sid, level=level))


async def create_counter(
    uow: UnitOfWork, hall_id: int, number: int, name: str, profile: list[tuple[int, str]]
) -> CounterOut:
    await _hall_row(uow, hall_id)
    row = CounterRow(hall_id=hall_id, number=number, name=name, state="closed")
    uow.session.add(row)
    try:
        await uow.session.flush()
    except IntegrityError:
        raise Conflict(f"hall {hall_id} already has a counter number {number}") from None
    await _set_profile(uow, hall_id, row.id, profile)
    await uow.commit()
    return await _counter_out(uow, row)


async def _counter_row(uow: UnitOfWork, hall_id: int, counter_id: int) -> CounterRow:
    row = await uow.session.get(CounterRow, counter_id)
    if row is None or row.hall_id != hall_id:
        raise NotFound(f"hall {hall_id} has no counter with id {counter_id}")
    return row


async def update_counter(
    uow: UnitOfWork,
    hall_id: int,
    counter_id: int,
    fields: Mapping[str, Any],
    profile: list[tuple[int, str]] | None,
) -> CounterOut:
    row = await _counter_row(uow, hall_id, counter_id)
    for key, value in fields.items():
        setattr(row, key, value)
    try:
        await uow.session.flush()
    except IntegrityError:
        raise Conflict(
            f"hall {hall_id} already has a counter number {fields.get('number')}"
        ) from None
    if profile is not None:
        await _set_profile(uow, hall_id, counter_id, profile)
    await uow.commit()
    return await _counter_out(uow, row)


async def list_counters(uow: UnitOfWork, hall_id: int) -> list[CounterOut]:
    await _hall_row(uow, hall_id)
    rows = (
        await uow.session.execute(
            select(CounterRow).where(CounterRow.hall_id == hall_id).order_by(CounterRow.number)
        )
    ).scalars()
    return [await _counter_out(uow, r) for r in rows]


async def counter_hall_id(uow: UnitOfWork, counter_id: int) -> int | None:
    """The hall a counter belongs to (None for an unknown counter: the route will 404)."""
    return await uow.session.scalar(select(CounterRow.hall_id).where(CounterRow.id == counter_id))


async def get_counter(uow: UnitOfWork, counter_id: int) -> CounterOut:
    row = await uow.session.get(CounterRow, counter_id)
    if row is None:
        raise NotFound(f"no counter with id {counter_id}")
    return await _counter_out(uow, row)


async def list_staff(uow: UnitOfWork, hall_id: int) -> list[StaffOut]:
    await _hall_row(uow, hall_id)
    rows = (
        await uow.session.execute(
            select(UserRow).where(UserRow.hall_id == hall_id).order_by(UserRow.id)
        )
    ).scalars()
    return [staff_out(r) for r in rows]


async def update_staff(
    uow: UnitOfWork, hall_id: int, user_id: int, fields: Mapping[str, Any], by_role: str
) -> StaffOut:
    """Change a staff member; only an admin may change a manager (as only one may add one)."""
    row = await uow.session.get(UserRow, user_id)
    if row is None or row.hall_id != hall_id:
        raise NotFound(f"hall {hall_id} has no staff member with id {user_id}")
    if row.role == "manager" and by_role != "admin":
        raise Forbidden("only an admin may change a manager's account")
    values = dict(fields)
    if "password" in values:
        row.password_hash = await hash_password(values.pop("password"))
    for key, value in values.items():
        setattr(row, key, value)
    if "password" in fields or fields.get("active") is False:
        # A reset password or a deactivated account ends every session it had at once.
        await sessions.end_sessions(uow, row.id)
    await uow.commit()
    return staff_out(row)


async def list_devices(uow: UnitOfWork, hall_id: int) -> list[DeviceOut]:
    await _hall_row(uow, hall_id)
    rows = (
        await uow.session.execute(
            select(DeviceRow).where(DeviceRow.hall_id == hall_id).order_by(DeviceRow.id)
        )
    ).scalars()
    return [device_out(r) for r in rows]


async def revoke_device(uow: UnitOfWork, hall_id: int, device_id: int) -> DeviceOut:
    row = await uow.session.get(DeviceRow, device_id)
    if row is None or row.hall_id != hall_id:
        raise NotFound(f"hall {hall_id} has no device with id {device_id}")
    if row.revoked_at is None:
        row.revoked_at = uow.clock.now()
    await uow.commit()
    return device_out(row)


async def set_notice(uow: UnitOfWork, hall_id: int, notice: str) -> HallOut:
    """Change the scrolling notice on the hall's boards (empty to clear it)."""
    row = await _hall_row(uow, hall_id)
    row.notice = notice.strip()
    uow.collect([HallNoticeChanged(hall_id, uow.clock.now(), row.notice)])
    await uow.commit()
    return hall_out(row)
