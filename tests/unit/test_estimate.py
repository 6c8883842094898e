"""What the printed ticket says: people ahead and the estimated wait."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from queue_server.domain.estimate import Estimate, estimate_wait, people_ahead, service_minutes
from queue_server.domain.model import TicketKind
from queue_server.domain.policy import Candidate, PolicyConfig

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
CONFIG = PolicyConfig()
PASSPORTS, RESIDENCE = 10, 11


def waiting(
    ticket_id: int,
    joined_min_ago: int,
    service_id: int = PASSPORTS,
    priority: str = "none",
    kind: TicketKind = TicketKind.WALK_IN,
    due_in_min: int | None = None,
) -> Candidate:
    return Candidate(
        ticket_id=ticket_id,
        number=f"A{ticket_id:03d}",
        service_id=service_id,
        kind=kind,
        priority=priority,
        queued_at=NOW - timedelta(minutes=joined_min_ago),
        due_at=None if due_in_min is None else NOW + timedelta(minutes=due_in_min),
    )


def ahead_of(ticket_id: int, queue: list[Candidate], service_id: int = PASSPORTS) -> int:
    return people_ahead(ticket_id, service_id, queue, NOW, CONFIG, SHANGHAI)


def minutes(*durations: float) -> list[timedelta]:
    return [timedelta(minutes=m) for m in durations]


def test_people_ahead_counts_those_called_first_in_the_same_matter() -> None:
    queue = [waiting(1, 30), waiting(2, 20), waiting(3, 10), waiting(4, 40, service_id=RESIDENCE)]

    assert [ahead_of(t, queue) for t in (1, 2, 3)] == [0, 1, 2]
    assert ahead_of(4, queue, RESIDENCE) == 0


def test_a_priority_ticket_issued_later_is_ahead() -> None:
    queue = [waiting(1, 12), waiting(2, 2, priority="elderly")]

    assert ahead_of(2, queue) == 0
    assert ahead_of(1, queue) == 1


def test_continuing_visits_and_due_appointments_are_ahead_early_ones_behind() -> None:
    queue = [
        waiting(1, 30),
        waiting(2, 1, kind=TicketKind.TRANSFER),
        waiting(3, 1, kind=TicketKind.APPOINTMENT, due_in_min=-5),
        waiting(4, 50, kind=TicketKind.APPOINTMENT, due_in_min=45),
    ]

    assert ahead_of(1, queue) == 2
    assert ahead_of(4, queue) == 3


def test_a_ticket_not_yet_in_the_queue_is_behind_everyone() -> None:
    queue = [waiting(1, 30), waiting(2, 20), waiting(3, 10, service_id=RESIDENCE)]

    assert ahead_of(99, queue) == 2


def test_the_median_of_recent_services_is_used_from_three_on() -> None:
    assert service_minutes(minutes(4, 30, 6), 10) == (6, "median of the last 3 services")
    assert service_minutes(minutes(4, 5, 6, 7), 10) == (5.5, "median of the last 4 services")


@pytest.mark.parametrize("recent", [[], minutes(2), minutes(2, 3)])
def test_the_typical_duration_is_used_with_fewer_than_three(recent: list[timedelta]) -> None:
    assert service_minutes(recent, 10) == (10, "the matter's typical duration")


def test_at_most_twenty_recent_services_count() -> None:
    per_person, basis = service_minutes(minutes(*[5] * 20, *[60] * 30), 10)

    assert (per_person, basis) == (5, "median of the last 20 services")


def test_the_estimate_uses_the_median_and_the_open_counters() -> None:
    estimate = estimate_wait(6, minutes(4, 30, 6), 10, open_counters=2)

    assert estimate == Estimate(6, 18, "median of the last 3 services, 2 counter(s) open")


def test_the_estimate_falls_back_to_the_typical_duration() -> None:
    estimate = estimate_wait(3, minutes(1, 1), 12, open_counters=1)

    assert estimate == Estimate(3, 36, "the matter's typical duration, 1 counter(s) open")


@pytest.mark.parametrize(
    ("ahead", "recent", "typical", "counters", "expected"),
    [
        (1, [], 5, 2, 3),  # 2.5 min -> 3
        (1, minutes(4, 4.5, 5), 10, 1, 5),  # 4.5 -> 5
        (3, minutes(1 / 3, 1 / 3, 1 / 3), 10, 1, 1),  # 20 s each: exactly one minute
        (4, [], 10, 3, 14),  # 13.3 -> 14
        (0, minutes(7, 8, 9), 10, 1, 0),  # next in line
    ],
)
def test_the_estimate_rounds_up(
    ahead: int, recent: list[timedelta], typical: int, counters: int, expected: int
) -> None:
    assert estimate_wait(ahead, recent, typical, counters).minutes == expected


def test_an_exact_number_of_minutes_is_not_rounded_up() -> None:
    recent = [timedelta(minutes=2, seconds=4)] * 3

    assert estimate_wait(15, recent, 10, open_counters=1).minutes == 31


@pytest.mark.parametrize("open_counters", [0, -1])
def test_with_no_counter_open_nobody_can_say(open_counters: int) -> None:
    estimate = estimate_wait(4, minutes(5, 5, 5), 10, open_counters)

    assert estimate.people_ahead == 4
    assert estimate.minutes is None
    assert estimate.basis == "no counter for this matter is open now"
