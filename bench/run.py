"""Benchmark OneDoor: ``python -m bench.run`` (full, a few minutes) or ``--smoke`` (CI, < 1 min).

Per configuration (SQLite 1 worker, PostgreSQL 1 worker, PostgreSQL 2 workers): start a fresh
server pinned to all CPUs but the last, set up a hall with 20 counters, then from a load
generator process pinned to the last CPU issue tickets concurrently ("issue") and drain them
from every counter at once ("call-next"). Prints a table, writes it to
bench/results/latest.txt, and exits 1 if a correctness check failed, a 5xx was answered or a
configuration could not run. PostgreSQL configurations are skipped when it is unreachable,
unless ONEDOOR_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import signal
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from . import load, postgres, procs
from .load import LoadOutcome, LoadPlan
from .report import LEGEND, Row, failure_row, format_table, phase_row
from .server import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    RunningServer,
    ServerError,
    ServerSpec,
    running_server,
)
from .stats import PhaseResult, Verdict, check_calls, check_numbers

RESULTS = Path(__file__).parent / "results"
COUNTERS = 20
REQUIRE_SERVICES_ENV = "ONEDOOR_REQUIRE_SERVICES"
CONFIGS = ("sqlite-1w", "postgres-1w", "postgres-2w")
LOG_MARKERS = ("transaction retried", "Traceback", "unhandled error")
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception)\b.*$", re.MULTILINE)
"""The last line of a Python traceback, e.g. ``FileExistsError: [Errno 17] File exists``."""
MAX_EXCEPTIONS_SHOWN = 3


@dataclass(frozen=True)
class Sizes:
    tickets: int
    concurrency: int
    phase_timeout_s: float


SMOKE = Sizes(tickets=100, concurrency=50, phase_timeout_s=20)
FULL = Sizes(tickets=1000, concurrency=50, phase_timeout_s=150)


@dataclass(frozen=True)
class CpuPlan:
    server: frozenset[int]
    loadgen: frozenset[int]

    @property
    def shared(self) -> bool:
        return bool(self.server & self.loadgen)


@dataclass
class ConfigReport:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a short run for CI (< 60 s)")
    parser.add_argument("--tickets", type=int, help="tickets to issue per configuration")
    parser.add_argument("--concurrency", type=int, help="concurrent clients in the issue phase")
    parser.add_argument(
        "--only",
        action="append",
        choices=CONFIGS,
        help="run only this configuration (repeatable)",
    )
    return parser.parse_args(argv)


def sizes_from(args: argparse.Namespace) -> Sizes:
    base = SMOKE if args.smoke else FULL
    return Sizes(
        tickets=args.tickets or base.tickets,
        concurrency=args.concurrency or base.concurrency,
        phase_timeout_s=base.phase_timeout_s,
    )


def cpu_plan() -> CpuPlan:
    """The last usable CPU for the load generator, the others for the server (all shared
    when there is only one)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) == 1:
        return CpuPlan(frozenset(cpus), frozenset(cpus))
    return CpuPlan(frozenset(cpus[:-1]), frozenset(cpus[-1:]))


def describe_setup(plan: CpuPlan) -> list[str]:
    """What ran where, for the header of the report."""
    lines = [
        f"load generator: {load.describe()} in 1 process pinned to "
        f"{procs.format_cpus(plan.loadgen)}; server on {procs.format_cpus(plan.server)}",
        "PostgreSQL itself is not pinned: it shares every CPU with the server and the load "
        "generator.",
    ]
    if plan.shared:
        lines.append("note: only one CPU is usable, so server and load generator share it.")
    elif len(plan.server) == 1:
        lines.append(
            f"note: with {len(plan.server) + len(plan.loadgen)} cores, the 2-worker "
            f"configuration runs both server workers on {procs.format_cpus(plan.server)}, "
            "sharing that one core."
        )
    return lines


def postgres_specs() -> tuple[list[ServerSpec], str | None]:
    """The PostgreSQL configurations and, if PostgreSQL is unreachable, why; ValueError if
    the bench database URL is unusable."""
    url = postgres.bench_url()
    reason = postgres.unreachable_reason(url)
    if reason:
        return [], reason
    server_url = postgres.server_url(url)
    return [
        ServerSpec("postgres-1w", server_url, workers=1),
        ServerSpec(
            "postgres-2w",
            server_url,
            workers=2,
            redis_url=os.environ.get("ONEDOOR_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        ),
    ], None


def plan_configs(only: list[str] | None) -> tuple[list[ServerSpec], list[ConfigReport], str]:
    """The configurations to run (``only`` those, if given), failure reports for those that
    cannot run, and a message when the PostgreSQL ones are skipped."""
    wanted = set(only or CONFIGS)
    specs = [ServerSpec("sqlite-1w", None, workers=1)]
    if not wanted & {"postgres-1w", "postgres-2w"}:
        return [s for s in specs if s.name in wanted], [], ""
    try:
        pg_specs, unreachable = postgres_specs()
    except ValueError as exc:
        return [s for s in specs if s.name in wanted], [_failed("postgres-*", str(exc))], ""
    if unreachable and os.environ.get(REQUIRE_SERVICES_ENV) == "1":
        failed = _failed("postgres-*", f"{unreachable} and {REQUIRE_SERVICES_ENV}=1")
        return [s for s in specs if s.name in wanted], [failed], ""
    skipped = f"skipping the PostgreSQL configurations: {unreachable}" if unreachable else ""
    return [s for s in specs + pg_specs if s.name in wanted], [], skipped


def _failed(config: str, why: str) -> ConfigReport:
    return ConfigReport([failure_row(config, "start", why)], [f"{config}: {why}"])


def judge(name: str, outcome: LoadOutcome) -> list[Row]:
    """Table rows for one configuration's outcome, with the correctness verdicts."""
    rows = []
    if outcome.issue is not None:
        verdict = _unless_incomplete(outcome.issue, check_numbers([n for _, n in outcome.issued]))
        rows.append(phase_row(name, outcome.issue, verdict))
    if outcome.call is not None:
        issued_ids = [ticket_id for ticket_id, _ in outcome.issued]
        verdict = _unless_incomplete(outcome.call, check_calls(issued_ids, outcome.called))
        rows.append(phase_row(name, outcome.call, verdict))
    if outcome.error is not None:
        phase = "setup" if outcome.issue is None else "run"
        rows.append(failure_row(name, phase, outcome.error.strip().splitlines()[-1]))
    return rows


def _unless_incomplete(result: PhaseResult, verdict: Verdict) -> Verdict:
    if result.incomplete:
        return Verdict(False, f"incomplete: {result.incomplete}; {verdict.why}")
    return verdict


def phase_notes(result: PhaseResult, server_cpus: int) -> list[str]:
    """CPU use during the phase and a few error samples."""
    wall = result.seconds or 1.0
    notes = [
        f"  {result.phase}: {result.seconds:.1f} s; load generator CPU "
        f"{100 * result.loadgen_cpu_seconds / wall:.0f}% of its core; server CPU "
        f"{100 * (result.server_cpu_seconds or 0) / wall:.0f}% of one core "
        f"({server_cpus} available)"
    ]
    notes += [f"    error: {sample}" for sample in result.error_samples]
    if result.errors > len(result.error_samples):
        notes.append(f"    ... {result.errors - len(result.error_samples)} more errors")
    return notes


def log_notes(log_path: Path) -> list[str]:
    """How often the server log mentions retries, tracebacks and unhandled errors, and the
    distinct exceptions its tracebacks end with."""
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    counts = ", ".join(f"{text.count(marker)} x {marker!r}" for marker in LOG_MARKERS)
    warning = "WARNING: " if "Traceback" in text else ""
    notes = [f"  {warning}server log {_shown(log_path)}: {counts}"]
    exceptions = dict.fromkeys(m.group(0) for m in EXCEPTION_LINE.finditer(text))
    notes += [f"    {line[:200]}" for line in list(exceptions)[:MAX_EXCEPTIONS_SHOWN]]
    return notes


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_plan(server: RunningServer, sizes: Sizes) -> LoadPlan:
    """What the load generator is to do against ``server``."""
    return LoadPlan(
        base_url=server.base_url,
        admin_username=ADMIN_USERNAME,
        admin_password=ADMIN_PASSWORD,
        tickets=sizes.tickets,
        concurrency=sizes.concurrency,
        counters=COUNTERS,
        server_pgid=server.pgid,
        phase_timeout_s=sizes.phase_timeout_s,
    )


def run_config(
    spec: ServerSpec, sizes: Sizes, plan: CpuPlan, pool: ProcessPoolExecutor
) -> ConfigReport:
    """Run one configuration on a fresh server and database; the server is always stopped."""
    report = ConfigReport()
    log_path = RESULTS / f"{spec.name}.server.log"
    print(f"{spec.name}: starting a fresh server ...", flush=True)
    try:
        if spec.database_url:
            postgres.recreate_database(postgres.bench_url())
        with (
            tempfile.TemporaryDirectory(prefix=f"onedoor-bench-{spec.name}-") as var_dir,
            running_server(spec, Path(var_dir), log_path, plan.server) as server,
        ):
            print(f"{spec.name}: setting up the hall and running the phases ...", flush=True)
            outcome = pool.submit(load.run_load, load_plan(server, sizes)).result()
        report.notes += server_notes(spec, server, plan)
    except (ServerError, OSError, postgres.DatabaseError, BrokenExecutor) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        report.rows.append(failure_row(spec.name, "start", why))
        report.notes += [f"{spec.name}: could not run: {exc}", *log_notes(log_path)]
        return report
    report.rows = judge(spec.name, outcome)
    report.notes += outcome_notes(outcome, plan, len(plan.server))
    report.notes += log_notes(log_path)
    return report


def server_notes(spec: ServerSpec, server: RunningServer, plan: CpuPlan) -> list[str]:
    """The server's processes, where they ran, and how the server stopped."""
    notes = [
        f"{spec.name}: server processes ({server.processes}) on "
        f"{procs.format_cpus(plan.server)}; {server.exit_status}"
    ]
    if server.repinned:
        notes.append(f"  pids {server.repinned} had not inherited the pinning; pinned late")
    return notes


def outcome_notes(outcome: LoadOutcome, plan: CpuPlan, server_cpus: int) -> list[str]:
    """Where the load generator ran, how long setup took, per-phase CPU use and errors."""
    notes = [
        f"  load generator pid {outcome.pid} on {procs.format_cpus(set(outcome.cpus))}"
        + ("" if set(outcome.cpus) == plan.loadgen else " (NOT as planned)")
        + f"; setup (hall, matters, {COUNTERS} counters and clerks, sign-ins) "
        f"{outcome.setup_seconds:.1f} s"
    ]
    for result in (outcome.issue, outcome.call):
        if result is not None:
            notes += phase_notes(result, server_cpus)
    if outcome.error:
        notes.append("  load generator stopped early:")
        notes += [f"    {line}" for line in outcome.error.strip().splitlines()]
    return notes


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    """Turn SIGTERM (e.g. a cancelled CI job) into SystemExit so servers get stopped."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the configurations, print and save the report; 0 only if every row is ok."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    sizes = sizes_from(args)
    plan = cpu_plan()
    RESULTS.mkdir(parents=True, exist_ok=True)
    header = describe_setup(plan)
    header.append(
        f"run: {'smoke' if args.smoke else 'full'}; {sizes.tickets} tickets per configuration, "
        f"{sizes.concurrency} concurrent issuers, {COUNTERS} counters"
    )
    print("\n".join(header), flush=True)

    specs, reports, skipped = plan_configs(args.only)
    if skipped:
        header.append(skipped)
        print(skipped, flush=True)

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=1, mp_context=context, initializer=load.pin_to, initargs=(plan.loadgen,)
    ) as pool:
        reports += [run_config(spec, sizes, plan, pool) for spec in specs]

    rows = [row for report in reports for row in report.rows]
    notes = [note for report in reports for note in report.notes]
    text = "\n".join([*header, "", format_table(rows), LEGEND, "", *notes])
    print("\n" + "\n".join(text.split("\n")[len(header) :]))
    (RESULTS / "latest.txt").write_text(text + "\n")
    return 0 if (rows or skipped) and all(row.ok for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
