"""The load generator (its own process): the seeded attempts, the clients that send them,
how each answer counts, and the CPU used meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
import traceback
from collections import Counter

import httpx

from .. import hall, procs
from .client import CLIENTS, Answer, Client, HttpError
from .hall_setup import set_up
from .options import MAX_SAMPLES, Sizes
from .plan import RushOutcome, RushPlan

TIMEOUT_S = 60.0
"""Per attempt, as for the set-up's requests."""
PHONE_LIMIT_MARK = "active booking"
"""In the detail of the 409 that refuses a phone already holding its booking of the matter."""


def attempt_bodies(
    sizes: Sizes, service_id: int, starts: list[str]
) -> tuple[list[dict[str, object]], int]:
    """The booking requests, in sending order (seeded: every run sends the same), and how
    many distinct phone numbers more than one of them uses.

    Each goes to a uniformly random slot. ``reuse_share`` of them take the phone number of
    one of the ``concurrency`` attempts sent just before, so they race it (a double tap, a
    second device): the per-phone limit is decided while both are in flight, not long after.
    """
    rng = random.Random(sizes.seed)
    reusing = set(rng.sample(range(1, sizes.attempts), round(sizes.attempts * sizes.reuse_share)))
    phones: list[str] = []
    for index in range(sizes.attempts):
        if index in reusing:
            phones.append(phones[index - rng.randint(1, min(index, sizes.concurrency))])
        else:
            phones.append(f"139{index:08d}")
    shared = sum(1 for n in Counter(phones).values() if n > 1)
    bodies: list[dict[str, object]] = [
        {
            "service_id": service_id,
            "slot_start": rng.choice(starts),
            "name": f"访客{index + 1}",
            "phone": phone,
        }
        for index, phone in enumerate(phones)
    ]
    return bodies, shared


def classify(response: Answer) -> str:
    """booked, slot_full, phone_limit, rate_limited, 5xx or other."""
    status = response.status_code
    if status == 201:
        return "booked"
    if status >= 500:
        return "5xx"
    if status == 429:
        return "rate_limited"
    if status == 409:
        try:
            body = response.json()
        except ValueError:
            return "other"
        if (body.get("extra") or {}).get("reason") == "slot_full":
            return "slot_full"
        if PHONE_LIMIT_MARK in str(body.get("detail", "")):
            return "phone_limit"
    return "other"


def backend_cpu(database: str) -> dict[int, float]:
    """CPU time used so far by each PostgreSQL backend connected to ``database`` (its
    process title reads ``postgres: ... <user> <database> <address> <state>``)."""
    marker = f" {database} ".encode()
    used = {}
    for entry in procs.PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if title.startswith(b"postgres: ") and marker in title:
            used[int(entry.name)] = procs.cpu_seconds([int(entry.name)])
    return used


def cpu_since(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two ``backend_cpu`` readings (a backend that ended meanwhile is lost)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


async def rush(plan: RushPlan, outcome: RushOutcome) -> None:
    """Send every attempt once from ``concurrency`` clients, each with a connection of its
    own (as many phones would have); book each answer."""
    bodies, outcome.reused_phones = attempt_bodies(plan.sizes, outcome.service_id, outcome.offered)
    aimed = Counter(str(body["slot_start"]) for body in bodies)
    outcome.per_slot = (min(aimed.values(), default=0), max(aimed.values(), default=0))
    path = f"/api/public/halls/{outcome.hall_id}/bookings"
    todo = iter(bodies)
    first_sent: list[float] = []
    last_answer = 0.0

    async def client_loop(client: Client) -> None:
        nonlocal last_answer
        for body in todo:  # the clients share one iterator: each attempt is sent once
            sent = time.perf_counter()
            if not first_sent:
                first_sent.append(sent)
            try:
                response = await client.post_json(path, body)
            except HttpError as exc:
                kind, sample = "other", str(exc)
            else:
                kind = classify(response)
                sample = f"{response.status_code} {response.text[:200]}"
            answered = time.perf_counter()
            last_answer = max(last_answer, answered)
            outcome.latencies_ms.append((answered - sent) * 1000)
            outcome.latencies_by_kind.setdefault(kind, []).append((answered - sent) * 1000)
            outcome.answers[kind] += 1
            if kind in ("5xx", "other") and len(outcome.samples) < MAX_SAMPLES:
                at = f"sent at +{sent - first_sent[0]:.1f} s, after {answered - sent:.1f} s"
                outcome.samples.append(f"{at}: {sample}".replace("\n", " "))

    make = CLIENTS[plan.client]
    async with contextlib.AsyncExitStack() as stack:
        clients: list[Client] = []
        for _ in range(plan.sizes.concurrency):
            client = make(plan.base_url, TIMEOUT_S)
            stack.push_async_callback(client.close)
            clients.append(client)
        cpu, backends = time.process_time(), backend_cpu(plan.database)
        server, machine = procs.group_cpu_seconds(plan.server_pgid), procs.machine_busy_seconds()
        try:
            async with asyncio.timeout(plan.sizes.timeout_s):
                await asyncio.gather(*(client_loop(client) for client in clients))
        except TimeoutError:
            outcome.incomplete = f"stopped after the {plan.sizes.timeout_s:.0f} s time limit"
            last_answer = time.perf_counter()
        outcome.loadgen_cpu_seconds = time.process_time() - cpu
        outcome.server_cpu_seconds = procs.group_cpu_seconds(plan.server_pgid) - server
        outcome.machine_cpu_seconds = procs.machine_busy_seconds() - machine
        outcome.postgres_cpu_seconds = cpu_since(backends, backend_cpu(plan.database))
    outcome.clear_seconds = last_answer - first_sent[0] if first_sent else 0.0


async def _run(plan: RushPlan, outcome: RushOutcome) -> None:
    async with httpx.AsyncClient(base_url=plan.base_url, timeout=hall.TIMEOUT) as admin:
        start = time.perf_counter()
        await set_up(admin, plan, outcome)
        outcome.setup_seconds = time.perf_counter() - start
    await rush(plan, outcome)


def run_rush(plan: RushPlan) -> RushOutcome:
    """Set up the hall and run the rush against ``plan.base_url``; never raises: a failure
    is reported in ``RushOutcome.error`` next to whatever was measured before it."""
    outcome = RushOutcome(pid=os.getpid(), cpus=sorted(os.sched_getaffinity(0)))
    try:
        asyncio.run(_run(plan, outcome))
    except Exception:
        outcome.error = traceback.format_exc(limit=3)
    return outcome
