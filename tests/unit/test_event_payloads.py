"""Every hall event's payload is its fields as JSON-ready values, read shallowly: events
hold scalars only (a container field would be shared, not copied, and a nested dataclass
would not be turned into a dict), which this keeps true for events added later."""

from __future__ import annotations

import json
import typing
from dataclasses import asdict, fields
from datetime import UTC, datetime

import booking.domain.events  # noqa: F401 - registers the booking events
from queue_server.domain.events import Event

SCALARS = {int, str, bool, float, datetime, type(None)}
SAMPLE = {
    int: 7,
    str: "A012",
    bool: True,
    float: 1.5,
    datetime: datetime(2026, 12, 4, 9, 30, tzinfo=UTC),
}


def every_event() -> list[type[Event]]:
    found: list[type[Event]] = []
    todo = [Event]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def scalar_types(cls: type[Event]) -> dict[str, tuple[type, ...]]:
    hints = typing.get_type_hints(cls)
    return {f.name: typing.get_args(hints[f.name]) or (hints[f.name],) for f in fields(cls)}


def test_events_hold_scalars_only() -> None:
    events = every_event()
    assert len(events) > 25  # the queue's and the bookings' events are all found
    for cls in events:
        for name, types in scalar_types(cls).items():
            assert set(types) <= SCALARS, f"{cls.__name__}.{name}: {types}"


def test_each_payload_is_the_fields_as_asdict_would_give_them() -> None:
    for cls in every_event():
        values = {name: SAMPLE[types[0]] for name, types in scalar_types(cls).items()}
        event = cls(**values)
        expected = {
            k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(event).items()
        }
        if "code" in expected and cls.__module__ == "booking.domain.events":
            del expected["code"]  # never on the hall's channel
        assert event.payload() == expected, cls.__name__
        json.dumps(event.payload())  # JSON-ready as it is
