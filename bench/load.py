"""The load generator. It runs in its own process (see ``pin_to``) and drives one server:
set up the hall, issue tickets from many clients at once, then drain the queue from every
counter. It only measures and collects; ``bench.run`` judges the results."""

from __future__ import annotations

import asyncio
import os
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx

from . import procs
from .hall import TIMEOUT as REQUEST_TIMEOUT
from .hall import ClerkSession, Hall, build_hall, open_counters
from .stats import PhaseResult

MAX_ERROR_SAMPLES = 5
MAX_FAILURES_IN_A_ROW = 20
"""A counter that fails this many requests in a row stops draining (and the phase says so)."""


def pin_to(cpus: frozenset[int]) -> None:
    """Process initializer: run this process on ``cpus`` only."""
    os.sched_setaffinity(0, cpus)


def describe() -> str:
    """Which HTTP client the load generator uses."""
    return f"httpx {httpx.__version__} AsyncClient (asyncio)"


@dataclass(frozen=True)
class LoadPlan:
    base_url: str
    admin_username: str
    admin_password: str
    tickets: int
    concurrency: int
    counters: int
    server_pgid: int
    phase_timeout_s: float


@dataclass
class LoadOutcome:
    """Everything the load generator saw; plain data so it crosses the process boundary."""

    pid: int
    cpus: list[int]
    setup_seconds: float = 0.0
    error: str | None = None
    """Why the run stopped early (a setup refusal or a crash), with a traceback."""
    issue: PhaseResult | None = None
    call: PhaseResult | None = None
    issued: list[tuple[int, str]] = field(default_factory=list)
    """(ticket id, number) of every ticket the server said it issued."""
    called: list[int] = field(default_factory=list)
    """Ticket ids in the order call-next answered them, across all counters."""


class Recorder:
    """Sends requests and books each one into a PhaseResult: latency, error, 5xx."""

    def __init__(self, result: PhaseResult) -> None:
        self.result = result

    def _fail(self, sample: str, server_error: bool) -> None:
        self.result.errors += 1
        self.result.server_errors += int(server_error)
        if len(self.result.error_samples) < MAX_ERROR_SAMPLES:
            self.result.error_samples.append(sample)

    async def post(self, client: httpx.AsyncClient, path: str, **kwargs: object) -> object:
        """POST and return the answer's JSON, or None (booked as an error) unless 2xx."""
        start = time.perf_counter()
        try:
            response = await client.post(path, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            self.result.latencies_ms.append((time.perf_counter() - start) * 1000)
            self._fail(f"POST {path}: {type(exc).__name__}: {exc}", server_error=False)
            return None
        self.result.latencies_ms.append((time.perf_counter() - start) * 1000)
        if not response.is_success:
            detail = response.text[:200].replace("\n", " ")
            sample = f"POST {path}: {response.status_code} {detail}"
            self._fail(sample, server_error=response.status_code >= 500)
            return None
        return response.json()


@contextmanager
def measuring(result: PhaseResult, server_pgid: int) -> Iterator[None]:
    """Book the wall time, the load generator's CPU time and the server's CPU time."""
    wall, cpu = time.perf_counter(), time.process_time()
    server = procs.group_cpu_seconds(server_pgid)
    try:
        yield
    finally:
        result.seconds = time.perf_counter() - wall
        result.loadgen_cpu_seconds = time.process_time() - cpu
        result.server_cpu_seconds = procs.group_cpu_seconds(server_pgid) - server


async def issue_phase(plan: LoadPlan, hall: Hall, outcome: LoadOutcome) -> PhaseResult:
    """``plan.tickets`` kiosk issues from ``plan.concurrency`` clients at once, matters in turn."""
    result = PhaseResult("issue", plan.concurrency)
    recorder = Recorder(result)
    todo = iter(range(plan.tickets))
    path = f"/api/halls/{hall.hall_id}/tickets"

    async def client_loop(client: httpx.AsyncClient) -> None:
        for index in todo:  # the clients share one iterator: each ticket is sent once
            body = {"service_id": hall.service_ids[index % len(hall.service_ids)]}
            answer = await recorder.post(client, path, json=body)
            if isinstance(answer, dict):
                outcome.issued.append((int(answer["id"]), str(answer["number"])))

    limits = httpx.Limits(
        max_connections=plan.concurrency, max_keepalive_connections=plan.concurrency
    )
    headers = {"Authorization": f"Bearer {hall.kiosk_token}"}
    async with httpx.AsyncClient(
        base_url=plan.base_url, headers=headers, limits=limits, timeout=REQUEST_TIMEOUT
    ) as client:
        with measuring(result, plan.server_pgid):
            try:
                async with asyncio.timeout(plan.phase_timeout_s):
                    await asyncio.gather(*(client_loop(client) for _ in range(plan.concurrency)))
            except TimeoutError:
                result.incomplete = f"stopped after the {plan.phase_timeout_s:.0f} s time limit"
    return result


async def drain_counter(session: ClerkSession, recorder: Recorder, called: list[int]) -> bool:
    """Call-next then no-show at one counter until call-next finds nobody waiting.

    A failed request is booked and the loop goes on with the other step (a failed no-show
    is followed by call-next, which tells whether the counter is still busy); the counter
    gives up, returning False, after MAX_FAILURES_IN_A_ROW failures in a row.
    """
    counter = f"/api/counters/{session.clerk.counter_id}"
    headers = {"X-CSRF-Token": session.csrf_token}
    failures = 0
    step = "call-next"
    while failures < MAX_FAILURES_IN_A_ROW:
        answer = await recorder.post(session.client, f"{counter}/{step}", headers=headers)
        if not isinstance(answer, dict):
            failures += 1
            step = "no-show" if step == "call-next" else "call-next"
            continue
        failures = 0
        if step == "no-show":
            step = "call-next"
            continue
        ticket = answer.get("ticket")
        if ticket is None:
            return True
        called.append(int(ticket["id"]))
        step = "no-show"
    return False


async def call_phase(
    plan: LoadPlan, sessions: list[ClerkSession], outcome: LoadOutcome
) -> PhaseResult:
    """Every counter drains the queue concurrently (call-next, then no-show)."""
    result = PhaseResult("call-next", len(sessions))
    recorder = Recorder(result)
    with measuring(result, plan.server_pgid):
        try:
            async with asyncio.timeout(plan.phase_timeout_s):
                finished = await asyncio.gather(
                    *(drain_counter(s, recorder, outcome.called) for s in sessions)
                )
        except TimeoutError:
            result.incomplete = f"stopped after the {plan.phase_timeout_s:.0f} s time limit"
            return result
    gave_up = [s.clerk.counter_id for s, ok in zip(sessions, finished, strict=True) if not ok]
    if gave_up:
        result.incomplete = (
            f"counter ids {gave_up} gave up after {MAX_FAILURES_IN_A_ROW} failures in a row"
        )
    return result


async def _run(plan: LoadPlan, outcome: LoadOutcome) -> None:
    start = time.perf_counter()
    hall = await build_hall(plan.base_url, plan.admin_username, plan.admin_password, plan.counters)
    sessions = await open_counters(plan.base_url, hall.clerks)
    outcome.setup_seconds = time.perf_counter() - start
    try:
        outcome.issue = await issue_phase(plan, hall, outcome)
        outcome.call = await call_phase(plan, sessions, outcome)
    finally:
        await asyncio.gather(*(s.client.aclose() for s in sessions))


def run_load(plan: LoadPlan) -> LoadOutcome:
    """Set up the hall and run both phases against ``plan.base_url``; never raises: a failure
    is reported in ``LoadOutcome.error`` next to whatever was measured before it."""
    outcome = LoadOutcome(pid=os.getpid(), cpus=sorted(os.sched_getaffinity(0)))
    try:
        asyncio.run(_run(plan, outcome))
    except Exception:
        outcome.error = traceback.format_exc(limit=3)
    return outcome
