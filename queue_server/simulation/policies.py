"""The policies a simulation can run: OneDoor's own (the server's code) and baselines.

- ``v2``: the policy and estimate the server runs (``queue_server.domain``);
- ``v1``: OneDoor's first policy and estimate, kept to measure v2 against;
- ``fifo``: each counter calls the oldest waiting ticket it serves; no estimate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from queue_server.domain import estimate as estimates
from queue_server.domain import policy
from queue_server.domain.floor import Candidate, CounterNow, Floor
from queue_server.domain.model import CounterState
from queue_server.domain.policy import Choice, PolicyConfig

from . import legacy
from .engine import ChoosePolicy, Estimator
from .scenario import Scenario


@dataclass(frozen=True)
class PolicyUnderTest:
    name: str
    choose: ChoosePolicy
    estimate: Estimator | None


def config_of(scenario: Scenario) -> PolicyConfig:
    """The policy's tunables from the scenario's hall settings, as the server reads a hall's."""
    return PolicyConfig(
        priority_boosts={k: timedelta(minutes=v) for k, v in scenario.priority_boosts.items()},
        secondary_handicap=timedelta(minutes=scenario.secondary_after_minutes),
    )


def fifo(
    counter: CounterNow, waiting: Sequence[Candidate], now: datetime, floor: Floor | None
) -> Choice | None:
    """The oldest waiting ticket the counter serves (by the time it joined the queue)."""
    mine = [c for c in waiting if c.service_id in counter.profile]
    if not mine:
        return None
    first = min(mine, key=lambda c: (c.queued_at, c.ticket_id))
    return Choice(first, 0, "first come, first served")


def _v1(scenario: Scenario) -> PolicyUnderTest:
    config = legacy.PolicyConfig(
        secondary_after=timedelta(minutes=scenario.secondary_after_minutes),
        priority_boosts={k: timedelta(minutes=v) for k, v in scenario.priority_boosts.items()},
    )
    tz = scenario.tz

    def choose(
        counter: CounterNow, waiting: Sequence[Candidate], now: datetime, floor: Floor | None
    ) -> Choice | None:
        return legacy.choose_next(counter.profile, waiting, now, config, tz)

    def estimate(ticket_id: int, floor: Floor, now: datetime) -> estimates.Told | None:
        ticket = next(c for c in floor.waiting if c.ticket_id == ticket_id)
        same = [c for c in floor.waiting if c.service_id == ticket.service_id]
        ahead = legacy.people_ahead(ticket_id, ticket.service_id, same, now, config, tz)
        stat = floor.stat(ticket.service_id)
        open_counters = sum(
            1 for c in floor.counters
            if c.state == CounterState.OPEN and ticket.service_id in c.profile
        )  # fmt: skip
        told = legacy.estimate_wait(
            ahead,
            [timedelta(minutes=m) for m in stat.recent],
            int(stat.typical_minutes),
            open_counters,
        )
        if told.minutes is None:
            return None
        return estimates.Told(told.minutes, told.minutes, told.minutes, ahead, told.basis)

    return PolicyUnderTest("v1", choose, estimate)


def _v2(scenario: Scenario) -> PolicyUnderTest:
    choose = policy.chooser(config_of(scenario), scenario.tz)

    def estimate(ticket_id: int, floor: Floor, now: datetime) -> estimates.Told | None:
        return estimates.tell(ticket_id, floor, choose)

    return PolicyUnderTest("v2", choose, estimate)


def _fifo(scenario: Scenario) -> PolicyUnderTest:
    return PolicyUnderTest("fifo", fifo, None)


POLICIES: dict[str, Callable[[Scenario], PolicyUnderTest]] = {
    "v2": _v2,
    "v1": _v1,
    "fifo": _fifo,
}


def policy_named(name: str, scenario: Scenario) -> PolicyUnderTest:
    try:
        return POLICIES[name](scenario)
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; use {', '.join(POLICIES)}") from None
