"""One simulated day's visitors, drawn from a scenario and a seed.

Everything random about a visitor is drawn here, once, before any policy runs: when they
come, for which matter, whether they booked (and which slot they got, whether they come
and how punctual they are), their priority class, whether they will be transferred, and
one uniform number per service that becomes its duration. Every policy compared on a seed
therefore faces the very same visitors with the very same needs (common random numbers),
so the differences between policies are the policies', not the dice's.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from booking.domain.booking import Booking, make_booking
from booking.domain.calendar import HallCalendar, Slot
from booking.domain.capacity import GRID_MINUTES, HallPlan, plan_day
from booking.domain.errors import OutsideWindow, SlotFull
from booking.domain.rules import BookingRules
from booking.domain.rules import slot_throughput as throughput
from booking.domain.window import release_moment
from queue_server.domain.hours import OpeningHours, Period
from queue_server.domain.model import NO_PRIORITY, ServiceLevel

from .scenario import Counter, Matter, Scenario

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Visitor:
    """One person's visit: everything the dice decided about it."""

    id: int
    matter: str
    arrives: float | None
    """Minutes after the day's local midnight; None: a booked visitor who does not come."""
    priority: str
    service_u: float
    """Quantile of this visit's service time in its matter's distribution."""
    transfer_to: str | None = None
    transfer_u: float = 0.5
    booking: Booking | None = None

    @property
    def booked(self) -> bool:
        return self.booking is not None


@dataclass(frozen=True)
class Day:
    scenario: Scenario
    seed: int
    visitors: tuple[Visitor, ...]
    midnight: datetime
    """The day's local midnight as an aware UTC datetime (minute 0 of the simulation)."""
    unbooked: int
    """Visitors who wanted to book but found no slot and came as walk-ins."""

    def at(self, minute: float) -> datetime:
        return self.midnight + timedelta(minutes=minute)


def minutes_of(moment: time) -> float:
    return 24 * 60.0 if moment == time.max else moment.hour * 60 + moment.minute


def counter_minutes(scenario: Scenario, counter: Counter) -> float:
    """The minutes a counter is staffed during the hall's hours, breaks excluded."""
    opens = minutes_of(counter.opens) if counter.opens else 0.0
    closes = minutes_of(counter.closes) if counter.closes else 24 * 60.0
    total = 0.0
    for start, end in scenario.hours:
        total += max(0.0, min(closes, minutes_of(end)) - max(opens, minutes_of(start)))
    for start, end in counter.breaks:
        total -= max(0.0, min(closes, minutes_of(end)) - max(opens, minutes_of(start)))
    return max(0.0, total)


def _work(scenario: Scenario, matter: Matter, configured: bool = False) -> float:
    """Expected counter minutes a visitor of ``matter`` needs (a transfer's second service
    too): by the service times, or by the configured minutes the server plans with."""

    def minutes(m: Matter) -> float:
        return float(m.configured_minutes) if configured else m.service.mean

    follow = 0.0
    if matter.transfer_to:
        onward = [minutes(scenario.matter(t)) for t in matter.transfer_to]
        follow = scenario.transfer_share * sum(onward) / len(onward)
    return minutes(matter) + follow


def work_per_visit(scenario: Scenario) -> float:
    """Expected counter minutes one arriving visitor needs (a transfer's second service too)."""
    total_share = sum(m.share for m in scenario.matters)
    return sum(m.share / total_share * _work(scenario, m) for m in scenario.matters)


def planned_visits(scenario: Scenario) -> float:
    """Expected arriving visitors: given, or from the load over the counters' minutes."""
    if scenario.visits is not None:
        return float(scenario.visits)
    capacity = sum(counter_minutes(scenario, c) for c in scenario.counters)
    return (scenario.load or 0.0) * capacity / work_per_visit(scenario)


def hall_calendar(scenario: Scenario) -> HallCalendar:
    periods = tuple(Period(start, end) for start, end in scenario.hours)
    return HallCalendar(OpeningHours({day: periods for day in WEEKDAYS}))


def slot_throughput(scenario: Scenario, matter: Matter, rules: BookingRules) -> float:
    """Visitors of ``matter`` the counters can serve in one slot: each counter serving it at
    primary level gives its time in equal parts to its primary matters, each visit taking the
    matter's configured minutes (as the server reckons it)."""
    shares = [
        1.0 / sum(1 for level in c.profile.values() if level == ServiceLevel.PRIMARY)
        for c in scenario.counters
        if c.profile.get(matter.prefix) == ServiceLevel.PRIMARY
    ]
    return throughput(rules.slot_minutes, matter.configured_minutes, shares)


def hall_plan(
    scenario: Scenario,
    arrivals: _Arrivals,
    walk_in_minutes: float,
    midnight: datetime,
    target_load: float,
) -> HallPlan:
    """The booking plan the server would make for this day from a record of days like it
    (``booking.plan``): ``walk_in_minutes`` of walk-ins' (and their transfers') counter time
    spread over the day as they arrive, each visit its configured minutes, and the counters
    at work in each stretch as their opening, pausing and closing would have recorded them
    (the scenario's counters' hours and breaks)."""
    spans = [(int(minutes_of(a)), int(minutes_of(b))) for a, b in scenario.hours]
    asked: dict[int, float] = {}
    staffed: dict[int, float] = {}
    for first, last in spans:
        for minute in range(first, last, GRID_MINUTES):
            share = arrivals.mass(minute, minute + GRID_MINUTES) / arrivals.total
            asked[minute] = walk_in_minutes * share if arrivals.total else 0.0
            staffed[minute] = sum(
                _at_work(scenario, c, minute, minute + GRID_MINUTES) for c in scenario.counters
            )
    return plan_day(midnight, spans, staffed, asked, target_load)


def _at_work(scenario: Scenario, counter: Counter, a: float, b: float) -> float:
    """Minutes between ``a`` and ``b`` the counter is open (hours, its own, less breaks)."""
    opens, closes = counter_span(scenario, counter)
    present = sum(
        _overlap(a, b, (max(opens, minutes_of(s)), min(closes, minutes_of(e))))
        for s, e in scenario.hours
    )
    for pause in counter.breaks:
        present -= _overlap(a, b, (minutes_of(pause[0]), minutes_of(pause[1])))
    return max(0.0, present)


def _overlap(a: float, b: float, span: tuple[float, float]) -> float:
    return max(0.0, min(b, span[1]) - max(a, span[0]))


def counter_span(scenario: Scenario, counter: Counter) -> tuple[float, float]:
    """From when to when a counter is staffed (the hall's first opening to its closing
    unless the counter opens later or closes earlier)."""
    opens = min(minutes_of(start) for start, _ in scenario.hours)
    closes = max(minutes_of(end) for _, end in scenario.hours)
    if counter.opens:
        opens = max(opens, minutes_of(counter.opens))
    if counter.closes:
        closes = min(closes, minutes_of(counter.closes))
    return opens, closes


class _Arrivals:
    """Walk-in arrival times: a Poisson process whose rate follows the hourly profile."""

    def __init__(self, scenario: Scenario) -> None:
        marks = sorted(scenario.hourly.items())
        pieces: list[tuple[float, float, float]] = []  # start, end, rate weight
        for start, end in scenario.hours:
            a, b = minutes_of(start), minutes_of(end)
            cuts = sorted({a, b, *(minutes_of(t) for t, _ in marks if a < minutes_of(t) < b)})
            for lo, hi in itertools.pairwise(cuts):
                weight = 1.0
                for t, w in marks:
                    if minutes_of(t) <= lo:
                        weight = w
                pieces.append((lo, hi, weight))
        self.pieces = [p for p in pieces if p[2] > 0 and p[1] > p[0]]
        self.cumulative = [0.0]
        for lo, hi, w in self.pieces:
            self.cumulative.append(self.cumulative[-1] + (hi - lo) * w)

    @property
    def total(self) -> float:
        return self.cumulative[-1]

    def mass(self, a: float, b: float) -> float:
        """The weighted arrival intensity between minutes ``a`` and ``b``."""
        return sum(w * _overlap(a, b, (lo, hi)) for lo, hi, w in self.pieces)

    def time_at(self, mass: float) -> float:
        """The minute at which ``mass`` of the day's (weighted) arrival intensity is reached."""
        i = max(0, min(len(self.pieces) - 1, bisect.bisect_right(self.cumulative, mass) - 1))
        lo, hi, w = self.pieces[i]
        return min(hi, lo + (mass - self.cumulative[i]) / w)

    def process(self, rng: random.Random, expected: float) -> list[float]:
        """Arrival minutes of a Poisson process with ``expected`` arrivals over the day."""
        if expected <= 0 or self.total <= 0:
            return []
        found: list[float] = []
        mass = 0.0
        step = self.total / expected
        while True:
            mass += rng.expovariate(1.0) * step
            if mass >= self.total:
                return found
            found.append(self.time_at(mass))


class _Person:
    """A planned visitor and their dice, drawn in one go so every visitor uses as many."""

    __slots__ = ("dice", "gauss", "matter", "minute", "wants_booking")

    def __init__(self, minute: float, matter: str, wants_booking: bool, rng: random.Random):
        self.minute, self.matter, self.wants_booking = minute, matter, wants_booking
        self.dice = [rng.random() for _ in range(7)]
        self.gauss = rng.gauss(0.0, 1.0)


def _choose(rng: random.Random, weights: Sequence[tuple[str, float]]) -> str:
    return _pick(rng.random(), weights)


def _pick(u: float, weights: Sequence[tuple[str, float]]) -> str:
    total = sum(w for _, w in weights)
    pick = u * total
    for name, w in weights:
        pick -= w
        if pick < 0:
            return name
    return weights[-1][0]


def draw_day(scenario: Scenario, seed: int, visits: float | None = None) -> Day:
    """The visitors of one day of ``scenario`` for ``seed``; ``visits`` overrides the
    expected number (the staffing search keeps the visitors while changing counters)."""
    tz = scenario.tz
    midnight = datetime.combine(scenario.day, time(0), tzinfo=tz).astimezone(UTC)
    expected = planned_visits(scenario) if visits is None else visits
    arrivals = _Arrivals(scenario)
    matters = [(m.prefix, m.share) for m in scenario.matters]
    bookable_share = sum(m.share for m in scenario.matters if m.bookable)
    total_share = sum(m.share for m in scenario.matters)
    # Of a bookable matter's visitors this share books, so that ``bookings.share`` of all
    # visitors come booked.
    propensity = 0.0
    if bookable_share > 0:
        propensity = min(1.0, scenario.bookings.share * total_share / bookable_share)
    no_show = scenario.bookings.no_show
    # Booked visitors who do not come are planned on top, so that the arriving ones are
    # still ``expected`` (a no-show costs the hall a slot, not a visitor).
    expected /= max(0.05, 1.0 - scenario.bookings.share * no_show)
    # Separate streams, so that e.g. more bookings do not shift every walk-in's dice.
    arrival_rng = random.Random(f"{seed}:arrivals")
    person_rng = random.Random(f"{seed}:people")
    slot_rng = random.Random(f"{seed}:slots")
    people = []
    for minute in arrivals.process(arrival_rng, expected):
        matter = _choose(person_rng, matters)
        wants_booking = scenario.matter(matter).bookable and person_rng.random() < propensity
        people.append(_Person(minute, matter, wants_booking, person_rng))
    calendar = hall_calendar(scenario)
    rules = scenario.bookings.rules
    walk_in_work = 0.0
    for m in scenario.matters:
        walk_ins = expected * m.share / total_share * (1 - (propensity if m.bookable else 0.0))
        walk_in_work += walk_ins * _work(scenario, m, configured=True)
    plan = hall_plan(scenario, arrivals, walk_in_work, midnight, rules.target_load or 1.0)
    slots = {
        m.prefix: calendar.slots(
            scenario.day,
            rules,
            tz,
            counters=sum(1 for c in scenario.counters if m.prefix in c.profile),
            throughput=slot_throughput(scenario, m, rules),
            demand=plan.demand(slot_throughput(scenario, m, rules)),
        )
        for m in scenario.matters
        if m.bookable
    }
    taken: dict[tuple[str, datetime], int] = {}
    # Booked the evening before, or, when the day opens for booking on the day itself,
    # the moment it opens (slots that began by then cannot be booked).
    booked_at = max(midnight - timedelta(hours=12), release_moment(scenario.day, tz, rules))
    bookings: dict[int, Booking] = {}
    order = [i for i, p in enumerate(people) if p.wants_booking]
    slot_rng.shuffle(order)  # bookings are made in no particular order of the day
    for index in order:
        person = people[index]
        wanted = midnight + timedelta(minutes=person.minute)
        found = _book(slots[person.matter], taken, person.matter, wanted, index, booked_at,
                      rules, scenario)  # fmt: skip
        if found is not None:
            bookings[index] = found
    visitors: list[Visitor] = []
    for index, person in enumerate(people):
        priority = NO_PRIORITY
        if person.dice[0] < scenario.priority_share and scenario.priority_classes:
            priority = _pick(person.dice[1], list(scenario.priority_classes.items()))
        transfer = None
        targets = scenario.matter(person.matter).transfer_to
        if person.dice[2] < scenario.transfer_share and targets:
            transfer = targets[min(len(targets) - 1, int(person.dice[3] * len(targets)))]
        booking = bookings.get(index)
        arrives: float | None = person.minute
        if booking is not None:
            slot_minute = (booking.slot_start - midnight).total_seconds() / 60
            punctual = scenario.bookings.arrive_mean + scenario.bookings.arrive_sd * person.gauss
            comes = person.dice[4] >= no_show
            arrives = max(0.0, slot_minute + punctual) if comes else None
        visitors.append(
            Visitor(
                id=len(visitors) + 1,
                matter=person.matter,
                arrives=arrives,
                priority=priority,
                service_u=person.dice[5],
                transfer_to=transfer,
                transfer_u=person.dice[6],
                booking=booking,
            )
        )
    unbooked = sum(1 for i in order if i not in bookings)
    return Day(scenario, seed, tuple(visitors), midnight, unbooked)


def _book(
    slots: list[Slot],
    taken: dict[tuple[str, datetime], int],
    matter: str,
    wanted: datetime,
    index: int,
    now: datetime,
    rules: BookingRules,
    scenario: Scenario,
) -> Booking | None:
    """Book the free slot nearest to ``wanted`` through the booking rules; None if all full."""
    by_distance = sorted(slots, key=lambda s: (abs((s.start - wanted).total_seconds()), s.start))
    for slot in by_distance:
        key = (matter, slot.start)
        try:
            booking = make_booking(
                hall_id=1,
                service_id=ord(matter[0]),
                slot=slot,
                name=f"Visitor {index}",
                phone=f"139{index:08d}",
                id_tail=None,
                code=f"SIM{index:05d}",
                now=now,
                tz=scenario.tz,
                rules=rules,
                taken=taken.get(key, 0),
                existing=(),
            )
        except (SlotFull, OutsideWindow):
            continue
        taken[key] = taken.get(key, 0) + 1
        return booking
    return None


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` (0..1) percentile by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
