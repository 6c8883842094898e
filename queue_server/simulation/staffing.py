"""What-if for managers: how many counters each hour keep walk-ins' wait p90 under a target.

The search keeps the day's visitors fixed (the scenario's, on the same seeds, with the
bookings made for the hall's own counters) and changes only which counters are staffed
when; a counter staffed in an hour is staffed all of it (breaks covered by relief staff).
Counters are taken in an order that covers every matter first (so any prefix of it serves
every matter), then by number; past the hall's own counters, copies of them in that order
stand for the counters it could add. It starts with the fewest counters that cover the
matters in every hour and, as long as some hour's walk-ins wait longer than the target at
the 90th percentile, adds a counter in the earliest such hour (or, when that hour is full,
in the latest hour before it, whose backlog it inherits; or else in the next late hour).
Then it takes counters away again wherever the target holds without them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import time

from .day import minutes_of, planned_visits
from .runner import run
from .scenario import Counter, Scenario

MAX_ROUNDS = 200


@dataclass(frozen=True)
class HourRow:
    hour: int
    counters: int
    walk_ins: float
    mean_wait: float
    p90_wait: float


@dataclass(frozen=True)
class Staffing:
    """The plan found, hour by hour, beside the scenario's own staffing."""

    target_p90: float
    plan: list[HourRow]
    given: list[HourRow]
    met: bool
    """Whether every hour keeps walk-in p90 at or under the target."""
    counter_hours: int
    given_counter_hours: int
    order: list[int]
    """Counter numbers in the order they are staffed (from 101: copies a hall could add)."""


def coverage_order(counters: Sequence[Counter]) -> list[Counter]:
    """Counters so that the first ones cover every matter: greedily the counter adding
    most matters not yet covered (ties to the lower number), then the rest by number."""
    left = sorted(counters, key=lambda c: c.number)
    uncovered = {p for c in counters for p in c.profile}
    order: list[Counter] = []
    while uncovered and left:
        best = max(left, key=lambda c: (len(uncovered & set(c.profile)), -c.number))
        order.append(best)
        left.remove(best)
        uncovered -= set(best.profile)
    return order + left


def _hours(scenario: Scenario) -> list[int]:
    first = min(minutes_of(s) for s, _ in scenario.hours)
    last = max(minutes_of(e) for _, e in scenario.hours)
    return list(range(int(first // 60), math.ceil(last / 60)))


def staffed(scenario: Scenario, order: Sequence[Counter], plan: dict[int, int]) -> Scenario:
    """The scenario with counter i of ``order`` staffed in every hour h where i < plan[h]
    (the whole hour: breaks are covered by relief staff) and away in the others."""
    counters = []
    for index, counter in enumerate(order):
        away = [h for h, k in sorted(plan.items()) if index >= k]
        spans: list[tuple[time, time]] = []
        for h in away:
            start, end = time(h, 0), time.max if h == 23 else time(h + 1, 0)
            if spans and spans[-1][1] == start:
                spans[-1] = (spans[-1][0], end)
            else:
                spans.append((start, end))
        counters.append(replace(counter, breaks=_merged(spans), opens=None, closes=None))
    return scenario.with_counters(counters)


def _all_met(
    figures: dict[int, tuple[float, float, float]], hours: Sequence[int], target: float
) -> bool:
    return all(figures[h][2] <= target or figures[h][0] == 0 for h in hours)


def _merged(spans: Sequence[tuple[time, time]]) -> tuple[tuple[time, time], ...]:
    merged: list[tuple[time, time]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return tuple(merged)


def _evaluate(
    scenario: Scenario,
    base: Scenario,
    policy: str,
    seeds: Sequence[int],
    visits: float,
    hours: Sequence[int],
) -> dict[int, tuple[float, float, float]]:
    result = run(
        scenario, [policy], seeds, visits=visits, baseline=False, estimates=False, days_of=base
    )
    hourly = result.policies[policy].hourly
    return {h: hourly.get(h, (0.0, 0.0, 0.0)) for h in hours}


def with_extra_counters(counters: Sequence[Counter], up_to: int) -> list[Counter]:
    """``counters`` in coverage order, then copies of them in that order (numbered from
    101) until there are ``up_to``: the counters a hall could add."""
    order = coverage_order(counters)
    extra = []
    for index in range(max(0, up_to - len(order))):
        model = order[index % len(order)]
        extra.append(replace(model, number=101 + index))
    return order + extra


def find_staffing(
    scenario: Scenario,
    target_p90: float,
    seeds: Sequence[int],
    policy: str = "v2",
    progress: Callable[[int], None] | None = None,
    max_counters: int | None = None,
) -> Staffing:
    """The counters per hour that keep walk-in wait p90 ≤ ``target_p90`` minutes (or, when
    even ``max_counters`` cannot, the closest: all of them in the hours that need them).
    Beyond the scenario's counters (default: up to twice as many), copies of them are added
    (numbered from 101) as the counters a hall could open."""
    visits = planned_visits(scenario)
    order = with_extra_counters(scenario.counters, max_counters or 2 * len(scenario.counters))
    hours = _hours(scenario)
    matters = {m.prefix for m in scenario.matters}
    cover = next(
        k for k in range(1, len(order) + 1)
        if matters <= {p for c in order[:k] for p in c.profile}
    )  # fmt: skip
    plan = {h: cover for h in hours}
    full = len(order)
    given_count = len(scenario.counters)
    given = _evaluate(scenario, scenario, policy, seeds, visits, hours)
    if progress:
        progress(1)
    figures: dict[int, tuple[float, float, float]] = {}
    for _ in range(MAX_ROUNDS):
        figures = _evaluate(staffed(scenario, order, plan), scenario, policy, seeds, visits, hours)
        if progress:
            progress(1)
        late = [h for h in hours if figures[h][2] > target_p90 and figures[h][0] > 0]
        # The earliest late hour that can take one more counter, itself or the latest hour
        # before it; an hour already at every counter passes its turn to the next.
        grown = False
        for hour in late:
            candidates = [h for h in hours if h <= hour and plan[h] < full]
            if candidates:
                plan[max(candidates)] += 1
                grown = True
                break
        if not grown:
            break
    met = _all_met(figures, hours, target_p90)
    if met:
        # The greedy pass may have over-staffed an early hour for a later one's sake: take
        # a counter away wherever the target still holds without it.
        for hour in sorted(hours, key=lambda h: -plan[h]):
            while plan[hour] > cover:
                plan[hour] -= 1
                trial = _evaluate(
                    staffed(scenario, order, plan), scenario, policy, seeds, visits, hours
                )
                if progress:
                    progress(1)
                if not _all_met(trial, hours, target_p90):
                    plan[hour] += 1
                    break
                figures = trial

    def rows(counts: dict[int, int], seen: dict[int, tuple[float, float, float]]) -> list[HourRow]:
        return [HourRow(h, counts[h], *seen[h]) for h in hours]

    return Staffing(
        target_p90=target_p90,
        plan=rows(plan, figures),
        given=rows({h: given_count for h in hours}, given),
        met=met,
        counter_hours=sum(plan.values()),
        given_counter_hours=given_count * len(hours),
        order=[c.number for c in order],
    )


def staffing_table(found: Staffing) -> str:
    lines = [
        f"counters per hour for walk-in wait p90 ≤ {found.target_p90:g} min "
        f"(counters staffed in this order: {', '.join(map(str, found.order))})",
        "",
        f"{'hour':>5}  {'counters':>8}  {'walk-ins':>8}  {'p90 min':>7}  {'mean min':>8}"
        f"  {'as given: counters':>18}  {'p90 min':>7}",
    ]
    for row, given in zip(found.plan, found.given, strict=True):
        lines.append(
            f"{row.hour:02d}:00  {row.counters:>8}  {row.walk_ins:>8.1f}  {row.p90_wait:>7.1f}"
            f"  {row.mean_wait:>8.1f}  {given.counters:>18}  {given.p90_wait:>7.1f}"
        )
    lines.append("")
    verdict = "met in every hour" if found.met else "NOT met in every hour, even so"
    lines.append(
        f"{found.counter_hours} counter-hours ({found.given_counter_hours} as given); "
        f"target {verdict}"
    )
    return "\n".join(lines)
