"""Benchmark OneDoor over HTTP with wrk: ``python -m bench.run`` (full, a few minutes) or
``--smoke`` (CI, every phase briefly).

Per configuration (SQLite 1 worker, PostgreSQL 1 worker, PostgreSQL 2 workers with Redis): a
fresh ``onedoor serve`` on a fresh database, pinned to all CPUs but the last; Python sets up a
hall (matters, counters each with its clerk signed in, kiosks, boards) over the API; then wrk,
pinned to the last CPU, drives each phase for a fixed time: issue tickets (16 and 64
connections, and 400/s), read the board snapshot (64), call and no-show at 16 counters (200
calls/s, and as fast as they go). Then the ceiling app (bench/ceiling.py) is served the same
way on the same database and driven like the issue phase (and again with 2 and 4 statements
in each request's transaction). The database is checked after each
issue and call phase. Prints one table, writes it to bench/results/latest.txt, and exits 1 if
a check failed, a 5xx was answered or a configuration could not run. PostgreSQL
configurations are skipped when it is unreachable, unless ONEDOOR_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import resource
import secrets
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType

import asyncpg
import httpx

from . import checks, postgres, procs, scene, stalls, wrk
from .ceiling import running_ceiling
from .hall import MATTERS, SetupError
from .report import LEGEND, Measured, Row, failure_row, format_columns, format_table, measured_row
from .server import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    RunningServer,
    ServerError,
    ServerSpec,
    running_server,
)
from .stats import Verdict

RESULTS = Path(__file__).parent / "results"
COUNTERS = 16
REQUIRE_SERVICES_ENV = "ONEDOOR_REQUIRE_SERVICES"
CONFIGS = ("sqlite-1w", "postgres-1w", "postgres-2w")
SMOKE_CONFIGS = ("sqlite-1w", "postgres-2w")
"""Both databases and both kinds of server process, in well under two minutes."""
GOAL_CONFIG = "postgres-2w"
LOG_MARKERS = ("transaction retried", "Traceback", "unhandled error")
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception)\b.*$", re.MULTILINE)
"""The last line of a Python traceback, e.g. ``FileExistsError: [Errno 17] File exists``."""
MAX_EXCEPTIONS_SHOWN = 3
STARTED = time.monotonic()
SETTLE_S = 0.3
SETTLED_CPU = 0.15
SETTLE_LIMIT_S = 20.0
FULL_SECONDS = 10
SMOKE_SECONDS = 2


@dataclass(frozen=True)
class Phase:
    name: str
    kind: str
    """``issue``, ``board``, ``follow``, ``call`` or ``ceiling``."""
    connections: int
    rate: float = 0.0
    """A fixed rate (tickets or calls per second), or 0: as fast as the answers come."""
    statements: int = 1
    """For the ceiling: the statements in each request's transaction (one round trip each,
    besides BEGIN and COMMIT)."""

    @property
    def interval_ms(self) -> float:
        """How often each connection sends: a call is two requests."""
        if not self.rate:
            return 0.0
        requests_per_s = self.rate * (2 if self.kind == "call" else 1)
        return self.connections * 1000 / requests_per_s


PHASES = (
    Phase("issue", "issue", 16),
    Phase("issue", "issue", 64),
    Phase("issue @400/s", "issue", 16, rate=400),
    Phase("board", "board", 64),
    Phase("follow", "follow", 64),
    Phase("call @200/s", "call", COUNTERS, rate=200),
    Phase("call", "call", COUNTERS),
)
CEILING_PHASES = (
    Phase("ceiling", "ceiling", 16),
    Phase("ceiling", "ceiling", 64),
    # The ceiling with the statements of OneDoor's commands: issuing's 2 (the hall and
    # matter read, then one statement that numbers and writes the ticket, its events and
    # its print job), and a call's 4 a request on average (call-next's 4 and its BEGIN
    # and COMMIT, no-show's 2, each committed alone).
    Phase("ceiling, 2 statements", "ceiling", 16, statements=2),
    Phase("ceiling, 4 statements", "ceiling", 16, statements=4),
    # The same at the paced phases' fixed rates, so their p99 goals have the stack's own
    # p99 beside them: issuing's 400 requests a second, and 200 calls a second (400
    # requests) of 4 statements each.
    Phase("ceiling @400/s, 2 statements", "ceiling", 16, rate=400, statements=2),
    Phase("ceiling @400/s, 4 statements", "ceiling", 16, rate=400, statements=4),
)


@dataclass(frozen=True)
class Goal:
    text: str
    phase: str
    connections: int
    measure: str
    """``rate`` (at least ``target``) or ``p99`` (at most ``target`` ms)."""
    target: float
    ceiling: str
    """The ceiling phase (at the goal's connections) whose figure stands beside the goal's:
    the same measure, of the bare app making the same statements a request."""
    per: int = 1
    """HTTP requests per unit of the goal's rate (a call is two)."""

    def judge(self, measured: Measured) -> str:
        """The measured figure and whether it meets the goal, e.g. ``640 no``."""
        if self.measure == "rate":
            met = measured.rate >= self.target
            return f"{measured.rate:.0f} {'yes' if met else 'no'}"
        if math.isnan(measured.p99_ms):
            return "- (no answer)"
        met = measured.p99_ms <= self.target
        return f"{measured.p99_ms:.1f} ms {'yes' if met else 'no'}"

    def beside(self, ceiling: Measured) -> str:
        """The ceiling's figure in the goal's measure and unit: for a rate, the bare app's
        (calls: its requests over ``per``) and the share of it the goal asks; for a p99,
        the bare app's p99."""
        if self.measure == "rate":
            rate = ceiling.rate / self.per
            return f"{rate:.0f} (asks {self.target / rate:.2f})" if rate else "-"
        if math.isnan(ceiling.p99_ms):
            return "- (no answer)"
        return f"{ceiling.p99_ms:.1f} ms"


GOALS = (
    Goal("issue >= 1,000/s at 16 conns", "issue", 16, "rate", 1000, "ceiling, 2 statements"),
    Goal("issue >= 1,000/s at 64 conns", "issue", 64, "rate", 1000, "ceiling"),
    Goal("issue p99 <= 100 ms at 64 conns", "issue", 64, "p99", 100, "ceiling"),
    Goal(
        "issue p99 <= 25 ms at 400/s", "issue @400/s", 16, "p99", 25, "ceiling @400/s, 2 statements"
    ),
    Goal("call >= 500 calls/s", "call", COUNTERS, "rate", 500, "ceiling, 4 statements", per=2),
    Goal(
        "call p99 <= 30 ms at 200 calls/s",
        "call @200/s",
        COUNTERS,
        "p99",
        30,
        "ceiling @400/s, 4 statements",
    ),
    Goal("board >= 5,000/s at 64 conns", "board", 64, "rate", 5000, "ceiling"),
)


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
    measured: list[Measured] = field(default_factory=list)


@dataclass(frozen=True)
class Outcome:
    """One wrk run against a server, with the server's CPU and memory around it."""

    result: wrk.WrkResult
    wall_s: float
    """From wrk's start to its exit (its -d plus start-up); the CPU figures cover this."""
    server_cpu_s: float
    wrk_cpu_s: float
    machine_busy_s: float
    rss_mib: list[float]
    sessions_opened: int | None = None
    """PostgreSQL sessions the server opened during the run (None: not counted, SQLite)."""

    @property
    def http_rate(self) -> float:
        return self.result.rate


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"every phase for {SMOKE_SECONDS} s instead of {FULL_SECONDS} s, and only "
        f"{' and '.join(SMOKE_CONFIGS)} unless --only says otherwise (CI)",
    )
    parser.add_argument("--duration", type=int, help="seconds per phase (overrides --smoke)")
    parser.add_argument(
        "--only",
        action="append",
        choices=CONFIGS,
        help="run only this configuration (repeatable)",
    )
    return parser.parse_args(argv)


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
        f"load generator: {wrk.describe()}, one thread per connection, pinned to "
        f"{procs.format_cpus(plan.loadgen)} (taskset); server on "
        f"{procs.format_cpus(plan.server)}",
        "PostgreSQL itself is not pinned: it shares every CPU with the server and wrk.",
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


def source_state() -> str:
    """The commit the server runs from, and whether its code has uncommitted changes (the
    checkout may be shared with work in progress)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
            )
        except OSError:
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "server code: not a git checkout"
    changed = git("status", "--porcelain", "--", "queue_server", "booking")
    dirty = len(changed.splitlines())
    state = f"{dirty} files with uncommitted changes" if dirty else "no uncommitted changes"
    return f"server code: commit {commit}, {state} in queue_server/ and booking/"


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


def say(message: str) -> None:
    """A progress line, with the time since the run started."""
    print(f"[{time.monotonic() - STARTED:6.1f} s] {message}", flush=True)


def _failed(config: str, why: str) -> ConfigReport:
    return ConfigReport([failure_row(config, "start", why)], [f"{config}: {why}"])


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


def server_notes(spec: ServerSpec, server: RunningServer, plan: CpuPlan) -> list[str]:
    """The server's processes, where they ran, and how the server stopped."""
    notes = [
        f"{spec.name}: server processes ({server.processes}) on "
        f"{procs.format_cpus(plan.server)}; {server.exit_status}"
    ]
    if server.repinned:
        notes.append(f"  pids {server.repinned} had not inherited the pinning; pinned late")
    return notes


def worker_pids(server: RunningServer) -> list[int]:
    """The processes that answer requests: uvicorn's workers, or the main process alone."""
    pids = procs.group_pids(server.pgid)
    workers = [pid for pid in pids if procs.role(pid) == "worker"]
    return workers or [pid for pid in pids if procs.role(pid) == "main"]


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def settle(server: RunningServer) -> None:
    """Return once the server has used less than SETTLED_CPU of a core for SETTLE_S (or after
    SETTLE_LIMIT_S)."""
    deadline = time.monotonic() + SETTLE_LIMIT_S
    used = procs.group_cpu_seconds(server.pgid)
    while time.monotonic() < deadline:
        time.sleep(SETTLE_S)
        now = procs.group_cpu_seconds(server.pgid)
        if now - used < SETTLED_CPU * SETTLE_S:
            return
        used = now


def drive(server: RunningServer, job: wrk.WrkJob) -> Outcome:
    """Run ``job`` against ``server``, booking the CPU the server, wrk and the whole machine
    used meanwhile and the workers' memory at the end."""
    server_cpu = procs.group_cpu_seconds(server.pgid)
    wrk_cpu = _children_cpu_s()
    busy = procs.machine_busy_seconds()
    started = time.monotonic()
    result = wrk.run(job, dict(os.environ))
    outcome = Outcome(
        result,
        wall_s=time.monotonic() - started,
        server_cpu_s=procs.group_cpu_seconds(server.pgid) - server_cpu,
        wrk_cpu_s=_children_cpu_s() - wrk_cpu,
        machine_busy_s=procs.machine_busy_seconds() - busy,
        rss_mib=[rss for pid in worker_pids(server) if (rss := procs.rss_mib(pid)) is not None],
    )
    # wrk leaves requests in flight when its time is up: let the server finish them before
    # the phase is checked and the next one starts.
    settle(server)
    return outcome


def job_for(
    phase: Phase,
    base_url: str,
    hall: scene.Scene,
    seconds: int,
    plan: CpuPlan,
    busy: Collection[int] = (),
    followed: Sequence[str] = (),
) -> wrk.WrkJob:
    """The wrk job of ``phase`` against ``base_url`` (the ceiling gets the issue requests;
    the follow phase reads the follow links ``followed``, one per connection)."""
    job = wrk.WrkJob("issue", base_url, phase.connections, seconds, plan.loadgen, phase.interval_ms)
    if phase.kind in ("issue", "ceiling"):
        settings = {"HALL": str(hall.hall_id), "SERVICES": " ".join(map(str, hall.service_ids))}
        if phase.statements > 1:
            settings["QUERY"] = f"?statements={phase.statements}"
        if phase.kind == "issue":  # a key per request, as the kiosk page sends
            settings["KEYS"] = f"bench-{secrets.token_hex(4)}"
        return replace(job, settings=settings, each={"TOKEN": hall.kiosk_tokens}, keep_ids=True)
    if phase.kind == "board":
        settings = {"PATH": f"/api/halls/{hall.hall_id}/snapshot"}
        return replace(job, script="get", settings=settings, each={"TOKEN": hall.board_tokens})
    if phase.kind == "follow":
        paths = [f"/api/follow/{token}" for token in followed]
        return replace(job, script="get", each={"PATH": paths})
    each = {
        "COUNTER": [str(c.counter_id) for c in hall.counters],
        "COOKIE": [c.cookie for c in hall.counters],
        "CSRF": [c.csrf for c in hall.counters],
        "START": ["no-show" if c.counter_id in busy else "call-next" for c in hall.counters],
    }
    return replace(job, script="call", each=each)


@dataclass
class PhaseRun:
    config: str
    phase: Phase
    outcome: Outcome
    verdict: Verdict | None
    notes: list[str]

    @property
    def rate(self) -> float:
        """Requests per second; calls (no-shows answered) per second for the call phases."""
        if self.phase.kind == "call":
            seconds = self.outcome.result.seconds
            return self.outcome.result.counts.get("resolved", 0) / seconds if seconds else 0.0
        return self.outcome.http_rate


def run_phase(
    config: str,
    server: RunningServer,
    phase: Phase,
    hall: scene.Scene,
    seconds: int,
    plan: CpuPlan,
    db: checks.Database,
) -> PhaseRun:
    """Drive ``phase`` and check the database after it (issue and call phases)."""
    say(f"{config}: {phase.name}, {phase.connections} connections ...")
    checked = phase.kind in ("issue", "call")
    if db.stand_in_for_autovacuum():
        say(f"{config}: autovacuum is off: ANALYZE before the phase, as autovacuum would have")
    before = checks.mark(db, hall.hall_id) if checked else None
    busy = checks.busy_counters(db, hall.hall_id) if phase.kind == "call" else set()
    followed = checks.follow_tokens(db, hall.hall_id) if phase.kind == "follow" else []
    job = job_for(phase, server.base_url, hall, seconds, plan, busy, followed)
    sessions = db.sessions_opened()
    log_mark = stalls.mark(server.log_path)
    outcome = drive(server, job)
    if sessions is not None:
        opened = (db.sessions_opened() or sessions) - sessions - 1
        outcome = replace(outcome, sessions_opened=max(opened, 0))
    verdict = None
    if before is not None and phase.kind == "issue":
        verdict = checks.issued(db, hall.hall_id, before, outcome.result.ids)
    elif before is not None:
        verdict = checks.called(db, hall.hall_id, before, outcome.result.counts)
    run = PhaseRun(config, phase, outcome, verdict, [])
    run.notes = phase_notes(run, before, len(plan.server))
    if phase.kind != "ceiling":  # the ceiling app has no loop watch
        run.notes.insert(1, stalls.note(server.log_path, log_mark))
    return run


def phase_notes(run: PhaseRun, before: checks.Mark | None, server_cpus: int) -> list[str]:
    """Where the CPU went, what was checked, the fixed rate reached, errors seen."""
    result, outcome, phase = run.outcome.result, run.outcome, run.phase
    wall = outcome.wall_s or 1.0
    rest = outcome.machine_busy_s - outcome.server_cpu_s - outcome.wrk_cpu_s
    notes = [
        f"  {phase.name}, {phase.connections} conns: {result.seconds:.1f} s, "
        f"{result.requests} answers; CPU: server {100 * outcome.server_cpu_s / wall:.0f}% "
        f"({server_cpus} core{'s' if server_cpus > 1 else ''}), wrk "
        f"{100 * outcome.wrk_cpu_s / wall:.0f}% of its core, everything else (PostgreSQL, "
        f"Redis, other work on the machine) {100 * max(rest, 0.0) / wall:.0f}%"
    ]
    if outcome.sessions_opened is not None:
        notes.append(
            f"    PostgreSQL sessions opened by the server: {outcome.sessions_opened} "
            "(none once its pools hold what the load needs)"
        )
    if phase.rate:
        unit = "calls" if phase.kind == "call" else "requests"
        notes.append(f"    fixed rate: asked {phase.rate:.0f} {unit}/s, reached {run.rate:.0f}")
    if phase.kind == "call":
        counts = result.counts
        depth = f"{before.waiting} waiting before; " if before is not None else ""
        notes.append(
            f"    {depth}{counts.get('called', 0)} called, {counts.get('resolved', 0)} "
            f"no-shows, {counts.get('nobody_waiting', 0)} 'nobody waiting' answers"
        )
    if run.verdict is not None:
        notes.append(f"    correct: {run.verdict}")
    if result.failed_sockets or result.socket_errors.get("timeout"):
        notes.append(f"    socket errors: {result.socket_errors}")
    notes += [f"    non-2xx: {sample[:200]!r}" for sample in result.samples]
    return notes


def database_for(spec: ServerSpec, var_dir: Path) -> checks.Database:
    if spec.database_url:
        return checks.Database(url=postgres.bench_url())
    return checks.Database(path=var_dir / "onedoor.sqlite3")


RUN_ERRORS = (
    ServerError,
    OSError,
    postgres.DatabaseError,
    SetupError,
    wrk.WrkError,
    asyncpg.PostgresError,
    sqlite3.Error,
    httpx.HTTPError,
)


def run_config(spec: ServerSpec, seconds: int, plan: CpuPlan) -> ConfigReport:
    """Every phase on a fresh server and database, then the ceiling on the same database;
    each server is always stopped."""
    report = ConfigReport()
    log_path = RESULTS / f"{spec.name}.server.log"
    ceiling_log = RESULTS / f"{spec.name}.ceiling.log"
    runs: list[PhaseRun] = []
    say(f"{spec.name}: starting a fresh server ...")
    try:
        if spec.database_url:
            postgres.recreate_database(postgres.bench_url())
        with tempfile.TemporaryDirectory(prefix=f"onedoor-bench-{spec.name}-") as var:
            var_dir = Path(var)
            db = database_for(spec, var_dir)
            with running_server(spec, var_dir, log_path, plan.server) as server:
                say(f"{spec.name}: setting up the hall ...")
                hall = scene.build(server.base_url, (ADMIN_USERNAME, ADMIN_PASSWORD), COUNTERS)
                for phase in PHASES:
                    runs.append(run_phase(spec.name, server, phase, hall, seconds, plan, db))
            report.notes += server_notes(spec, server, plan)
            if db.autovacuum_off():
                report.notes.append(
                    "  PostgreSQL's autovacuum is off on this machine: the bench ran ANALYZE "
                    "before each phase, as autovacuum would have by then (without it the "
                    "queue's reads are planned for an empty table; docs/deployment.md)"
                )
            say(f"{spec.name}: starting the ceiling ...")
            with running_ceiling(spec, var_dir, ceiling_log, plan.server) as ceiling:
                for phase in CEILING_PHASES:
                    runs.append(run_phase(spec.name, ceiling, phase, hall, seconds, plan, db))
            report.notes.append(f"  ceiling processes ({ceiling.processes}); {ceiling.exit_status}")
    except RUN_ERRORS as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        report.rows.append(failure_row(spec.name, "run", why[:160]))
        report.notes += [f"{spec.name}: could not run: {exc}"]
    report.measured = measure_rows(runs)
    report.rows = [measured_row(m) for m in report.measured] + report.rows
    for run in runs:
        report.notes += run.notes
    report.notes += log_notes(log_path) + log_notes(ceiling_log)
    return report


def vs_ceiling(run: PhaseRun, ceilings: dict[int, float]) -> str:
    """The phase's HTTP requests/s over the ceiling's at the same connections, labelled."""
    ceiling = ceilings.get(run.phase.connections)
    if not ceiling:
        return "-"
    labels = []
    if run.phase.rate:
        labels.append("fixed")
    if run.phase.kind in ("board", "follow"):
        labels.append("read")
    if run.phase.kind == "call":
        labels.append("2 req/call")
    label = f" ({', '.join(labels)})" if labels else ""
    return f"{run.outcome.http_rate / ceiling:.2f}{label}"


def measure_rows(runs: list[PhaseRun]) -> list[Measured]:
    ceilings = {
        r.phase.connections: r.outcome.http_rate
        for r in runs
        if r.phase.kind == "ceiling" and r.phase.statements == 1
    }
    measured = []
    for run in runs:
        result = run.outcome.result
        requests = result.requests
        cpu_ms = 1000 * run.outcome.server_cpu_s / requests if requests else math.nan
        measured.append(
            Measured(
                phase=run.phase.name,
                config=run.config,
                connections=run.phase.connections,
                requests=requests,
                rate=run.rate,
                p50_ms=result.p50_ms,
                p99_ms=result.p99_ms,
                non_2xx=result.non_2xx + result.failed_sockets,
                server_errors=result.status.get("5xx", 0),
                cpu_ms_per_request=cpu_ms,
                rss_mib=run.outcome.rss_mib,
                vs_ceiling=vs_ceiling(run, ceilings),
                verdict=run.verdict,
            )
        )
    return measured


def goals_table(measured: list[Measured]) -> str:
    """Each goal of the issue against each configuration's figure (met: yes/no), and beside
    the goal configuration's the ceiling's figure of the same run in the goal's terms."""
    configs = list(dict.fromkeys(m.config for m in measured))

    def find(config: str, phase: str, connections: int) -> Measured | None:
        key = (config, phase, connections)
        return next((m for m in measured if (m.config, m.phase, m.connections) == key), None)

    rows = []
    for goal in GOALS:
        cells = [goal.text]
        for config in configs:
            found = find(config, goal.phase, goal.connections)
            cells.append(goal.judge(found) if found else "-")
            if config == GOAL_CONFIG:
                ceiling = find(config, goal.ceiling, goal.connections)
                cells.append(goal.beside(ceiling) if ceiling else "-")
        rows.append(tuple(cells))
    headers = ["goal"]
    for config in configs:
        headers.append(f"{config} (goal config)" if config == GOAL_CONFIG else config)
        if config == GOAL_CONFIG:
            headers.append("bare app, same run")
    return format_columns(tuple(headers), rows, {"goal"})


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    """Turn SIGTERM (e.g. a cancelled CI job) into SystemExit so servers get stopped."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the configurations, print and save the report; 0 only if every row is ok."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    seconds = args.duration or (SMOKE_SECONDS if args.smoke else FULL_SECONDS)
    plan = cpu_plan()
    RESULTS.mkdir(parents=True, exist_ok=True)
    header = describe_setup(plan)
    header.append(
        f"run: {'smoke' if args.smoke else 'full'}; {seconds} s per phase; one hall with "
        f"{len(MATTERS)} matters, {COUNTERS} counters each with its clerk signed in, "
        f"{scene.DEVICES_PER_KIND} kiosks and {scene.DEVICES_PER_KIND} boards"
    )
    header.append(source_state())
    print("\n".join(header), flush=True)

    only = args.only or (list(SMOKE_CONFIGS) if args.smoke else None)
    specs, reports, skipped = plan_configs(only)
    if skipped:
        header.append(skipped)
        print(skipped, flush=True)
    reports += [run_config(spec, seconds, plan) for spec in specs]

    rows = [row for report in reports for row in report.rows]
    measured = [m for report in reports for m in report.measured]
    notes = [note for report in reports for note in report.notes]
    goals = ["goals (issue 12; reported, not enforced):", goals_table(measured)]
    notes.append(f"whole run: {time.monotonic() - STARTED:.0f} s")
    text = "\n".join([*header, "", format_table(rows), "", *goals, "", LEGEND, "", *notes])
    print("\n" + "\n".join(text.split("\n")[len(header) :]))
    (RESULTS / "latest.txt").write_text(text + "\n")
    return 0 if (rows or skipped) and all(row.ok for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
