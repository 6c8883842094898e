"""The simulator: it reproduces queueing theory, its days repeat from their seeds, every
policy meets the same visitors, and it drives the server's own rules."""

from __future__ import annotations

import math
import statistics
from typing import Any

import pytest

from booking.domain.booking import BookingState
from queue_server.domain.model import TicketKind
from queue_server.simulation.day import draw_day, planned_visits
from queue_server.simulation.engine import HallDay
from queue_server.simulation.figures import Interval
from queue_server.simulation.policies import policy_named
from queue_server.simulation.report import as_json, table
from queue_server.simulation.runner import run
from queue_server.simulation.scenario import (
    ScenarioError,
    load_scenario,
    parse_scenario,
    shipped_scenarios,
)
from queue_server.simulation.staffing import find_staffing


def erlang_c_wait(servers: int, arrivals_per_minute: float, service_minutes: float) -> float:
    """Mean wait in an M/M/c queue (Erlang C)."""
    offered = arrivals_per_minute * service_minutes
    rho = offered / servers
    below = sum(offered**k / math.factorial(k) for k in range(servers))
    top = offered**servers / math.factorial(servers) / (1 - rho)
    waits = top / (below + top)
    return waits / (servers / service_minutes - arrivals_per_minute)


def m_m_c(servers: int, service_minutes: float, rho: float) -> dict[str, Any]:
    """One matter, identical counters, Poisson arrivals around the clock, exponential
    service: nothing booked, no priority, no transfers, no breaks."""
    per_minute = rho * servers / service_minutes
    return {
        "name": f"M/M/{servers}",
        "hours": [["00:00", "24:00"]],
        "visits": round(per_minute * 24 * 60),
        "matters": [
            {
                "prefix": "A",
                "share": 1.0,
                "service_mean": service_minutes,
                "service_dist": "exponential",
            }
        ],
        "counters": [{"number": i + 1, "primary": ["A"]} for i in range(servers)],
        "visitors": {"priority_share": 0.0, "transfer_share": 0.0},
        "bookings": {"share": 0.0},
    }


def test_it_reproduces_the_erlang_c_mean_wait_within_its_confidence_interval() -> None:
    servers, service, rho = 2, 5.0, 0.7
    scenario = parse_scenario(m_m_c(servers, service, rho))
    per_minute = rho * servers / service
    day_means = []
    for seed in range(1, 61):
        day = draw_day(scenario, seed)
        fifo = policy_named("fifo", scenario)
        result = HallDay(day, fifo.choose, None, "fifo").run()
        # The day starts empty: leave out the first two hours, before the queue settles.
        waits = [r.waited for r in result.records if r.queued >= 120 and r.waited is not None]
        day_means.append(statistics.fmean(waits))
    measured = Interval.of(day_means)
    theory = erlang_c_wait(servers, per_minute, service)

    assert theory == pytest.approx(4.80, abs=0.01)
    assert abs(measured.mean - theory) <= measured.half, (measured, theory)
    assert measured.half < 0.15 * theory, "the interval is tight enough to mean something"


def test_a_run_is_reproducible_from_its_seeds() -> None:
    scenario = load_scenario("standard-075")

    first = as_json(run(scenario, ["v2"], seeds=[7, 8]))
    again = as_json(run(scenario, ["v2"], seeds=[7, 8]))
    other = as_json(run(scenario, ["v2"], seeds=[9, 10]))

    assert first == again
    assert first["policies"] != other["policies"]


def test_every_policy_meets_the_same_visitors_on_a_seed() -> None:
    scenario = load_scenario("standard-092")
    day = draw_day(scenario, 3)

    def visitors(policy: str) -> list[tuple[int, float | None, str]]:
        chosen = policy_named(policy, scenario)
        result = HallDay(day, chosen.choose, None, policy).run()
        return sorted({(r.visitor.id, r.visitor.arrives, r.visitor.matter) for r in result.records})

    assert visitors("v2") == visitors("fifo") == visitors("v1")


def test_the_day_has_the_visitors_its_load_asks_for() -> None:
    scenario = load_scenario("standard-075")
    arriving = [
        sum(1 for v in draw_day(scenario, seed).visitors if v.arrives is not None)
        for seed in range(1, 21)
    ]

    assert statistics.fmean(arriving) == pytest.approx(planned_visits(scenario), rel=0.05)


def test_bookings_follow_the_booking_rules() -> None:
    scenario = load_scenario("standard-075")
    day = draw_day(scenario, 2)
    v2 = policy_named("v2", scenario)
    result = HallDay(day, v2.choose, None, "v2").run()
    booked = [v for v in day.visitors if v.booking is not None]
    per_slot: dict[tuple[str, Any], int] = {}
    for visitor in booked:
        key = (visitor.matter, visitor.booking.slot_start)  # type: ignore[union-attr]
        per_slot[key] = per_slot.get(key, 0) + 1
    appointments = [r for r in result.records if r.kind == TicketKind.APPOINTMENT]

    assert booked and appointments
    # Peak slots were planned with fewer places than quiet ones (walk-ins first).
    assert max(per_slot.values()) <= 10
    # Each appointment ticket is due at its booking's slot, through the check-in rules.
    for record in appointments:
        booking = record.visitor.booking
        assert booking is not None and record.slot is not None
        assert day.at(record.slot) == booking.slot_start
    # The day's own bookings were not touched: every run books afresh.
    assert all(v.booking.state == BookingState.BOOKED for v in booked)  # type: ignore[union-attr]


def test_the_table_shows_each_figure_its_goal_and_whether_it_is_met() -> None:
    result = run(load_scenario("standard-075"), ["v2", "v1"], seeds=[1, 2])
    text = table(result)
    data = as_json(result)

    assert "walk-in wait p90 / FIFO" in text and "≤ 1.25" in text
    assert set(data["policies"]) == {"v2", "v1"}
    assert data["goals"]["booked_on_time"]["goal"] == "≥ 95%"
    assert data["policies"]["v2"]["figures"]["walkin_p90_vs_fifo"]["mean"] > 0
    assert len(data["policies"]["v2"]["figures"]["walkin_mean"]["days"]) == 2
    assert [h["hour"] for h in data["policies"]["v2"]["hourly"]][:2] == [9, 10]


@pytest.mark.parametrize("name", shipped_scenarios())
def test_every_shipped_scenario_simulates(name: str) -> None:
    result = run(load_scenario(name), ["v2"], seeds=[1], estimates=False)

    assert result.policies["v2"].figures["walkin_mean"].mean >= 0
    assert result.policies["v2"].figures["unserved"].mean == 0


OVERLAPPING = [["12:00", "13:00"], ["12:30", "13:30"]]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lunch": 1}, "unknown setting 'lunch'"),
        ({"matters": [{"prefix": "a1", "service_mean": 5}]}, "one or two capital letters"),
        ({"load": 0.8, "visits": 100}, "either load or visits"),
        ({"counters": [{"number": 1, "primary": ["B"]}]}, "'B' is not a matter's prefix"),
        ({"bookings": {"share": 0.3}}, "no matter has bookable = true"),
        (
            {"counters": [{"number": 1, "primary": ["A"], "breaks": OVERLAPPING}]},
            "periods overlap",
        ),
        ({"hours": [["17:00", "09:00"]]}, "ends before it starts"),
        ({"visitors": {"priority_share": 1.5}}, "out of range"),
        ({"arrivals": {"hourly": {"9am": 1}}}, "'9am' is not a time of day"),
        ({"counters": [{"number": 1, "primary": [["A"]]}]}, "is not a matter's prefix"),
        ({"counters": [{"number": 1, "primary": ["A"], "opens": "nine"}]}, "not a time of day"),
        ({"bookings": {"arrive_mean_minutes": float("inf")}}, "expected a number"),
    ],
)
def test_a_bad_scenario_says_what_to_fix(change: dict[str, Any], message: str) -> None:
    data = {
        "matters": [{"prefix": "A", "service_mean": 5}],
        "counters": [{"number": 1, "primary": ["A"]}],
        **change,
    }
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(data)


def test_an_unknown_scenario_file_lists_the_shipped_ones() -> None:
    with pytest.raises(ScenarioError, match=r"shipped scenarios: .*standard-075"):
        load_scenario("no-such-scenario")


def test_staffing_finds_the_counters_each_hour_needs() -> None:
    data = m_m_c(servers=4, service_minutes=5, rho=0.5)
    data["hours"] = [["09:00", "13:00"]]
    data["visits"] = 40  # 20 of them in the 10:00 peak: about 100 counter-minutes
    data["arrivals"] = {"hourly": {"09:00": 0.5, "10:00": 2.0, "11:00": 0.5, "12:00": 0.5}}
    scenario = parse_scenario(data)

    found = find_staffing(scenario, target_p90=15, seeds=[1, 2, 3])
    counters = {row.hour: row.counters for row in found.plan}

    assert found.met
    assert all(row.p90_wait <= 15 for row in found.plan if row.walk_ins)
    assert counters[10] > counters[9], "the peak hour needs more counters"
    assert found.counter_hours < found.given_counter_hours
