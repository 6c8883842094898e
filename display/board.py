"""The board reducer: a hall snapshot, then events, in; what the hall's screens show, out.

Pure and synchronous: the server keeps one board per hall and process with it, and the
terminal board client runs the same code. Snapshots and events are the plain JSON shapes
documented in docs/realtime.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

RECENT_CALLS = 8
ANNOUNCEMENTS = 5


class NeedsSnapshot(Exception):
    """The event refers to something the board does not know (say, a new counter)."""


@dataclass(frozen=True)
class CounterView:
    counter_id: int
    number: int
    name: str
    state: str
    """The counter's own state: open, paused or closed."""
    ticket: str | None = None
    ticket_state: str | None = None
    """called or serving."""
    ticket_id: int | None = None


@dataclass(frozen=True)
class MatterView:
    service_id: int
    prefix: str
    name_zh: str
    name_en: str
    waiting: int


@dataclass(frozen=True)
class Call:
    number: str
    counter_number: int
    at: str
    recall: bool = False


@dataclass(frozen=True)
class Announcement:
    seq: int
    number: str
    counter_number: int
    text_zh: str
    text_en: str


@dataclass(frozen=True)
class BoardView:
    hall_id: int
    name_zh: str
    name_en: str
    seq: int
    counters: tuple[CounterView, ...]
    matters: tuple[MatterView, ...]
    recent_calls: tuple[Call, ...] = ()
    announcements: tuple[Announcement, ...] = ()
    notice: str = ""


def announcement_text(number: str, counter_number: int) -> tuple[str, str]:
    """What the hall says when a number is called, in Chinese and English."""
    spaced = " ".join(number)  # "A 0 2 3": read out digit by digit in both languages
    return (
        f"请 {number} 号到 {counter_number} 号窗口办理",
        f"Number {spaced}, please go to counter {counter_number}",
    )


def board_from_snapshot(snapshot: Mapping[str, Any]) -> BoardView:
    """The board for a hall snapshot (GET /api/halls/{id}/snapshot's shape)."""
    counters = tuple(
        CounterView(
            counter_id=c["id"],
            number=c["number"],
            name=c["name"],
            state=c["state"],
            ticket=c.get("ticket_number"),
            ticket_state=c.get("ticket_state"),
            ticket_id=c.get("ticket_id"),
        )
        for c in snapshot["counters"]
    )
    matters = tuple(
        MatterView(
            service_id=w["service"]["id"],
            prefix=w["prefix"],
            name_zh=w["service"]["name_zh"],
            name_en=w["service"]["name_en"],
            waiting=w["waiting"],
        )
        for w in snapshot["waiting"]
    )
    calls = tuple(
        Call(c["number"], c["counter_number"], c["called_at"])
        for c in snapshot["recent_calls"][:RECENT_CALLS]
    )
    return BoardView(
        hall_id=snapshot["hall_id"],
        name_zh=snapshot["name_zh"],
        name_en=snapshot["name_en"],
        seq=snapshot["seq"],
        counters=counters,
        matters=matters,
        recent_calls=calls,
        notice=snapshot.get("notice") or "",
    )


def _counter(view: BoardView, counter_id: int) -> CounterView:
    for c in view.counters:
        if c.counter_id == counter_id:
            return c
    raise NeedsSnapshot(f"counter {counter_id} is not on this board")


def _with_counter(view: BoardView, changed: CounterView) -> BoardView:
    return replace(
        view,
        counters=tuple(changed if c.counter_id == changed.counter_id else c for c in view.counters),
    )


def _waiting(view: BoardView, service_id: int, delta: int) -> BoardView:
    if not any(m.service_id == service_id for m in view.matters):
        raise NeedsSnapshot(f"matter {service_id} is not on this board")
    return replace(
        view,
        matters=tuple(
            replace(m, waiting=max(0, m.waiting + delta)) if m.service_id == service_id else m
            for m in view.matters
        ),
    )


def _called(view: BoardView, seq: int, data: Mapping[str, Any], recall: bool) -> BoardView:
    counter = _counter(view, data["counter_id"])
    view = _with_counter(
        view,
        replace(counter, ticket=data["number"], ticket_state="called", ticket_id=data["ticket_id"]),
    )
    zh, en = announcement_text(data["number"], counter.number)
    call = Call(data["number"], counter.number, data["at"], recall)
    return replace(
        view,
        recent_calls=(call, *view.recent_calls)[:RECENT_CALLS],
        announcements=(
            *view.announcements,
            Announcement(seq, data["number"], counter.number, zh, en),
        )[-ANNOUNCEMENTS:],
    )


def _cleared(view: BoardView, data: Mapping[str, Any]) -> BoardView:
    counter_id = data.get("counter_id")
    if counter_id is None:
        return view
    counter = _counter(view, counter_id)
    if counter.ticket_id != data["ticket_id"]:
        return view
    return _with_counter(view, replace(counter, ticket=None, ticket_state=None, ticket_id=None))


def apply(view: BoardView, seq: int, name: str, data: Mapping[str, Any]) -> BoardView:
    """The board after event number ``seq``; events at or before ``view.seq`` change nothing.

    Raises NeedsSnapshot when the event cannot be applied (a gap in the sequence, or an
    unknown counter or matter): the caller then loads a fresh snapshot.
    """
    if seq <= view.seq:
        return view
    if seq != view.seq + 1:
        raise NeedsSnapshot(f"event {seq} after {view.seq}: events were missed")
    match name:
        case "TicketIssued":
            view = _waiting(view, data["service_id"], +1)
        case "TicketCalled":
            view = _waiting(view, data["service_id"], -1)
            view = _called(view, seq, data, recall=False)
        case "TicketRecalled":
            view = _called(view, seq, data, recall=True)
        case "TicketReturnedToQueue":
            view = _waiting(_cleared(view, data), data["service_id"], +1)
        case "ServiceStarted":
            counter = _counter(view, data["counter_id"])
            view = _with_counter(view, replace(counter, ticket_state="serving"))
        case "ServiceFinished" | "TicketMarkedNoShow" | "TicketTransferred":
            view = _cleared(view, data)
        case "TicketCancelled":
            holder = next((c for c in view.counters if c.ticket_id == data["ticket_id"]), None)
            if holder is None:
                view = _waiting(view, data["service_id"], -1)
            else:
                view = _cleared(view, {**data, "counter_id": holder.counter_id})
        case "CounterOpened" | "CounterPaused" | "CounterClosed":
            counter = _counter(view, data["counter_id"])
            state = {"CounterOpened": "open", "CounterPaused": "paused", "CounterClosed": "closed"}
            view = _with_counter(view, replace(counter, state=state[name]))
        case "HallNoticeChanged":
            view = replace(view, notice=data.get("notice") or "")
        case _:
            pass  # events the board does not show still advance its sequence
    return replace(view, seq=seq)
