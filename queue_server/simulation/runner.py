"""Run a scenario over several seeds and policies, on common random numbers."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from .day import draw_day, planned_visits
from .engine import HallDay
from .figures import DEFAULT_GOALS, FIGURES, DayFigures, Interval, day_figures
from .policies import policy_named
from .scenario import Scenario

Progress = Callable[[int], None]
"""Called with the number of simulated days just finished (1 at a time)."""


@dataclass
class PolicyFigures:
    """One policy over every seed: each figure's interval, and the waits by hour."""

    policy: str
    days: list[DayFigures] = field(default_factory=list)
    figures: dict[str, Interval] = field(default_factory=dict)
    hourly: dict[int, tuple[float, float, float]] = field(default_factory=dict)
    """Hour to (walk-ins per day, mean wait, p90 wait), averaged over the seeds."""


@dataclass
class RunResult:
    scenario: Scenario
    seeds: list[int]
    policies: dict[str, PolicyFigures]
    goals: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_GOALS))
    baseline_days: dict[int, DayFigures] = field(default_factory=dict)
    """FIFO's figures of each seed: the base of the ratios."""

    @property
    def primary(self) -> PolicyFigures:
        return next(iter(self.policies.values()))

    def verdicts(self) -> dict[str, bool | None]:
        """Whether the first policy meets each goal (None: the figure has no goal)."""
        return {
            f.key: f.goal(self.primary.figures[f.key], self.goals)
            for f in FIGURES
            if f.key in self.primary.figures
        }


def run(
    scenario: Scenario,
    policies: Sequence[str] = ("v2", "fifo"),
    seeds: Sequence[int] | None = None,
    progress: Progress | None = None,
    goals: Mapping[str, float] | None = None,
    visits: float | None = None,
    baseline: bool = True,
    estimates: bool = True,
    days_of: Scenario | None = None,
) -> RunResult:
    """Simulate every seed under every policy; FIFO runs too, as the ratios' baseline.

    The same seed gives every policy the same visitors (common random numbers), and the
    same scenario and seeds give the same figures on every run. ``visits`` fixes the
    expected visitors (else the scenario's); ``baseline`` False skips FIFO and the ratios,
    ``estimates`` False skips telling each walk-in a wait (the staffing search needs
    neither). ``days_of`` draws the days (visitors and their bookings) from another
    scenario: the staffing search keeps the bookings made for the hall's own counters.
    """
    names = list(dict.fromkeys([*policies, "fifo"] if baseline else policies))
    chosen = list(seeds) if seeds is not None else [
        scenario.first_seed + i for i in range(scenario.seeds)
    ]  # fmt: skip
    expected = planned_visits(scenario) if visits is None else visits
    days: dict[str, list[DayFigures]] = {name: [] for name in names}
    for seed in chosen:
        day = draw_day(days_of or scenario, seed, expected)
        if days_of is not None:
            day = replace(day, scenario=scenario)
        for name in names:
            policy = policy_named(name, scenario)
            tell = policy.estimate if estimates else None
            result = HallDay(day, policy.choose, tell, name).run()
            days[name].append(day_figures(result))
            if progress is not None:
                progress(1)
    fifo = {d.seed: d for d in days.get("fifo", [])}
    found: dict[str, PolicyFigures] = {}
    for name in names:
        if name == "fifo" and "fifo" not in policies:  # run only as the ratios' base
            continue
        summary = PolicyFigures(name, days[name])
        for figure in FIGURES:
            values = [figure.compute(d, fifo.get(d.seed)) for d in days[name]]
            summary.figures[figure.key] = Interval.of(values)
        summary.hourly = _hourly(days[name])
        found[name] = summary
    wanted = {**DEFAULT_GOALS, **scenario.goals, **(goals or {})}
    return RunResult(scenario, chosen, found, wanted, fifo)


def _hourly(days: Sequence[DayFigures]) -> dict[int, tuple[float, float, float]]:
    hours = sorted({h for d in days for h in d.hourly})
    found = {}
    for hour in hours:
        rows = [d.hourly[hour] for d in days if hour in d.hourly]
        count = sum(r[0] for r in rows) / len(days)
        means = [r[1] for r in rows if not math.isnan(r[1])]
        p90s = [r[2] for r in rows if not math.isnan(r[2])]
        found[hour] = (
            count,
            statistics.fmean(means) if means else math.nan,
            statistics.fmean(p90s) if p90s else math.nan,
        )
    return found
