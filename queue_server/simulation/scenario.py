"""A simulated hall day, as a manager or an analyst writes it down (TOML; docs/queue.md).

A scenario names the hall's matters with their service-time distributions, its counters
with their profiles and breaks, how walk-ins arrive over the day, how many visitors book
and how punctual they are, and the shares of priority visitors, transfers and no-shows.
Every bad value raises ``ScenarioError`` naming the setting and what to give instead.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, time, timedelta
from pathlib import Path
from statistics import NormalDist
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from booking.domain.rules import BookingRules, LatePolicy
from queue_server.domain.hours import parse_clock
from queue_server.domain.model import DEFAULT_PRIORITY_BOOSTS, ServiceLevel

SCENARIO_DIR = Path(__file__).parent / "scenarios"
DISTRIBUTIONS = ("lognormal", "exponential", "fixed")
GOAL_NAMES = (
    "walkin_p90_vs_fifo", "ordinary_max_vs_fifo", "booked_on_time", "priority_ratio",
    "estimate_mae", "estimate_bias", "estimate_mse_ratio", "band_coverage",
)  # fmt: skip
"""The goals a scenario may set (docs/queue.md), each a number."""
_STANDARD_NORMAL = NormalDist()


class ScenarioError(ValueError):
    """A scenario that cannot be simulated; the message names the setting to fix."""


@dataclass(frozen=True)
class ServiceTime:
    """How long serving one visitor of a matter takes, in minutes."""

    mean: float
    cv: float = 0.6
    """Coefficient of variation (sd / mean); ignored by ``fixed``, 1 for ``exponential``."""
    dist: str = "lognormal"

    def quantile(self, u: float) -> float:
        """The service time at probability ``u`` (0 < u < 1): inverse transform sampling,
        so one uniform number per visit gives the same visit the same duration under
        every policy (common random numbers)."""
        if self.dist == "fixed":
            return self.mean
        if self.dist == "exponential":
            return -self.mean * math.log(1.0 - u)
        sigma2 = math.log(1.0 + self.cv * self.cv)
        mu = math.log(self.mean) - sigma2 / 2
        return math.exp(mu + math.sqrt(sigma2) * _normal_quantile(u))


@dataclass(frozen=True)
class Matter:
    prefix: str
    name: str
    share: float
    """Share of the day's visits (walk-in and booked) that come for this matter."""
    service: ServiceTime
    bookable: bool = False
    transfer_to: tuple[str, ...] = ()
    """Matters a visit of this one may be transferred on to (chosen uniformly)."""
    typical_minutes: int = 0
    """What the hall has configured as the matter's typical duration (the estimate's
    fallback before it has seen services); 0: the mean, rounded."""

    @property
    def configured_minutes(self) -> int:
        return self.typical_minutes or max(1, round(self.service.mean))


@dataclass(frozen=True)
class Counter:
    number: int
    profile: Mapping[str, ServiceLevel]
    """Matter prefix to the level the counter serves it at."""
    opens: time | None = None
    """None: when the hall opens."""
    closes: time | None = None
    """None: when the hall closes (and its queue is empty)."""
    breaks: tuple[tuple[time, time], ...] = ()


@dataclass(frozen=True)
class Bookings:
    share: float = 0.0
    """Share of visits that come booked (those who find no slot come as walk-ins)."""
    rules: BookingRules = field(default_factory=BookingRules)
    no_show: float = 0.1
    arrive_mean: float = -8.0
    """Minutes relative to the slot start a booked visitor arrives, on average (<0: early)."""
    arrive_sd: float = 7.0


@dataclass(frozen=True)
class Scenario:
    name: str
    matters: tuple[Matter, ...]
    counters: tuple[Counter, ...]
    hours: tuple[tuple[time, time], ...] = ((time(9), time(17)),)
    day: date = date(2026, 3, 2)
    timezone: str = "Asia/Shanghai"
    description: str = ""
    load: float | None = 0.8
    """Offered work over the counters' open minutes; sets the number of visits."""
    visits: int | None = None
    """The day's visits, when given instead of ``load``."""
    hourly: Mapping[time, float] = field(default_factory=dict)
    """Relative walk-in arrival rate from each listed hour until the next; empty: flat."""
    bookings: Bookings = field(default_factory=Bookings)
    priority_share: float = 0.15
    priority_classes: Mapping[str, float] = field(
        default_factory=lambda: {"elderly": 0.7, "disability": 0.2, "pregnancy": 0.1}
    )
    transfer_share: float = 0.05
    secondary_speed: float = 1.0
    """Service time factor at a counter serving the matter at secondary level."""
    priority_boosts: Mapping[str, int] = field(
        default_factory=lambda: dict(DEFAULT_PRIORITY_BOOSTS)
    )
    secondary_after_minutes: int = 20
    seeds: int = 5
    first_seed: int = 1
    goals: Mapping[str, float] = field(default_factory=dict)
    """Goals that differ from the standard ones (``figures.DEFAULT_GOALS``)."""
    source: str = ""
    """Where the scenario came from (a file, or a hall's history)."""

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def matter(self, prefix: str) -> Matter:
        return next(m for m in self.matters if m.prefix == prefix)

    def with_counters(self, counters: Sequence[Counter]) -> Scenario:
        return replace(self, counters=tuple(counters))


def load_scenario(path: str | Path) -> Scenario:
    """The scenario in a TOML file (a shipped scenario's name works too: ``standard-075``)."""
    candidate = Path(path)
    if not candidate.exists() and not candidate.suffix:
        shipped = SCENARIO_DIR / f"{path}.toml"
        if shipped.exists():
            candidate = shipped
    if not candidate.exists():
        names = ", ".join(shipped_scenarios())
        raise ScenarioError(f"no scenario file {str(path)!r}; shipped scenarios: {names}")
    try:
        data = tomllib.loads(candidate.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{candidate}: not valid TOML ({exc})") from None
    return parse_scenario(data, source=str(candidate))


def shipped_scenarios() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def parse_scenario(data: Mapping[str, Any], source: str = "") -> Scenario:
    """A scenario from its TOML tables; see docs/queue.md for every setting."""
    _known(data, "scenario", {
        "name", "description", "timezone", "date", "hours", "load", "visits", "matters",
        "counters", "arrivals", "bookings", "visitors", "hall", "run", "goals",
    })  # fmt: skip
    name = _text(data.get("name", Path(source).stem or "scenario"), "name")
    timezone = _text(data.get("timezone", "Asia/Shanghai"), "timezone")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScenarioError(
            f"timezone {timezone!r}: give an IANA name, e.g. Asia/Shanghai"
        ) from None
    day = data.get("date", date(2026, 3, 2))
    if not isinstance(day, date):
        raise ScenarioError("date: write it as a TOML date, e.g. 2026-03-02")
    hours = _periods(data.get("hours", [["09:00", "17:00"]]), "hours")
    if not hours:
        raise ScenarioError('hours: give at least one period, e.g. [["09:00", "17:00"]]')
    load, visits = data.get("load"), data.get("visits")
    if load is None and visits is None:
        load = 0.8
    if load is not None and visits is not None:
        raise ScenarioError("give either load or visits, not both")
    if load is not None:
        load = _number(load, "load", low=0.01, high=3.0)
    if visits is not None:
        visits = int(_number(visits, "visits", low=1, high=100_000, whole=True))
    matters = _matters(data.get("matters"))
    prefixes = {m.prefix for m in matters}
    counters = _counters(data.get("counters"), prefixes)
    served = {p for c in counters for p in c.profile}
    if prefixes - served:
        raise ScenarioError(f"matter {sorted(prefixes - served)[0]} is served by no counter")
    arrivals = _table(data.get("arrivals", {}), "arrivals")
    _known(arrivals, "arrivals", {"hourly"})
    hourly = {
        _clock(k, "arrivals.hourly"): _number(v, f"arrivals.hourly.{k}", low=0)
        for k, v in _table(arrivals.get("hourly", {}), "arrivals.hourly").items()
    }
    visitors = _table(data.get("visitors", {}), "visitors")
    _known(visitors, "visitors", {
        "priority_share", "priority_classes", "transfer_share", "secondary_speed",
    })  # fmt: skip
    hall = _table(data.get("hall", {}), "hall")
    _known(hall, "hall", {"priority_boosts", "secondary_after_minutes"})
    boosts = {
        str(k): int(_number(v, f"hall.priority_boosts.{k}", low=0, high=240, whole=True))
        for k, v in _table(hall.get("priority_boosts", DEFAULT_PRIORITY_BOOSTS), "hall").items()
    }
    classes = {
        str(k): _number(v, f"visitors.priority_classes.{k}", low=0)
        for k, v in _table(
            visitors.get("priority_classes", {"elderly": 0.7, "disability": 0.2, "pregnancy": 0.1}),
            "visitors.priority_classes",
        ).items()
    }
    unknown = sorted(set(classes) - set(boosts))
    if unknown:
        raise ScenarioError(
            f"visitors.priority_classes: {unknown[0]!r} is not in hall.priority_boosts"
        )
    run = _table(data.get("run", {}), "run")
    _known(run, "run", {"seeds", "first_seed"})
    goals_table = _table(data.get("goals", {}), "goals")
    _known(goals_table, "goals", set(GOAL_NAMES))
    goals = {str(k): _number(v, f"goals.{k}", low=0) for k, v in goals_table.items()}
    return Scenario(
        name=name,
        description=_text(data.get("description", ""), "description"),
        timezone=timezone,
        day=day,
        hours=hours,
        load=load,
        visits=visits,
        matters=matters,
        counters=counters,
        hourly=hourly,
        bookings=_bookings(_table(data.get("bookings", {}), "bookings"), matters),
        priority_share=_number(visitors.get("priority_share", 0.15), "priority_share", 0, 1),
        priority_classes=classes,
        transfer_share=_number(visitors.get("transfer_share", 0.05), "transfer_share", 0, 1),
        secondary_speed=_number(visitors.get("secondary_speed", 1.0), "secondary_speed", 0.1, 5),
        priority_boosts=boosts,
        secondary_after_minutes=int(
            _number(hall.get("secondary_after_minutes", 20), "secondary_after_minutes", 0, 480)
        ),
        seeds=int(_number(run.get("seeds", 5), "run.seeds", low=1, high=1000, whole=True)),
        first_seed=int(_number(run.get("first_seed", 1), "run.first_seed", low=0, whole=True)),
        goals=goals,
        source=source,
    )


def _matters(data: Any) -> tuple[Matter, ...]:
    if not isinstance(data, list) or not data:
        raise ScenarioError("matters: give at least one [[matters]] table with prefix and service")
    found: list[Matter] = []
    for index, item in enumerate(data, 1):
        where = f"matters #{index}"
        item = _table(item, where)
        _known(item, where, {
            "prefix", "name", "share", "service_mean", "service_cv", "service_dist",
            "bookable", "transfer_to", "typical_minutes",
        })  # fmt: skip
        prefix = _text(item.get("prefix"), f"{where}.prefix")
        if not (prefix.isalpha() and prefix.isupper() and len(prefix) <= 2):
            raise ScenarioError(f"{where}.prefix {prefix!r}: one or two capital letters, e.g. A")
        dist = _text(item.get("service_dist", "lognormal"), f"{where}.service_dist")
        if dist not in DISTRIBUTIONS:
            raise ScenarioError(f"{where}.service_dist {dist!r}: use {', '.join(DISTRIBUTIONS)}")
        if "service_mean" not in item:
            raise ScenarioError(f"{where}: give service_mean, the mean minutes of a service")
        service = ServiceTime(
            mean=_number(item["service_mean"], f"{where}.service_mean", low=0.1, high=480),
            cv=1.0
            if dist == "exponential"
            else _number(item.get("service_cv", 0.6), f"{where}.service_cv", low=0, high=5),
            dist=dist,
        )
        transfer_to = item.get("transfer_to", [])
        if not isinstance(transfer_to, list) or not all(isinstance(t, str) for t in transfer_to):
            raise ScenarioError(f'{where}.transfer_to: a list of matter prefixes, e.g. ["E"]')
        found.append(
            Matter(
                prefix=prefix,
                name=_text(item.get("name", prefix), f"{where}.name"),
                share=_number(item.get("share", 1.0), f"{where}.share", low=0),
                service=service,
                bookable=bool(item.get("bookable", False)),
                transfer_to=tuple(transfer_to),
                typical_minutes=int(
                    _number(item.get("typical_minutes", 0), f"{where}.typical_minutes", 0, 480)
                ),
            )
        )
    prefixes = [m.prefix for m in found]
    duplicate = next((p for p in prefixes if prefixes.count(p) > 1), None)
    if duplicate:
        raise ScenarioError(f"matters: prefix {duplicate} is used twice")
    for m in found:
        for target in m.transfer_to:
            if target not in prefixes or target == m.prefix:
                raise ScenarioError(f"matter {m.prefix}: transfer_to {target!r} is no other matter")
    if sum(m.share for m in found) <= 0:
        raise ScenarioError("matters: at least one share must be above 0")
    return tuple(found)


def _counters(data: Any, prefixes: set[str]) -> tuple[Counter, ...]:
    if not isinstance(data, list) or not data:
        raise ScenarioError("counters: give at least one [[counters]] table with primary = [...]")
    found: list[Counter] = []
    for index, item in enumerate(data, 1):
        where = f"counters #{index}"
        item = _table(item, where)
        _known(item, where, {"number", "primary", "secondary", "opens", "closes", "breaks"})
        profile: dict[str, ServiceLevel] = {}
        for level in (ServiceLevel.PRIMARY, ServiceLevel.SECONDARY):
            listed = item.get(str(level), [])
            if not isinstance(listed, list):
                raise ScenarioError(f'{where}.{level}: a list of matter prefixes, e.g. ["A"]')
            for prefix in listed:
                if not isinstance(prefix, str) or prefix not in prefixes:
                    raise ScenarioError(f"{where}.{level}: {prefix!r} is not a matter's prefix")
                profile.setdefault(prefix, level)
        if not profile:
            raise ScenarioError(f"{where}: serves no matter; give primary = [...]")
        opens = item.get("opens")
        closes = item.get("closes")
        found.append(
            Counter(
                number=int(_number(item.get("number", index), f"{where}.number", 1, whole=True)),
                profile=profile,
                opens=_clock(opens, f"{where}.opens") if opens else None,
                closes=_clock(closes, f"{where}.closes") if closes else None,
                breaks=_periods(item.get("breaks", []), f"{where}.breaks"),
            )
        )
    numbers = [c.number for c in found]
    if len(set(numbers)) != len(numbers):
        raise ScenarioError("counters: two counters have the same number")
    return tuple(found)


def _bookings(data: Mapping[str, Any], matters: Sequence[Matter]) -> Bookings:
    _known(data, "bookings", {
        "share", "slot_minutes", "capacity", "walk_in_share", "target_load",
        "checkin_early_minutes", "checkin_late_minutes", "late_policy", "no_show",
        "arrive_mean_minutes", "arrive_sd_minutes",
    })  # fmt: skip
    share = _number(data.get("share", 0.0), "bookings.share", 0, 1)
    if share > 0 and not any(m.bookable for m in matters):
        raise ScenarioError("bookings.share is above 0 but no matter has bookable = true")
    capacity = data.get("capacity", "planned")
    target_load = None
    if capacity == "planned":
        target_load = _number(data.get("target_load", 0.9), "bookings.target_load", 0.1, 1)
    elif capacity != "derived":
        capacity = int(_number(capacity, "bookings.capacity", low=0, whole=True))
    late = data.get("late_policy", "walk_in")
    if late not in {p.value for p in LatePolicy}:
        raise ScenarioError(f"bookings.late_policy {late!r}: use serve_as_due or walk_in")
    try:
        rules = BookingRules(
            slot_minutes=int(_number(data.get("slot_minutes", 30), "bookings.slot_minutes", 5)),
            capacity=None if capacity in ("derived", "planned") else capacity,
            target_load=target_load,
            per_counter=None,
            walk_in_share=_number(data.get("walk_in_share", 0.3), "bookings.walk_in_share", 0, 1),
            checkin_early=timedelta(minutes=_number(
                data.get("checkin_early_minutes", 30), "bookings.checkin_early_minutes", 0)),
            checkin_late=timedelta(minutes=_number(
                data.get("checkin_late_minutes", 15), "bookings.checkin_late_minutes", 0)),
            late_policy=LatePolicy(late),
        )  # fmt: skip
    except ValueError as exc:
        raise ScenarioError(f"bookings: {exc}") from None
    return Bookings(
        share=share,
        rules=rules,
        no_show=_number(data.get("no_show", 0.1), "bookings.no_show", 0, 1),
        arrive_mean=_number(data.get("arrive_mean_minutes", -8.0), "bookings.arrive_mean_minutes"),
        arrive_sd=_number(data.get("arrive_sd_minutes", 7.0), "bookings.arrive_sd_minutes", 0),
    )


def _known(data: Mapping[str, Any], where: str, names: set[str]) -> None:
    unknown = sorted(set(data) - names)
    if unknown:
        raise ScenarioError(
            f"{where}: unknown setting {unknown[0]!r}; known: {', '.join(sorted(names))}"
        )


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ScenarioError(f"{where}: expected a table of settings, got {value!r}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ScenarioError(f"{where}: expected text, got {value!r}")
    return value


def _number(
    value: Any,
    where: str,
    low: float | None = None,
    high: float | None = None,
    whole: bool = False,
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScenarioError(f"{where}: expected a number, got {value!r}")
    if whole and value != int(value):
        raise ScenarioError(f"{where}: expected a whole number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"from {low:g}" if low is not None else "up"
        span += f" to {high:g}" if high is not None else " or more"
        raise ScenarioError(f"{where}: {value!r} is out of range; give a number {span}")
    return float(value)


def _clock(value: Any, where: str) -> time:
    try:
        return parse_clock(_text(value, where))
    except ValueError as exc:
        raise ScenarioError(f"{where}: {exc}") from None


def _periods(value: Any, where: str) -> tuple[tuple[time, time], ...]:
    if not isinstance(value, list):
        raise ScenarioError(f'{where}: a list of [start, end] periods, e.g. [["12:00", "12:30"]]')
    found = []
    for period in value:
        if not isinstance(period, list) or len(period) != 2:
            raise ScenarioError(f"{where}: each period is [start, end], got {period!r}")
        try:
            start, end = parse_clock(period[0]), parse_clock(period[1])
        except ValueError as exc:
            raise ScenarioError(f"{where}: {exc}") from None
        if end <= start:
            raise ScenarioError(f"{where}: {period[0]}-{period[1]} ends before it starts")
        found.append((start, end))
    found.sort()
    for (_, end), (start, _) in itertools.pairwise(found):
        if start < end:
            raise ScenarioError(f"{where}: periods overlap; merge them into one")
    return tuple(found)


def _normal_quantile(p: float) -> float:
    """The standard normal quantile, kept off the infinite ends."""
    return _STANDARD_NORMAL.inv_cdf(min(max(p, 1e-12), 1 - 1e-12))
