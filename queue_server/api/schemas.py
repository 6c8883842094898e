"""Request bodies. msgspec validates them; a mismatch answers 400 naming the field."""

from __future__ import annotations

from datetime import datetime
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


Moment = Annotated[datetime, Meta(tz=True, description="ISO 8601 with its offset")]
Phone = Annotated[str, Meta(min_length=1, max_length=32, description="mainland mobile number")]
IdTail = Annotated[str, Meta(min_length=1, max_length=32, description="last 4 of the ID")]
VisitorName = Annotated[str, Meta(min_length=1, max_length=100)]
Priority = Annotated[str, Meta(min_length=1, max_length=32)]


class BookIn(Struct, forbid_unknown_fields=True):
    service_id: Id
    slot_start: Moment
    name: VisitorName
    phone: Phone
    id_tail: IdTail | None = None


class StaffBookIn(Struct, forbid_unknown_fields=True):
    """Assisted booking: staff book for a visitor, who may have no phone."""

    service_id: Id
    slot_start: Moment
    name: VisitorName
    phone: Phone | None = None
    id_tail: IdTail | None = None


class PhoneIn(Struct, forbid_unknown_fields=True):
    phone: Phone


class RescheduleIn(Struct, forbid_unknown_fields=True):
    slot_start: Moment
    phone: Phone | None = None
    """Online: the booking's phone number. Staff leave it out."""


class CheckInIn(Struct, forbid_unknown_fields=True):
    """Name the booking by ``code`` (typed or scanned), or by ``phone``; add ``id_tail``
    or ``service_id`` when several of the day's bookings share the phone."""

    code: Annotated[str, Meta(min_length=1, max_length=300)] | None = None
    phone: Phone | None = None
    id_tail: IdTail | None = None
    service_id: Id | None = None
    priority: Priority = "none"


class CalendarIn(Struct, forbid_unknown_fields=True):
    breaks: list[list[str]] = msgspec.field(default_factory=list)
    holidays: list[str] = msgspec.field(default_factory=list)
    special_days: dict[str, list[list[str]]] = msgspec.field(default_factory=dict)
    remote_checkin: bool | None = None
    day_close_time: Annotated[str, Meta(pattern="^[0-2][0-9]:[0-5][0-9]$")] | None = None


class RatingIn(Struct, forbid_unknown_fields=True):
    stars: Annotated[int, Meta(ge=1, le=5)]
    comment: Annotated[str, Meta(max_length=500)] = ""
