"""Request bodies. msgspec validates them; a mismatch answers 400 naming the field."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from booking.domain.contact import NAME_MAX
from queue_server.service.desk import TEXT_MAX
from queue_server.service.ratings import COMMENT_MAX

Name = Annotated[str, Meta(min_length=1, max_length=200)]
Prefix = Annotated[str, Meta(pattern="^[A-Z]{1,2}$", description="1-2 capital letters, e.g. A")]
Minutes = Annotated[int, Meta(ge=1, le=480)]
Note = Annotated[str, Meta(max_length=2000)]
ID_MAX = 2**63 - 1
"""Ids are 64-bit in the database: a larger one is refused as input, never looked up."""
Id = Annotated[int, Meta(ge=1, le=ID_MAX)]
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


class PasswordChangeIn(Struct, forbid_unknown_fields=True):
    current_password: Annotated[str, Meta(min_length=1, max_length=200)]
    new_password: Annotated[str, Meta(min_length=10, max_length=200)]


RepeatWindow = Annotated[
    int,
    Meta(ge=1, le=365, description="days within which a visit for the same matter is a repeat"),
]


KeepDays = Annotated[
    int,
    Meta(
        ge=1,
        le=3650,
        description="days after which visitors' names, phone numbers, ID tails and their "
        "hashes are erased (at least the repeat window)",
    ),
]


class HallIn(Struct, forbid_unknown_fields=True):
    name_zh: Name
    name_en: Name
    opening_hours: Hours
    timezone: str | None = None
    priority_boosts: dict[str, Annotated[int, Meta(ge=0, le=240)]] | None = None
    secondary_after_minutes: Annotated[int, Meta(ge=0, le=480)] = 20
    repeat_window_days: RepeatWindow = 30
    personal_data_days: KeepDays = 180


class HallPatch(Struct, forbid_unknown_fields=True):
    name_zh: Name | UnsetType = UNSET
    name_en: Name | UnsetType = UNSET
    timezone: str | UnsetType = UNSET
    opening_hours: Hours | UnsetType = UNSET
    priority_boosts: dict[str, Annotated[int, Meta(ge=0, le=240)]] | UnsetType = UNSET
    secondary_after_minutes: Annotated[int, Meta(ge=0, le=480)] | UnsetType = UNSET
    repeat_window_days: RepeatWindow | UnsetType = UNSET
    personal_data_days: KeepDays | UnsetType = UNSET
    cancel_stranded: bool | UnsetType = UNSET
    """With new ``opening_hours`` that close booked times: cancel those bookings."""
    reason: CancelReason | UnsetType = UNSET
    """Why (each visitor is told); needed with ``cancel_stranded``."""


class ServiceIn(Struct, forbid_unknown_fields=True):
    name_zh: Name
    name_en: Name
    prefix: Prefix
    typical_minutes: Minutes
    documents: list[Name] = msgspec.field(default_factory=list)
    desk: bool = False
    """The hall's "can't get it done" desk (at most one per hall)."""


class ServicePatch(Struct, forbid_unknown_fields=True):
    name_zh: Name | UnsetType = UNSET
    name_en: Name | UnsetType = UNSET
    prefix: Prefix | UnsetType = UNSET
    typical_minutes: Minutes | UnsetType = UNSET
    documents: list[Name] | UnsetType = UNSET
    active: bool | UnsetType = UNSET
    desk: bool | UnsetType = UNSET


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


OutcomeName = Literal[
    "done", "missing_documents", "other_department", "system_problem", "visitor_left",
    "needs_escalation", "other",
]  # fmt: skip
DocumentNames = Annotated[
    list[Name],
    Meta(max_length=50, description="names from the matter's list of documents"),
]


class VisitorIn(Struct, forbid_unknown_fields=True):
    """Who the visitor is, when the clerk asked: a mobile number, or an ID tail and name.
    Kept only as a keyed hash, to find repeat visits (the one-visit rate)."""

    phone: Annotated[str, Meta(min_length=1, max_length=32)] | None = None
    id_tail: Annotated[str, Meta(min_length=1, max_length=32)] | None = None
    name: Annotated[str, Meta(min_length=1, max_length=50)] | None = None


class FinishIn(Struct, forbid_unknown_fields=True):
    outcome: OutcomeName
    note: Note | None = None
    missing_documents: DocumentNames = msgspec.field(default_factory=list)
    """With ``missing_documents``: which of the matter's documents were missing."""
    escalate: bool = False
    """Send the visit on to the hall's "can't get it done" desk (an outcome other than done)."""
    visitor: VisitorIn | None = None


class OutcomeIn(Struct, forbid_unknown_fields=True):
    """A corrected outcome of a finished service, and why."""

    outcome: OutcomeName
    reason: Annotated[str, Meta(min_length=1, max_length=500)]
    note: Note | None = None
    missing_documents: DocumentNames = msgspec.field(default_factory=list)


CaseText = Annotated[str, Meta(min_length=1, max_length=TEXT_MAX)]


class CaseIn(Struct, forbid_unknown_fields=True):
    ticket_id: Id
    """The desk's ticket of the visit (or a ticket finished not done)."""
    summary: CaseText
    promised_on: Annotated[date, Meta(description="hall date by which the visitor gets an answer")]
    owner_id: Id | None = None
    """Who answers it; default the one opening it."""


class CasePatch(Struct, forbid_unknown_fields=True):
    owner_id: Id | UnsetType = UNSET
    promised_on: date | UnsetType = UNSET


class CaseNoteIn(Struct, forbid_unknown_fields=True):
    text: CaseText


class CaseAnswerIn(Struct, forbid_unknown_fields=True):
    answer: CaseText


class CaseCloseIn(Struct, forbid_unknown_fields=True):
    resolution: Literal["resolved", "unresolved"]
    answer: CaseText | None = None
    """What the visitor was told; needed when the case was not answered before."""


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
VisitorName = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=NAME_MAX,
        description=f"1 to {NAME_MAX} characters; spaces around and repeated are dropped",
    ),
]
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


CancelReason = Annotated[
    str,
    Meta(max_length=500, description="why the hall cancels the bookings it strands (each "
         "visitor is told)"),
]  # fmt: skip


class CalendarIn(Struct, forbid_unknown_fields=True):
    breaks: list[list[str]] = msgspec.field(default_factory=list)
    holidays: list[str] = msgspec.field(default_factory=list)
    special_days: dict[str, list[list[str]]] = msgspec.field(default_factory=dict)
    remote_checkin: bool | None = None
    day_close_time: Annotated[str, Meta(pattern="^[0-2][0-9]:[0-5][0-9]$")] | None = None
    cancel_stranded: bool = False
    """Confirm a change that closes booked times: cancel those bookings (with ``reason``)."""
    reason: CancelReason | None = None


class RatingIn(Struct, forbid_unknown_fields=True):
    stars: Annotated[int, Meta(ge=1, le=5)]
    comment: Annotated[str, Meta(max_length=COMMENT_MAX)] = ""


WebhookUrl = Annotated[str, Meta(min_length=8, max_length=500, description="http(s) address")]
EventNames = Annotated[
    list[Annotated[str, Meta(min_length=1, max_length=64)]],
    Meta(min_length=1, max_length=50, description='event names, or ["*"] for all'),
]


class WebhookIn(Struct, forbid_unknown_fields=True):
    url: WebhookUrl
    events: EventNames = msgspec.field(default_factory=lambda: ["*"])


class WebhookPatch(Struct, forbid_unknown_fields=True):
    url: WebhookUrl | UnsetType = UNSET
    events: EventNames | UnsetType = UNSET
    active: bool | UnsetType = UNSET
