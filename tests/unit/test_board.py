"""The board reducer: events applied in order change exactly what a hall's screen shows."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from display.board import NeedsSnapshot, announcement_text, apply, board_from_snapshot

SNAPSHOT: dict[str, Any] = {
    "hall_id": 1,
    "name_zh": "示范大厅",
    "name_en": "Demo hall",
    "seq": 10,
    "notice": "",
    "counters": [
        {"id": 11, "number": 1, "name": "c1", "state": "open", "clerk_id": 5,
         "ticket_number": None, "ticket_state": None, "ticket_id": None},
        {"id": 12, "number": 2, "name": "c2", "state": "closed", "clerk_id": None,
         "ticket_number": "B003", "ticket_state": "serving", "ticket_id": 40},
    ],
    "waiting": [
        {"service": {"id": 1, "name_zh": "社保", "name_en": "Social"}, "prefix": "A", "waiting": 2},
        {"service": {"id": 2, "name_zh": "税务", "name_en": "Tax"}, "prefix": "B", "waiting": 0},
    ],
    "recent_calls": [{"number": "B003", "counter_number": 2, "called_at": "2026-03-02T02:00:00Z"}],
}  # fmt: skip
AT = "2026-03-02T02:05:00Z"


def called(ticket_id: int, number: str, counter_id: int, service_id: int = 1) -> dict[str, Any]:
    return {"hall_id": 1, "at": AT, "ticket_id": ticket_id, "number": number,
            "service_id": service_id, "counter_id": counter_id, "reason": "longest wait 3 min"}  # fmt: skip


def test_a_call_updates_the_counter_the_waiting_count_and_the_announcements() -> None:
    board = board_from_snapshot(SNAPSHOT)
    board = apply(board, 11, "TicketCalled", called(41, "A001", 11))
    counter = board.counters[0]
    assert (counter.ticket, counter.ticket_state, counter.ticket_id) == ("A001", "called", 41)
    assert [m.waiting for m in board.matters] == [1, 0]
    assert board.recent_calls[0].number == "A001" and board.recent_calls[0].counter_number == 1
    assert board.announcements[-1].text_zh == "请 A001 号到 1 号窗口办理"
    assert board.seq == 11

    board = apply(board, 12, "ServiceStarted", {**called(41, "A001", 11)})
    assert board.counters[0].ticket_state == "serving"
    board = apply(board, 13, "ServiceFinished", {**called(41, "A001", 11), "outcome": "done"})
    assert board.counters[0].ticket is None


def test_recall_announces_again_and_return_puts_the_ticket_back_in_the_count() -> None:
    board = apply(board_from_snapshot(SNAPSHOT), 11, "TicketCalled", called(41, "A001", 11))
    board = apply(board, 12, "TicketRecalled", {**called(41, "A001", 11), "call_count": 2})
    assert [a.seq for a in board.announcements] == [11, 12]
    assert board.recent_calls[0].recall is True
    board = apply(board, 13, "TicketReturnedToQueue", called(41, "A001", 11))
    assert board.counters[0].ticket is None
    assert [m.waiting for m in board.matters] == [2, 0]


def test_cancel_of_a_waiting_ticket_and_of_a_called_one() -> None:
    board = board_from_snapshot(SNAPSHOT)
    board = apply(
        board, 11, "TicketCancelled", {"ticket_id": 50, "number": "A005", "service_id": 1}
    )
    assert [m.waiting for m in board.matters] == [1, 0]
    board = apply(
        board, 12, "TicketCancelled", {"ticket_id": 40, "number": "B003", "service_id": 2}
    )
    assert board.counters[1].ticket is None
    assert [m.waiting for m in board.matters] == [1, 0]


def test_counter_state_and_notice() -> None:
    board = apply(board_from_snapshot(SNAPSHOT), 11, "CounterPaused", {"counter_id": 11})
    assert board.counters[0].state == "paused"
    board = apply(board, 12, "HallNoticeChanged", {"notice": "午休 12:00-13:30"})
    assert board.notice == "午休 12:00-13:30"


def test_old_events_are_ignored_and_gaps_or_strangers_need_a_snapshot() -> None:
    board = board_from_snapshot(SNAPSHOT)
    assert apply(board, 10, "TicketIssued", {"service_id": 1}) is board
    with pytest.raises(NeedsSnapshot, match="missed"):
        apply(board, 12, "TicketIssued", {"service_id": 1})
    with pytest.raises(NeedsSnapshot, match="counter 99"):
        apply(board, 11, "CounterOpened", {"counter_id": 99})
    with pytest.raises(NeedsSnapshot, match="matter 7"):
        apply(board, 11, "TicketIssued", {"service_id": 7})


@given(st.lists(st.sampled_from(["issue", "call", "finish"]), max_size=60))
def test_waiting_counts_never_go_negative_and_match_a_simple_tally(steps: list[str]) -> None:
    board = board_from_snapshot({**SNAPSHOT, "waiting": [SNAPSHOT["waiting"][0] | {"waiting": 0}]})
    waiting, serving, seq, next_id = 0, None, 10, 100
    for step in steps:
        if step == "issue":
            seq, next_id, waiting = seq + 1, next_id + 1, waiting + 1
            board = apply(board, seq, "TicketIssued", {"ticket_id": next_id, "service_id": 1})
        elif step == "call" and waiting and serving is None:
            seq, waiting, serving = seq + 1, waiting - 1, next_id
            board = apply(board, seq, "TicketCalled", called(serving, "A001", 11))
        elif step == "finish" and serving is not None:
            seq = seq + 1
            board = apply(board, seq, "ServiceFinished", called(serving, "A001", 11))
            serving = None
        assert board.matters[0].waiting == waiting
        assert board.counters[0].ticket_id == serving
        assert len(board.announcements) <= 5 and len(board.recent_calls) <= 8


def test_announcement_text_reads_numbers_digit_by_digit_in_english() -> None:
    assert announcement_text("B012", 7) == (
        "请 B012 号到 7 号窗口办理",
        "Number B 0 1 2, please go to counter 7",
    )
