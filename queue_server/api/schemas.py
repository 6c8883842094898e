"""Request bodies. msgspec validates them; a mismatch answers 400 naming the field."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

Name = Annotated[str, Meta(min_length=1, max_length=200)]
Prefix = Annotated[str, Meta(pattern="^[A-Z]{1,2}$", description="1-2 capital letters, e.g. A")]
Minutes = Annotated[int, Meta(ge=1, le=480)]
Note = Annotated[str, Meta(max_length=2000)]
Id = Annotated[int, Meta(ge=1)]
Hours = dict[str, list[list[str]]]
Level = Literal["primary", "secondary"]


def given(struct: Struct) -> dict[str, Any]:
    """The fields a PATCH body actually sets."""
    return {
        f: getattr(struct, f) for f in struct.__struct_fields__ if getattr(struct, f) is not UNSET
    }


class LoginIn(Struct, forbid_unknown_fields=True):
    username: Annotated[str, Meta(min_length=1, max_length=64)]
    password: Annotated[str, Meta(min_length=1, max_length=200)]


class HallIn(Struct, forbid_unknown_fields=True):
    name_zh: Name
    name_en: Name
    opening_hours: Hours
    timezone: str | None = None
    priority_boosts: dict[str, Annotated[int, Meta(ge=0, le=240)]] | None = None
    secondary_after_minutes: Annotated[int, Meta(ge=0, le=480)] = 20


class HallPatch(Struct, forbid_unknown_fields=True):
    name_zh: Name | UnsetType = UNSET
    name_en: Name | UnsetType = UNSET
    timezone: str | UnsetType = UNSET
    opening_hours: Hours | UnsetType = UNSET
    priority_boosts: dict[str, Annotated[int, Meta(ge=0, le=240)]] | UnsetType = UNSET
    secondary_after_minutes: Annotated[int, Meta(ge=0, le=480)] | UnsetType = UNSET


class ServiceIn(Struct, forbid_unknown_fields=True):
    name_zh: Name
    name_en: Name
    prefix: Prefix
    typical_minutes: Minutes
    documents: list[Name] = msgspec.field(default_factory=list)


class ServicePatch(Struct, forbid_unknown_fields=True):
    name_zh: Name | UnsetType = UNSET
    name_en: Name | UnsetType = UNSET
    prefix: Prefix | UnsetType = UNSET
    typical_minutes: Minutes | UnsetType = UNSET
    documents: list[Name] | UnsetType = UNSET
    active: bool | UnsetType = UNSET


class ProfileIn(Struct, forbid_unknown_fields=True):
    service_id: Id
    level: Level = "primary"


class CounterIn(Struct, forbid_unknown_fields=True):
    number: Annotated[int, Meta(ge=1, le=9999)]
    name: Name
    profile: list[ProfileIn] = msgspec.field(default_factory=list)


class CounterPatch(Struct, forbid_unknown_fields=True):
    number: Annotated[int, Meta(ge=1, le=9999)] | UnsetType = UNSET
    name: Name | UnsetType = UNSET
    profile: list[ProfileIn] | UnsetType = UNSET


class StaffIn(Struct, forbid_unknown_fields=True):
    username: Annotated[str, Meta(pattern="^[A-Za-z0-9_.-]{3,64}$")]
    password: Annotated[str, Meta(min_length=10, max_length=200)]
    role: Literal["manager", "clerk"]
    display_name: Annotated[str, Meta(max_length=200)] = ""


class StaffPatch(Struct, forbid_unknown_fields=True):
    display_name: Name | UnsetType = UNSET
    password: Annotated[str, Meta(min_length=10, max_length=200)] | UnsetType = UNSET
    active: bool | UnsetType = UNSET


class DeviceIn(Struct, forbid_unknown_fields=True):
    kind: Literal["kiosk", "board", "printer"]
    name: Name
    kiosk_id: Id | None = None
    """For a printer: the kiosk whose tickets it prints."""


class IssueIn(Struct, forbid_unknown_fields=True):
    service_id: Id
    priority: Annotated[str, Meta(min_length=1, max_length=32)] = "none"


class FinishIn(Struct, forbid_unknown_fields=True):
    outcome: Literal["done", "missing_documents", "needs_escalation", "other"]
    note: Note | None = None


class TransferIn(Struct, forbid_unknown_fields=True):
    service_id: Id
    note: Note | None = None


class NoticeIn(Struct, forbid_unknown_fields=True):
    notice: Annotated[str, Meta(max_length=500)]


class ReprintIn(Struct, forbid_unknown_fields=True):
    printer_id: Id | None = None
