"""``onedoor simulate``: run a hall day under the queue policies and print the figures."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from tqdm import tqdm

from .policies import POLICIES
from .report import as_json, hourly_table, table
from .runner import RunResult, run
from .scenario import Scenario, ScenarioError, load_scenario, shipped_scenarios

EXAMPLES = """examples:
  onedoor simulate standard-075                      the standard day at load 0.75
  onedoor simulate standard-092 --compare fifo,v1    v2 against FIFO and OneDoor v1
  onedoor simulate my-hall.toml --seeds 40 --json    your own scenario, as JSON
  onedoor simulate --from-hall 1 --days 28           hall 1's configuration and history
  onedoor simulate standard-092 --staffing --target-p90 20
                                                     counters per hour for walk-in p90 ≤ 20
shipped scenarios: """


def add_parser(sub: Any, handler: Callable[..., int]) -> None:
    """The ``simulate`` subcommand of ``onedoor``."""
    simulate = sub.add_parser(
        "simulate",
        help="simulate a hall day: queue policies, wait estimates, staffing (docs/queue.md)",
        epilog=EXAMPLES + ", ".join(shipped_scenarios()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    simulate.add_argument(
        "scenario", nargs="?", help="a scenario TOML file or a shipped scenario's name"
    )
    simulate.add_argument(
        "--from-hall", type=int, metavar="N", help="take hall N's configuration and history"
    )
    simulate.add_argument(
        "--days", type=int, default=28, help="with --from-hall: days of history (default 28)"
    )
    simulate.add_argument("--seeds", type=int, help="simulated days (default: the scenario's)")
    simulate.add_argument("--first-seed", type=int, help="seed of the first day")
    simulate.add_argument("--policy", default="v2", choices=sorted(POLICIES), help="default v2")
    simulate.add_argument(
        "--compare",
        default="fifo",
        help="baselines on the same days, comma-separated: fifo, v1 (default fifo)",
    )
    simulate.add_argument("--json", action="store_true", help="print the figures as JSON")
    simulate.add_argument("--hourly", action="store_true", help="also print waits by hour")
    simulate.add_argument(
        "--staffing", action="store_true", help="find the counters per hour for --target-p90"
    )
    simulate.add_argument(
        "--target-p90",
        type=float,
        default=20.0,
        help="with --staffing: walk-in wait p90 to keep under, minutes (default 20)",
    )
    simulate.add_argument(
        "--max-counters",
        type=int,
        help="with --staffing: counters the hall could staff at most (default: twice its own)",
    )
    simulate.add_argument(
        "--save",
        action="store_true",
        help="keep the result for the hall's manager pages (with --from-hall, or --hall)",
    )
    simulate.add_argument("--hall", type=int, help="with --save: the hall to keep it for")
    simulate.add_argument("--quiet", action="store_true", help="no progress bar")
    simulate.set_defaults(run=handler)


def policies_of(args: argparse.Namespace) -> list[str]:
    """The policy under test first, then the baselines, each once."""
    names = [args.policy, *(n.strip() for n in args.compare.split(",") if n.strip())]
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        raise ScenarioError(f"--compare: unknown policy {unknown[0]!r}; use {', '.join(POLICIES)}")
    return list(dict.fromkeys(names))


def scenario_of(args: argparse.Namespace) -> Scenario:
    """The scenario named on the command line (a hall's comes from ``from_hall``)."""
    if not args.scenario:
        names = ", ".join(shipped_scenarios())
        raise ScenarioError(f"give a scenario file or name ({names}), or --from-hall N")
    return load_scenario(args.scenario)


def seeds_of(args: argparse.Namespace, scenario: Scenario) -> list[int]:
    count = args.seeds if args.seeds is not None else scenario.seeds
    first = args.first_seed if args.first_seed is not None else scenario.first_seed
    if count < 1:
        raise ScenarioError("--seeds: give 1 or more")
    return [first + i for i in range(count)]


class Progress:
    """A progress bar on stderr (tqdm), off with --quiet or when asked for JSON on a pipe."""

    def __init__(self, total: int, quiet: bool, what: str) -> None:
        self.bar = tqdm(
            total=total,
            desc=what,
            unit="day",
            file=sys.stderr,
            leave=False,
            disable=True if quiet else None,  # None: only on a terminal
        )

    def __call__(self, done: int) -> None:
        self.bar.update(done)

    def close(self) -> None:
        self.bar.close()


def simulate(scenario: Scenario, args: argparse.Namespace) -> RunResult:
    """Run the scenario as the arguments say, with a progress bar."""
    names = policies_of(args)
    seeds = seeds_of(args, scenario)
    runs = len(seeds) * len(set([*names, "fifo"]))
    progress = Progress(runs, args.quiet, scenario.name)
    try:
        return run(scenario, names, seeds, progress)
    finally:
        progress.close()


def print_result(result: RunResult, args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(as_json(result), ensure_ascii=False, indent=2))
        return
    print(table(result))
    if args.hourly:
        print()
        print("walk-in waits by hour of arrival")
        print(hourly_table(result))


def main(settings: Any, args: argparse.Namespace, with_bus: Callable[..., Any]) -> int:
    """Run ``onedoor simulate``; a bad scenario or argument is a message and exit code 2."""
    from queue_server.service.errors import Invalid, NotFound

    hall = args.from_hall if args.from_hall is not None else args.hall
    if args.save and hall is None:
        print("onedoor simulate: --save needs --from-hall N or --hall N", file=sys.stderr)
        return 2
    try:
        if args.from_hall is not None or args.save:
            from queue_server.db.migrate import upgrade

            # The hall's database, at the schema this version reads and writes.
            upgrade(settings.effective_database_url)
        if args.from_hall is not None:
            if args.scenario:
                raise ScenarioError("give a scenario or --from-hall, not both")
            scenario = with_bus(settings, lambda bus: _from_hall(bus, args.from_hall, args.days))
        else:
            scenario = scenario_of(args)
        if args.staffing:
            return _staffing(scenario, args)
        result = simulate(scenario, args)
    except (ScenarioError, Invalid, NotFound) as exc:
        print(f"onedoor simulate: {exc}", file=sys.stderr)
        return 2
    print_result(result, args)
    if args.save:
        assert hall is not None
        with_bus(settings, lambda bus: _save(bus, hall, result))
        print(f"kept for hall {hall}'s manager pages", file=sys.stderr)
    return 0


async def _from_hall(bus: Any, hall_id: int, days: int) -> Scenario:
    from .history import scenario_from_hall

    if days < 1:
        raise ScenarioError("--days: give 1 or more days of history")
    return await bus.run(scenario_from_hall, hall_id, days)  # type: ignore[no-any-return]


async def _save(bus: Any, hall_id: int, result: RunResult) -> None:
    from .saved import save_run

    await bus.run(save_run, hall_id, as_json(result))


def _staffing(scenario: Scenario, args: argparse.Namespace) -> int:
    from .staffing import find_staffing, staffing_table

    if args.target_p90 <= 0:
        raise ScenarioError("--target-p90: give the minutes, e.g. 20")
    if args.max_counters is not None and args.max_counters < 1:
        raise ScenarioError("--max-counters: give 1 or more")
    seeds = seeds_of(args, scenario)
    most = args.max_counters or 2 * len(scenario.counters)
    progress = Progress(most * 24 + 1, args.quiet, f"staffing {scenario.name}")
    try:
        found = find_staffing(
            scenario, args.target_p90, seeds, args.policy, progress, max_counters=most
        )
    finally:
        progress.close()
    if args.json:
        from dataclasses import asdict

        print(json.dumps(asdict(found), ensure_ascii=False, indent=2))
    else:
        print(staffing_table(found))
    return 0 if found.met else 1
