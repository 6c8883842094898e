"""A simulation's answer: the goals table on the terminal, or the same figures as JSON."""

from __future__ import annotations

import math
from typing import Any

from .figures import FIGURES, Interval
from .runner import RunResult

VERDICT = {True: "yes", False: "NO", None: ""}


def _cell(interval: Interval, digits: int, percent: bool) -> str:
    return interval.text(digits, percent)


def table(result: RunResult) -> str:
    """The figures of every policy side by side, each goal, and whether the first meets it."""
    names = list(result.policies)
    scenario = result.scenario
    seeds = result.seeds
    head = [
        f"scenario: {scenario.name}" + (f" ({scenario.source})" if scenario.source else ""),
        f"seeds: {seeds[0]}..{seeds[-1]} ({len(seeds)} days, common random numbers); "
        "mean ± 95% confidence interval over the days",
    ]
    rows = [["figure", *names, "goal", f"{names[0]} meets it"]]
    verdicts = result.verdicts()
    for figure in FIGURES:
        cells = [
            _cell(result.policies[name].figures[figure.key], figure.digits, figure.percent)
            for name in names
        ]
        if all(c == "—" for c in cells):
            continue
        goal = figure.goal_text(result.goals)
        rows.append([figure.label, *cells, goal, VERDICT[verdicts.get(figure.key)] if goal else ""])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [*head, ""]
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def hourly_table(result: RunResult) -> str:
    """Walk-ins' waits by hour of arrival for each policy (the manager's chart, in text)."""
    names = list(result.policies)
    hours = sorted({h for p in result.policies.values() for h in p.hourly})
    rows = [["hour", "walk-ins", *[f"{n} mean/p90 min" for n in names]]]
    first = result.policies[names[0]]
    for hour in hours:
        count = first.hourly.get(hour, (math.nan,))[0]
        cells = []
        for name in names:
            _, mean, p90 = result.policies[name].hourly.get(hour, (0, math.nan, math.nan))
            cells.append(f"{mean:.1f} / {p90:.1f}")
        rows.append([f"{hour:02d}:00", f"{count:.1f}", *cells])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(widths[i]) for i, cell in enumerate(row)) for row in rows)


def _number(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def as_json(result: RunResult) -> dict[str, Any]:
    """Every figure of every policy (mean, CI half-width, per-day values), the goals and
    whether the first policy meets them, and waits by hour."""
    scenario = result.scenario
    verdicts = result.verdicts()
    return {
        "scenario": {
            "name": scenario.name,
            "source": scenario.source,
            "load": scenario.load,
            "visits": scenario.visits,
            "counters": len(scenario.counters),
            "matters": [m.prefix for m in scenario.matters],
        },
        "seeds": result.seeds,
        "goals": {
            f.key: {
                "label": f.label,
                "goal": f.goal_text(result.goals),
                "met": verdicts.get(f.key),
            }
            for f in FIGURES
            if f.goal_text(result.goals)
        },
        "policies": {
            name: {
                "figures": {
                    f.key: {
                        "label": f.label,
                        "mean": _number(p.figures[f.key].mean),
                        "ci95": _number(p.figures[f.key].half),
                        "days": [
                            _number(f.compute(d, result.baseline_days.get(d.seed))) for d in p.days
                        ],
                    }
                    for f in FIGURES
                },
                "hourly": [
                    {
                        "hour": hour,
                        "walk_ins": _number(count),
                        "mean_wait": _number(mean),
                        "p90_wait": _number(p90),
                    }
                    for hour, (count, mean, p90) in sorted(p.hourly.items())
                ],
            }
            for name, p in result.policies.items()
        },
    }
