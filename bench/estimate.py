"""The wait estimate's projection in a kiosk rush, in one process: ``python -m bench.estimate``
(``--smoke`` for CI).

No database and no HTTP: the domain's projection alone (``domain/estimate.py``), on a hall
like ``bench.run``'s (three matters of 8, 12 and 10 minutes, 16 open counters each serving
one matter at primary level and the other two at secondary, an elderly priority boost of
15 minutes), with ``--waiting`` tickets waiting (300) and priority visitors expected.
Then ``--joining`` walk-ins (2,500; a twentieth of them elderly) join a second apart, in
batches as the server's projection takes them from the hall's log (``--batch``, 4), and
each is told its wait (``estimate.resume``, then ``tell_traced``: what a kiosk answer
costs the estimate).

Rows, each the CPU (``time.process_time``) per walk-in joining and told:

- **kept keys**: the server's chooser (``chooser(reasons=False)``); without appointments
  a turn compares the kept keys of the first tickets it could call (``_Pool.least_at``);
- **policy asked at every turn** (the reference): the same chooser, handed to the
  projection as a plain function, so that every turn asks it over its contenders, as every
  turn did until commit 7c21f4c;
- the same two with walk-ins joining one at a time.

Both ways must tell every walk-in the same (minutes, range, people ahead); exit 1 if not.
The ratio of the two rows is the figure to compare across runs: the machine's speed moves
both.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from queue_server.domain.estimate import Told, project_traced, resume, tell_traced
from queue_server.domain.floor import Candidate, CounterNow, Floor, ServiceStats
from queue_server.domain.model import CounterState, ServiceLevel, TicketKind
from queue_server.domain.policy import Choice, Chooser, PolicyConfig, chooser

from .hall import MATTERS
from .report import format_columns, verdict

NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
COUNTERS = 16
FULL = (300, 2500)
SMOKE = (100, 200)


@dataclass(frozen=True)
class Run:
    name: str
    joined: int
    cpu_s: float
    told: list[Told | None]

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu_s / self.joined


def hall(waiting: int) -> tuple[Floor, list[int]]:
    """The hall's floor with ``waiting`` walk-ins waiting (every 3 s until now), and its
    matters."""
    matters = list(range(1, len(MATTERS) + 1))
    minutes = {m: float(spec[3]) for m, spec in zip(matters, MATTERS, strict=True)}
    counters = []
    for i in range(COUNTERS):
        levels = {
            m: ServiceLevel.PRIMARY if n == i % len(matters) else ServiceLevel.SECONDARY
            for n, m in enumerate(matters)
        }
        counters.append(CounterNow(i + 1, levels, CounterState.OPEN))
    dice = random.Random(7)
    tickets = [
        walk_in(i, matters, NOW - timedelta(seconds=3 * (waiting - i)), dice)
        for i in range(1, waiting + 1)
    ]
    floor = Floor(
        counters=counters,
        waiting=tickets,
        expected=[],
        stats={m: ServiceStats((minutes[m],) * 20, minutes[m]) for m in matters},
        now=NOW,
        arrivals={(m, "elderly"): 0.2 for m in matters},
    )
    return floor, matters


def walk_in(ticket_id: int, matters: list[int], at: datetime, dice: random.Random) -> Candidate:
    priority = "elderly" if dice.random() < 0.05 else "none"
    return Candidate(
        ticket_id, f"W{ticket_id}", matters[ticket_id % len(matters)], TicketKind.WALK_IN,
        priority, at,
    )  # fmt: skip


def rush(name: str, choose: Chooser, waiting: int, joining: int, batch: int) -> Run:
    """``joining`` walk-ins join ``waiting`` in batches of ``batch``, each told its wait."""
    floor, matters = hall(waiting)
    dice = random.Random(11)
    arrivals = [
        walk_in(i, matters, NOW + timedelta(seconds=i - waiting), dice)
        for i in range(waiting + 1, waiting + joining + 1)
    ]
    traced = project_traced(floor, choose)
    told: list[Told | None] = []
    cpu = time.process_time()
    for start in range(0, joining, batch):
        joined = arrivals[start : start + batch]
        traced = resume(traced, joined, choose)
        told.extend(tell_traced(c.ticket_id, traced, NOW, choose) for c in joined)
    return Run(name, joining, time.process_time() - cpu, told)


def asked_every_turn(choose: Chooser) -> Chooser:
    """``choose`` as a plain function: the projection then asks it at every turn."""

    def ask(
        counter: CounterNow, waiting: Sequence[Candidate], now: datetime, floor: Floor | None
    ) -> Choice | None:
        return choose(counter, waiting, now, floor)

    return ask


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.estimate", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a short run (CI)")
    parser.add_argument("--waiting", type=int, help=f"waiting at the start ({FULL[0]})")
    parser.add_argument("--joining", type=int, help=f"walk-ins joining ({FULL[1]})")
    parser.add_argument("--batch", type=int, default=4, help="walk-ins per extension (4)")
    args = parser.parse_args(argv)
    waiting, joining = SMOKE if args.smoke else FULL
    waiting, joining = args.waiting or waiting, args.joining or joining
    kept = chooser(
        PolicyConfig(priority_boosts={"elderly": timedelta(minutes=15)}),
        ZoneInfo("Asia/Shanghai"),
        reasons=False,
    )
    runs = []
    for batch in dict.fromkeys((args.batch, 1)):
        runs.append(rush(f"kept keys, {batch} at a time", kept, waiting, joining, batch))
        runs.append(
            rush(f"policy asked at every turn, {batch} at a time", asked_every_turn(kept),
                 waiting, joining, batch)
        )  # fmt: skip
    print(
        f"bench.estimate: {COUNTERS} counters, {len(MATTERS)} matters, {waiting} waiting, "
        f"{joining} walk-ins joining, each told; CPU of this process per walk-in"
    )
    rows = []
    for kept_run, asked_run in zip(runs[::2], runs[1::2], strict=True):
        for run in (kept_run, asked_run):
            rows.append((run.name, f"{run.cpu_ms:.3f}", f"{run.cpu_ms / asked_run.cpu_ms:.2f}"))
    print(format_columns(("projection", "CPU ms a walk-in", "× asked"), rows, {"projection"}))
    return verdict(
        [
            f"{kept_run.name}: told otherwise than with the policy asked at every turn"
            for kept_run, asked_run in zip(runs[::2], runs[1::2], strict=True)
            if kept_run.told != asked_run.told
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
