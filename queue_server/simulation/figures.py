"""The figures of a simulated day, and their mean and 95% confidence interval over seeds.

Waits are minutes from joining the queue to being called. "Walk-ins" are visitors who came
without a booking, their first ticket of the day; "ordinary" ones have no priority class.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from queue_server.domain.model import NO_PRIORITY, TicketKind

from .day import percentile
from .engine import DayResult, Record

ON_TIME_MINUTES = 5.0
"""A booked visitor is served on time when called at most this long after the slot starts."""

# Two-sided 95% Student t quantiles by degrees of freedom (beyond the table: 1.96).
_T95 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
    9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120,
    17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000,
    120: 1.980,
}  # fmt: skip


def t95(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (table, rounded
    towards the more cautious neighbour between listed values)."""
    if df <= 0:
        return math.nan
    listed = sorted(_T95)
    for key in listed:
        if df <= key:
            return _T95[key]
    return 1.96


@dataclass(frozen=True)
class Interval:
    """A figure's mean over seeds and the half-width of its 95% confidence interval."""

    mean: float
    half: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Interval:
        found = [v for v in values if not math.isnan(v)]
        if not found:
            return cls(math.nan, math.nan, 0)
        if len(found) == 1:
            return cls(found[0], math.nan, 1)
        sd = statistics.stdev(found)
        return cls(
            statistics.fmean(found), t95(len(found) - 1) * sd / math.sqrt(len(found)), len(found)
        )

    def text(self, digits: int = 2, percent: bool = False) -> str:
        if math.isnan(self.mean):
            return "—"
        scale, unit = (100.0, "%") if percent else (1.0, "")
        mean = f"{self.mean * scale:.{digits}f}{unit}"
        if math.isnan(self.half):
            return mean
        return f"{mean} ± {self.half * scale:.{digits}f}"


def walk_ins(records: Sequence[Record]) -> list[Record]:
    """Visitors who came without a booking: their first ticket, called or not."""
    return [r for r in records if r.kind == TicketKind.WALK_IN and not r.visitor.booked]


def _waits(records: Sequence[Record], close: float) -> list[float]:
    # Someone never called waited until the simulation gave up: count that, not nothing.
    return [r.waited if r.waited is not None else close - r.queued for r in records]


@dataclass
class DayFigures:
    """One policy on one seed."""

    seed: int
    policy: str
    values: dict[str, float] = field(default_factory=dict)
    hourly: dict[int, tuple[int, float, float]] = field(default_factory=dict)
    """Hour of arrival to (walk-ins, mean wait, p90 wait)."""


def day_figures(result: DayResult) -> DayFigures:
    records = result.records
    end = result.last_service_ends
    walk = walk_ins(records)
    waits = _waits(walk, end)
    ordinary = _waits([r for r in walk if r.visitor.priority == NO_PRIORITY], end)
    priority = _waits([r for r in walk if r.visitor.priority != NO_PRIORITY], end)
    booked = [
        r for r in records
        if r.kind == TicketKind.APPOINTMENT and r.slot is not None
        and r.visitor.arrives is not None and r.visitor.arrives <= r.slot
    ]  # fmt: skip
    on_time = [
        r.called is not None and r.slot is not None and r.called - r.slot <= ON_TIME_MINUTES
        for r in booked
    ]
    transfers = _waits([r for r in records if r.kind == TicketKind.TRANSFER], end)
    # (told minutes, low, high, waited, the rolling average's guess) of every walk-in told
    # a wait and called.
    told = [
        (r.told.minutes, r.told.low, r.told.high, r.waited, r.told_baseline or 0.0)
        for r in walk
        if r.told is not None and r.waited is not None
        and r.told.minutes is not None and r.told.low is not None and r.told.high is not None
    ]  # fmt: skip
    errors = [minutes - waited for minutes, _, _, waited, _ in told]
    base_errors = [guess - waited for _, _, _, waited, guess in told]
    covered = [low <= waited <= high for _, low, high, waited, _ in told]
    mse = statistics.fmean(e * e for e in errors) if errors else math.nan
    base_mse = statistics.fmean(e * e for e in base_errors) if base_errors else math.nan
    values = {
        "walk_ins": float(len(walk)),
        "booked": float(sum(1 for r in records if r.kind == TicketKind.APPOINTMENT)),
        "walkin_mean": _mean(waits),
        "walkin_p90": percentile(waits, 0.9),
        "ordinary_max": max(ordinary) if ordinary else math.nan,
        "priority_ratio": _ratio_of(_mean(priority), _mean(ordinary)),
        "booked_on_time": statistics.fmean(on_time) if on_time else math.nan,
        "transfer_mean": _mean(transfers),
        "estimate_mae": statistics.fmean(abs(e) for e in errors) if errors else math.nan,
        "estimate_bias": statistics.fmean(errors) if errors else math.nan,
        "estimate_mse_ratio": mse / base_mse if base_mse and base_mse > 0 else math.nan,
        "band_coverage": statistics.fmean(covered) if covered else math.nan,
        "band_width": statistics.fmean(high - low for _, low, high, _, _ in told)
        if told
        else math.nan,
        "unserved": float(result.unserved),
        "overtime": max(0.0, end - result.closes),
    }
    figures = DayFigures(result.day.seed, result.policy, values)
    by_hour: dict[int, list[float]] = {}
    for record, wait in zip(walk, waits, strict=True):
        by_hour.setdefault(int(record.queued // 60), []).append(wait)
    figures.hourly = {
        hour: (len(w), _mean(w), percentile(w, 0.9)) for hour, w in sorted(by_hour.items())
    }
    return figures


def _ratio_of(part: float, whole: float) -> float:
    return part / whole if whole > 0 else math.nan


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else math.nan


@dataclass(frozen=True)
class Figure:
    """A row of the goals table."""

    key: str
    label: str
    compute: Callable[[DayFigures, DayFigures | None], float]
    goal: Callable[[Interval, Mapping[str, float]], bool | None]
    goal_text: Callable[[Mapping[str, float]], str]
    percent: bool = False
    digits: int = 2


def _ratio(key: str) -> Callable[[DayFigures, DayFigures | None], float]:
    def compute(day: DayFigures, fifo: DayFigures | None) -> float:
        if fifo is None:
            return math.nan
        base = fifo.values.get(key, math.nan)
        return day.values[key] / base if base and base > 0 else math.nan

    return compute


def _value(key: str) -> Callable[[DayFigures, DayFigures | None], float]:
    return lambda day, _fifo: day.values.get(key, math.nan)


def _at_most(name: str, default: float) -> Callable[[Interval, Mapping[str, float]], bool | None]:
    return lambda i, goals: None if math.isnan(i.mean) else i.mean <= goals.get(name, default)


def _at_least(name: str, default: float) -> Callable[[Interval, Mapping[str, float]], bool | None]:
    return lambda i, goals: None if math.isnan(i.mean) else i.mean >= goals.get(name, default)


def _within(name: str, default: float) -> Callable[[Interval, Mapping[str, float]], bool | None]:
    return lambda i, goals: None if math.isnan(i.mean) else abs(i.mean) <= goals.get(name, default)


DEFAULT_GOALS = {
    "walkin_p90_vs_fifo": 1.25,
    "ordinary_max_vs_fifo": 1.2,
    "booked_on_time": 0.95,
    "priority_ratio": 0.5,
    "estimate_mae": 4.0,
    "estimate_bias": 1.5,
    "estimate_mse_ratio": 0.7,
    "band_coverage": 0.8,
}

FIGURES: tuple[Figure, ...] = (
    Figure("walkin_p90_vs_fifo", "walk-in wait p90 / FIFO", _ratio("walkin_p90"),
           _at_most("walkin_p90_vs_fifo", 1.25), lambda g: f"≤ {g['walkin_p90_vs_fifo']:g}"),
    Figure("ordinary_max_vs_fifo", "longest ordinary walk-in wait / FIFO", _ratio("ordinary_max"),
           _at_most("ordinary_max_vs_fifo", 1.2), lambda g: f"≤ {g['ordinary_max_vs_fifo']:g}"),
    Figure("booked_on_time", "booked (on time) called ≤ 5 min after slot", _value("booked_on_time"),
           _at_least("booked_on_time", 0.95), lambda g: f"≥ {g['booked_on_time']:.0%}",
           percent=True, digits=1),
    Figure("priority_ratio", "priority / ordinary walk-in mean wait", _value("priority_ratio"),
           _at_most("priority_ratio", 0.5), lambda g: f"≤ {g['priority_ratio']:g}"),
    Figure("estimate_mae", "estimate mean abs. error (min)", _value("estimate_mae"),
           _at_most("estimate_mae", 4.0), lambda g: f"≤ {g['estimate_mae']:g}", digits=1),
    Figure("estimate_bias", "estimate bias (min, told − waited)", _value("estimate_bias"),
           _within("estimate_bias", 1.5), lambda g: f"within ±{g['estimate_bias']:g}", digits=1),
    Figure("estimate_mse_ratio", "estimate MSE / rolling average's", _value("estimate_mse_ratio"),
           _at_most("estimate_mse_ratio", 0.7), lambda g: f"≤ {g['estimate_mse_ratio']:g}"),
    Figure("band_coverage", "told range holds the wait", _value("band_coverage"),
           _at_least("band_coverage", 0.8), lambda g: f"≥ {g['band_coverage']:.0%}",
           percent=True, digits=1),
    Figure("walk_ins", "walk-ins per day", _value("walk_ins"),
           lambda i, g: None, lambda g: "", digits=0),
    Figure("booked", "booked visitors per day (checked in)", _value("booked"),
           lambda i, g: None, lambda g: "", digits=0),
    Figure("walkin_mean", "walk-in mean wait (min)", _value("walkin_mean"),
           lambda i, g: None, lambda g: "", digits=1),
    Figure("walkin_p90", "walk-in wait p90 (min)", _value("walkin_p90"),
           lambda i, g: None, lambda g: "", digits=1),
    Figure("ordinary_max", "longest ordinary walk-in wait (min)", _value("ordinary_max"),
           lambda i, g: None, lambda g: "", digits=1),
    Figure("transfer_mean", "transfer mean wait (min)", _value("transfer_mean"),
           lambda i, g: None, lambda g: "", digits=1),
    Figure("band_width", "told range width (min)", _value("band_width"),
           lambda i, g: None, lambda g: "", digits=1),
    Figure("unserved", "not served by the end", _value("unserved"),
           lambda i, g: None, lambda g: "", digits=1),
    Figure("overtime", "service after closing (min)", _value("overtime"),
           lambda i, g: None, lambda g: "", digits=1),
)  # fmt: skip
