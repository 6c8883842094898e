"""Booking-rush benchmark: ``python -m bench.booking`` (full, a few minutes) or ``--smoke`` (CI).

The issue's scenario: on PostgreSQL, 20,000 booking attempts for 4,000 places released at
once, sent as fast as the clients can. A fresh ``onedoor serve`` (pinned to all CPUs but the
last, booking rate limit and scheduler off) gets one hall open 09:00-19:00 every day and one
matter booked in 30-minute slots of 25 places over an 8-day window: 8 x 20 x 25 = 4,000
places. A load generator process (pinned to the last CPU, httpx AsyncClient, 200 concurrent
clients) then sends every attempt once, each to a uniformly random slot, about 10% of them
with a phone number another attempt also uses (the matter allows one active booking per
phone); a refused client does not retry. Afterwards PostgreSQL itself is asked: bookings made
(must equal the places), overbooked slots (0), slots whose counter disagrees with their
bookings (0), phones holding more than one active booking (0). The answers give the 5xx (0),
409s, 429s, p50/p99 latency and the time to clear (first attempt sent to last answer; target
<= 10 s, reported, not enforced).

Prints a table, writes it to bench/results/booking-latest.txt (the server log beside it) and
exits 1 if a correctness check failed, a 5xx was answered or the run could not complete. When
PostgreSQL is unreachable the run is skipped (exit 0) unless ONEDOOR_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import os
import random
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx

from . import hall, load, postgres, procs
from .report import format_columns
from .run import REQUIRE_SERVICES_ENV, CpuPlan, cpu_plan, log_notes, server_notes
from .server import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    ServerError,
    ServerSpec,
    running_server,
)
from .stats import percentile

RESULTS = Path(__file__).parent / "results"
REPORT = RESULTS / "booking-latest.txt"
TARGET_CLEAR_S = 10.0
SLOT_MINUTES = 30
OPENS = clock_time(9, 0)
PREFERRED_TIMEZONE = "Asia/Shanghai"
SAFE_LOCAL = (clock_time(1, 0), clock_time(7, 0))
"""The hall's clock must read between these when the run starts: after the release time
(00:00) of the window's last day, and hours before the first slot (09:00) of today."""
TARGET_LOCAL_MINUTES = 4 * 60
PHONE_LIMIT_MARK = "active booking"
"""In the detail of the 409 that refuses a phone already holding its booking of the matter."""
MAX_SAMPLES = 5
REDIS_URL_ENV = "ONEDOOR_BENCH_REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
HEADERS = ("measure", "value", "must be", "ok")
LEFT_ALIGNED = {"measure", "must be", "ok"}


@dataclass(frozen=True)
class Sizes:
    attempts: int
    days: int
    """Bookable days: today and the next ``days - 1`` (the window)."""
    slots_per_day: int
    capacity: int
    """Places per slot (no walk-in share held back)."""
    concurrency: int
    reuse_share: float
    """Share of the attempts that use a phone number another attempt uses too."""
    seed: int

    @property
    def slots(self) -> int:
        return self.days * self.slots_per_day

    @property
    def places(self) -> int:
        return self.slots * self.capacity

    @property
    def timeout_s(self) -> float:
        """How long the rush may take before it is stopped (and the run fails)."""
        return max(60.0, self.attempts / 20)


FULL = Sizes(
    attempts=20_000, days=8, slots_per_day=20, capacity=25, concurrency=200, reuse_share=0.1,
    seed=1,
)  # fmt: skip
SMOKE = Sizes(
    attempts=2_000, days=4, slots_per_day=10, capacity=10, concurrency=200, reuse_share=0.1,
    seed=1,
)  # fmt: skip


@dataclass(frozen=True)
class RushPlan:
    base_url: str
    server_pgid: int
    sizes: Sizes
    timezone: str
    database: str


@dataclass
class RushOutcome:
    """What the load generator did and saw; plain data so it crosses the process boundary."""

    pid: int
    cpus: list[int]
    setup_seconds: float = 0.0
    hall_id: int = 0
    service_id: int = 0
    offered: list[str] = field(default_factory=list)
    """Start (ISO, UTC) of every slot the public slot list offered before the rush."""
    offered_places: int = 0
    reused_phones: int = 0
    """Distinct phone numbers used by more than one attempt."""
    per_slot: tuple[int, int] = (0, 0)
    """The fewest and the most attempts sent to one slot."""
    answers: Counter[str] = field(default_factory=Counter)
    """Attempts by outcome: booked, slot_full, phone_limit, rate_limited, 5xx, other."""
    latencies_ms: list[float] = field(default_factory=list)
    clear_seconds: float = 0.0
    """From the first attempt sent to the last answer."""
    samples: list[str] = field(default_factory=list)
    """A few of the answers that were neither a booking nor an expected refusal."""
    incomplete: str | None = None
    loadgen_cpu_seconds: float = 0.0
    server_cpu_seconds: float = 0.0
    postgres_cpu_seconds: float = 0.0
    """Used by the PostgreSQL backends connected to the bench database."""
    machine_cpu_seconds: float = 0.0
    error: str | None = None
    """Why the run stopped early (a setup refusal or a crash), with a traceback."""

    @property
    def answered(self) -> int:
        return sum(self.answers.values())


@dataclass(frozen=True)
class DbFacts:
    """What PostgreSQL holds after the rush, for the matter of the run."""

    places: int
    """Sum of ``slots.bookable`` over the offered slots."""
    made: int
    """Bookings in state 'booked'."""
    overbooked: int
    """Slots holding more bookings than they have bookable places."""
    mismatched: int
    """Slots whose ``booked`` counter differs from their bookings."""
    duplicate_holders: int
    """Phone numbers holding more than one active booking of the matter."""
    not_full: int
    """Offered slots with a place left (a shortfall of demand, or a lost booking)."""
    states: dict[str, int]
    stray_slots: int
    """Stored slots of the matter that the slot list did not offer."""
    examples: list[str]
    sessions: int
    """Connections the bench database has accepted since it was created (ours aside)."""
    active_s: float
    """Time its backends spent running statements (pg_stat_database.active_time)."""
    idle_in_transaction_s: float
    """Time its backends spent in a transaction waiting for the server's next statement."""


# ---------------------------------------------------------------------------------------
# Options


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.booking",
        description="A booking rush on PostgreSQL (see bench/README.md).",
    )
    parser.add_argument("--smoke", action="store_true", help="a short run for CI (< 60 s)")
    parser.add_argument("--attempts", type=int, help="booking attempts (full 20000, smoke 2000)")
    parser.add_argument(
        "--places",
        type=int,
        help="total places; sets the places per slot, so it must divide by the slots",
    )
    parser.add_argument("--capacity", type=int, help="places per slot (full 25, smoke 10)")
    parser.add_argument("--days", type=int, help="bookable days, today included (full 8)")
    parser.add_argument(
        "--slots-per-day", type=int, help="30-minute slots a day from 09:00 (full 20)"
    )
    parser.add_argument("--concurrency", type=int, help="concurrent clients (200)")
    parser.add_argument(
        "--reuse", type=float, help="share of attempts sharing a phone number (0.1)"
    )
    parser.add_argument("--seed", type=int, help="random seed of the attempts (1)")
    parser.add_argument("--workers", type=int, default=1, help="server processes (1)")
    parser.add_argument("--pool-size", type=int, help="ONEDOOR_DB_POOL_SIZE (server default)")
    parser.add_argument(
        "--booking-concurrency",
        type=int,
        help="ONEDOOR_BOOKING_CONCURRENCY, 0 for no limit (server default)",
    )
    args = parser.parse_args(argv)
    try:
        args.sizes = sizes_from(args)
    except ValueError as exc:
        parser.error(str(exc))
    if args.workers < 1:
        parser.error("--workers: give 1 or more")
    if args.pool_size is not None and args.pool_size < 1:
        parser.error("--pool-size: give 1 or more")
    return args


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value


def sizes_from(args: argparse.Namespace) -> Sizes:
    """The run's sizes: the full or smoke ones with the options given; ValueError if unusable."""
    base = SMOKE if args.smoke else FULL
    sizes = Sizes(
        attempts=_given(args.attempts, base.attempts),
        days=_given(args.days, base.days),
        slots_per_day=_given(args.slots_per_day, base.slots_per_day),
        capacity=_given(args.capacity, base.capacity),
        concurrency=_given(args.concurrency, base.concurrency),
        reuse_share=_given(args.reuse, base.reuse_share),
        seed=_given(args.seed, base.seed),
    )
    if not 1 <= sizes.days <= 31:
        raise ValueError("--days: give 1 to 31 (the slot list shows at most 31 days)")
    if not 1 <= sizes.slots_per_day <= 30:
        raise ValueError("--slots-per-day: give 1 to 30 (09:00 to at most 24:00)")
    if args.places is not None:
        if args.places < 1 or args.places % sizes.slots:
            raise ValueError(
                f"--places {args.places}: give a multiple of the {sizes.slots} slots "
                f"({sizes.days} days x {sizes.slots_per_day}), or change --days/--slots-per-day"
            )
        sizes = replace(sizes, capacity=args.places // sizes.slots)
    if sizes.capacity < 1:
        raise ValueError("--capacity: give 1 or more places per slot")
    if sizes.attempts < 1 or sizes.concurrency < 1:
        raise ValueError("--attempts and --concurrency: give 1 or more")
    if not 0 <= sizes.reuse_share < 1:
        raise ValueError("--reuse: give a share from 0 to below 1, e.g. 0.1")
    return sizes


# ---------------------------------------------------------------------------------------
# The hall's clock


def _local_minutes(now: datetime, timezone: str) -> int:
    local = now.astimezone(ZoneInfo(timezone))
    return local.hour * 60 + local.minute


def hall_timezone(now: datetime) -> str:
    """A timezone whose clock reads between SAFE_LOCAL at ``now``: Asia/Shanghai if it
    does, else the whole-hour ``Etc/GMT`` zone nearest 04:00. Then every slot of today and
    of the window's other days lies ahead and is released, whatever time the run starts."""
    low, high = (t.hour * 60 + t.minute for t in SAFE_LOCAL)
    if low <= _local_minutes(now, PREFERRED_TIMEZONE) < high:
        return PREFERRED_TIMEZONE
    # Etc/GMT-14 is UTC+14, Etc/GMT+12 is UTC-12 (the POSIX sign).
    zones = ["UTC" if hours == 0 else f"Etc/GMT{-hours:+d}" for hours in range(-12, 15)]
    return min(zones, key=lambda tz: abs(_local_minutes(now, tz) - TARGET_LOCAL_MINUTES))


def opening_hours(sizes: Sizes) -> dict[str, list[list[str]]]:
    """Every day from OPENS for ``slots_per_day`` slots."""
    opens = datetime.combine(datetime(2000, 1, 1), OPENS)
    closes = opens + timedelta(minutes=SLOT_MINUTES * sizes.slots_per_day)
    end = "24:00" if closes.day != opens.day else f"{closes:%H:%M}"
    return {day: [[f"{opens:%H:%M}", end]] for day in hall.DAYS}


def booking_rules(sizes: Sizes) -> dict[str, object]:
    """Today and the next ``days - 1`` days released (at 00:00), one booking per phone."""
    return {
        "slot_minutes": SLOT_MINUTES,
        "capacity": sizes.capacity,
        "walk_in_share": 0,
        "window_days": sizes.days - 1,
        "release_time": "00:00",
        "max_active_per_matter": 1,
        "max_per_day": 3,
    }


# ---------------------------------------------------------------------------------------
# The load generator (its own process)


async def set_up(client: httpx.AsyncClient, plan: RushPlan, outcome: RushOutcome) -> None:
    """As the admin: the hall, its matter opened to booking; then the public slot list,
    which must offer exactly the planned slots, every place free."""
    sizes = plan.sizes
    csrf = await hall.login(client, ADMIN_USERNAME, ADMIN_PASSWORD)
    body = {
        "name_zh": "预约压测大厅",
        "name_en": "Booking rush hall",
        "opening_hours": opening_hours(sizes),
        "timezone": plan.timezone,
    }
    outcome.hall_id = int((await hall.post(client, "/api/halls", body, csrf))["id"])
    matter = {"name_zh": "社会保险", "name_en": "Social insurance", "prefix": "A",
              "typical_minutes": 10}  # fmt: skip
    path = f"/api/halls/{outcome.hall_id}/services"
    outcome.service_id = int((await hall.post(client, path, matter, csrf))["id"])
    path = f"/api/halls/{outcome.hall_id}/services/{outcome.service_id}/booking"
    answer = await client.put(path, json=booking_rules(sizes), headers={"X-CSRF-Token": csrf})
    if not answer.is_success:
        raise hall.SetupError(f"PUT {path} answered {answer.status_code}: {answer.text[:300]}")
    path = (
        f"/api/public/halls/{outcome.hall_id}/services/{outcome.service_id}/slots?days={sizes.days}"
    )
    answer = await client.get(path)
    if not answer.is_success:
        raise hall.SetupError(f"GET {path} answered {answer.status_code}: {answer.text[:300]}")
    slots = [s for day in answer.json()["days"] for s in day["slots"]]
    outcome.offered = [str(s["start"]) for s in slots]
    outcome.offered_places = sum(int(s["places"]) for s in slots)
    busy = [s for s in slots if s["free"] != s["places"]]
    if len(slots) != sizes.slots or outcome.offered_places != sizes.places or busy:
        raise hall.SetupError(
            f"the slot list offers {len(slots)} slots with {outcome.offered_places} places "
            f"({len(busy)} not all free); planned {sizes.slots} slots with {sizes.places}"
        )


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


def classify(response: httpx.Response) -> str:
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
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal last_answer
        for body in todo:  # the clients share one iterator: each attempt is sent once
            sent = time.perf_counter()
            if not first_sent:
                first_sent.append(sent)
            try:
                response = await client.post(path, json=body)
            except httpx.HTTPError as exc:
                kind, sample = "other", f"{type(exc).__name__}: {exc}"
            else:
                kind = classify(response)
                sample = f"{response.status_code} {response.text[:200]}"
            answered = time.perf_counter()
            last_answer = max(last_answer, answered)
            outcome.latencies_ms.append((answered - sent) * 1000)
            outcome.answers[kind] += 1
            if kind in ("5xx", "other") and len(outcome.samples) < MAX_SAMPLES:
                at = f"sent at +{sent - first_sent[0]:.1f} s, after {answered - sent:.1f} s"
                outcome.samples.append(f"{at}: {sample}".replace("\n", " "))

    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=plan.base_url, limits=one, timeout=hall.TIMEOUT)
            )
            for _ in range(plan.sizes.concurrency)
        ]
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


# ---------------------------------------------------------------------------------------
# What PostgreSQL holds afterwards


def database_dsn() -> str:
    """The bench database as a libpq-style URL for asyncpg."""
    url = postgres.bench_url().set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


async def _db_facts(service_id: int, offered: list[str]) -> DbFacts:
    offered_at = {datetime.fromisoformat(start) for start in offered}
    connection = await asyncpg.connect(database_dsn(), timeout=postgres.CONNECT_TIMEOUT_S)
    try:
        slots = await connection.fetch(
            "SELECT s.id, s.starts_at, s.bookable, s.booked, "
            "       count(b.id) FILTER (WHERE b.state = 'booked') AS active "
            "FROM slots s LEFT JOIN bookings b ON b.slot_id = s.id "
            "WHERE s.service_id = $1 GROUP BY s.id ORDER BY s.starts_at",
            service_id,
        )
        states = await connection.fetch(
            "SELECT state, count(*) AS n FROM bookings WHERE service_id = $1 GROUP BY state",
            service_id,
        )
        usage = await connection.fetchrow(
            "SELECT sessions, active_time, idle_in_transaction_time "
            "FROM pg_stat_database WHERE datname = current_database()"
        )
        duplicate_holders = await connection.fetchval(
            "SELECT count(*) FROM (SELECT phone FROM bookings "
            "  WHERE service_id = $1 AND state = 'booked' "
            "  GROUP BY phone HAVING count(*) > 1) AS holders",
            service_id,
        )
    finally:
        await connection.close()
    over = [s for s in slots if s["active"] > s["bookable"]]
    mismatched = [s for s in slots if s["active"] != s["booked"]]
    examples = [
        f"slot {s['id']} at {s['starts_at']:%Y-%m-%d %H:%M}Z: bookable {s['bookable']}, "
        f"booked counter {s['booked']}, bookings {s['active']}"
        for s in (over + mismatched)[:MAX_SAMPLES]
    ]
    by_state = {r["state"]: int(r["n"]) for r in states}
    return DbFacts(
        places=sum(s["bookable"] for s in slots if s["starts_at"] in offered_at),
        made=by_state.get("booked", 0),
        overbooked=len(over),
        mismatched=len(mismatched),
        duplicate_holders=int(duplicate_holders or 0),
        not_full=sum(
            1 for s in slots if s["starts_at"] in offered_at and s["active"] < s["bookable"]
        ),
        states=by_state,
        stray_slots=sum(1 for s in slots if s["starts_at"] not in offered_at),
        examples=examples,
        sessions=int(usage["sessions"]) - 1,
        active_s=float(usage["active_time"]) / 1000,
        idle_in_transaction_s=float(usage["idle_in_transaction_time"]) / 1000,
    )


def db_facts(service_id: int, offered: list[str]) -> DbFacts:
    return asyncio.run(_db_facts(service_id, offered))


# ---------------------------------------------------------------------------------------
# The report


@dataclass
class Table:
    rows: list[tuple[str, ...]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def check(self, measure: str, value: object, must_be: str, ok: bool) -> None:
        """A measure the run fails on when not ``ok``."""
        self.rows.append((measure, str(value), must_be, "yes" if ok else "NO"))
        if not ok:
            self.failed.append(measure)

    def show(self, measure: str, value: object, target: str = "", met: str = "") -> None:
        """A measure the run does not fail on."""
        self.rows.append((measure, str(value), target, met))

    def format(self) -> str:
        return format_columns(HEADERS, self.rows, LEFT_ALIGNED)


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def build_table(outcome: RushOutcome, facts: DbFacts | None, sizes: Sizes) -> Table:
    table = Table()
    answers = outcome.answers
    if facts is not None:
        table.check("bookings made", facts.made, f"= {facts.places} places", (
            facts.made == facts.places == sizes.places
        ))  # fmt: skip
        table.check("overbooked slots", facts.overbooked, "0", facts.overbooked == 0)
        table.check("slots.booked != bookings", facts.mismatched, "0", facts.mismatched == 0)
        table.check("duplicate holders", facts.duplicate_holders, "0", facts.duplicate_holders == 0)
        table.check(
            "201 answers", answers["booked"], f"= {facts.made} made",
            answers["booked"] == facts.made,
        )  # fmt: skip
    table.check("5xx", answers["5xx"], "0", answers["5xx"] == 0)
    table.check("other errors", answers["other"], "0", answers["other"] == 0)
    table.check("429 rate limited", answers["rate_limited"], "0 (limit off)", (
        answers["rate_limited"] == 0
    ))  # fmt: skip
    table.check(
        "attempts answered", outcome.answered, f"= {sizes.attempts}",
        outcome.answered == sizes.attempts and outcome.incomplete is None,
    )  # fmt: skip
    table.show("409 slot full", answers["slot_full"])
    table.show("409 phone limit", answers["phone_limit"])
    table.show("p50 ms", _ms(percentile(outcome.latencies_ms, 0.50)))
    table.show("p99 ms", _ms(percentile(outcome.latencies_ms, 0.99)))
    table.show("max ms", _ms(max(outcome.latencies_ms, default=math.nan)))
    clear = outcome.clear_seconds
    table.show("req/s", f"{outcome.answered / clear:.0f}" if clear > 0 else "-")
    table.show(
        "time to clear s", f"{clear:.1f}", f"<= {TARGET_CLEAR_S:.0f} (target)",
        "yes" if clear <= TARGET_CLEAR_S else "no (not enforced)",
    )  # fmt: skip
    return table


def outcome_notes(outcome: RushOutcome, facts: DbFacts | None, plan: CpuPlan) -> list[str]:
    notes = [
        f"  load generator pid {outcome.pid} on {procs.format_cpus(set(outcome.cpus))}"
        + ("" if set(outcome.cpus) == plan.loadgen else " (NOT as planned)")
        + f"; setup (hall, matter, booking rules, slot list) {outcome.setup_seconds:.1f} s",
        f"  hall {outcome.hall_id}, matter {outcome.service_id}: {len(outcome.offered)} slots "
        f"offered with {outcome.offered_places} places; {outcome.per_slot[0]} to "
        f"{outcome.per_slot[1]} attempts per slot; {outcome.reused_phones} phone numbers "
        "shared by several attempts",
    ]
    wall = outcome.clear_seconds or 1.0
    rest = (
        outcome.machine_cpu_seconds
        - outcome.server_cpu_seconds
        - outcome.loadgen_cpu_seconds
        - outcome.postgres_cpu_seconds
    )
    notes.append(
        f"  during the rush ({wall:.1f} s), CPU in % of one core: server "
        f"{100 * outcome.server_cpu_seconds / wall:.0f}, load generator "
        f"{100 * outcome.loadgen_cpu_seconds / wall:.0f}, PostgreSQL backends of the bench "
        f"database still open at the end {100 * outcome.postgres_cpu_seconds / wall:.0f}, the "
        f"rest of the machine (other PostgreSQL work, other processes) "
        f"{100 * max(0.0, rest) / wall:.0f}"
    )
    if outcome.incomplete:
        notes.append(f"  rush incomplete: {outcome.incomplete}")
    notes += [f"    error: {sample}" for sample in outcome.samples]
    if facts is not None:
        notes.append(
            f"  database: bookings by state {dict(sorted(facts.states.items()))}; offered "
            f"slots with a place left {facts.not_full}; stored slots not offered "
            f"{facts.stray_slots}"
        )
        notes += [f"    {example}" for example in facts.examples]
        notes.append(
            f"  PostgreSQL, bench database, setup included: {facts.sessions} connections "
            f"opened; backends ran statements for {facts.active_s:.1f} s and sat idle in a "
            f"transaction, waiting for the server, for {facts.idle_in_transaction_s:.1f} s"
        )
    if outcome.error:
        notes.append("  load generator stopped early:")
        notes += [f"    {line}" for line in outcome.error.strip().splitlines()]
    return notes


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    """Turn SIGTERM (e.g. a cancelled CI job) into SystemExit so the server gets stopped."""
    raise SystemExit(128 + signum)


def server_spec(args: argparse.Namespace) -> ServerSpec:
    env = [("ONEDOOR_BOOKING_RATE_LIMIT", "0"), ("ONEDOOR_SCHEDULER", "0")]
    if args.pool_size:
        env.append(("ONEDOOR_DB_POOL_SIZE", str(args.pool_size)))
    if args.booking_concurrency is not None:
        env.append(("ONEDOOR_BOOKING_CONCURRENCY", str(args.booking_concurrency)))
    redis = os.environ.get(REDIS_URL_ENV, DEFAULT_REDIS_URL) if args.workers > 1 else None
    return ServerSpec(
        f"postgres-{args.workers}w",
        postgres.server_url(postgres.bench_url()),
        workers=args.workers,
        redis_url=redis,
        env=tuple(env),
    )


def describe(sizes: Sizes, spec: ServerSpec, plan: CpuPlan, timezone: str) -> list[str]:
    now = datetime.now(UTC).astimezone(ZoneInfo(timezone))
    lines = [
        f"booking rush, {spec.name}: {sizes.attempts} attempts for {sizes.places} places "
        f"({sizes.days} days x {sizes.slots_per_day} slots of {SLOT_MINUTES} min x "
        f"{sizes.capacity}), {sizes.concurrency} concurrent clients, "
        f"{sizes.reuse_share:.0%} of attempts share a phone number, seed {sizes.seed}",
        f"load generator: {load.describe()} in 1 process pinned to "
        f"{procs.format_cpus(plan.loadgen)}; server ({spec.workers} process"
        f"{'es' if spec.workers > 1 else ''}) on {procs.format_cpus(plan.server)}; "
        "PostgreSQL not pinned",
        f"server settings: {', '.join(f'{k}={v}' for k, v in spec.env)}"
        + (f", ONEDOOR_REDIS_URL={spec.redis_url}" if spec.redis_url else ""),
        f"hall clock: {timezone}, {now:%Y-%m-%d %H:%M} at the start (every slot ahead)",
    ]
    if plan.shared:
        lines.append("note: only one CPU is usable, so server and load generator share it.")
    return lines


def run_rush_on_server(
    spec: ServerSpec, sizes: Sizes, plan: CpuPlan, timezone: str
) -> tuple[RushOutcome | None, DbFacts | None, list[str]]:
    """A fresh database and server, the rush from the pinned load generator, then the
    database's facts; the server is always stopped."""
    log_path = RESULTS / "booking.server.log"
    notes: list[str] = []
    print(f"{spec.name}: starting a fresh server ...", flush=True)
    context = multiprocessing.get_context("spawn")
    try:
        postgres.recreate_database(postgres.bench_url())
        with (
            ProcessPoolExecutor(
                max_workers=1,
                mp_context=context,
                initializer=load.pin_to,
                initargs=(plan.loadgen,),
            ) as pool,
            tempfile.TemporaryDirectory(prefix="onedoor-bench-booking-") as var_dir,
            running_server(spec, Path(var_dir), log_path, plan.server) as server,
        ):
            print(f"{spec.name}: setting up and rushing ...", flush=True)
            rush_plan = RushPlan(
                server.base_url, server.pgid, sizes, timezone, str(postgres.bench_url().database)
            )
            outcome = pool.submit(run_rush, rush_plan).result()
        notes += server_notes(spec, server, plan)
    except (ServerError, OSError, postgres.DatabaseError, BrokenExecutor) as exc:
        notes += [f"{spec.name}: could not run: {exc}", *log_notes(log_path)]
        return None, None, notes
    facts = None
    if outcome.service_id and outcome.offered:
        try:
            facts = db_facts(outcome.service_id, outcome.offered)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            notes.append(f"  could not read the database afterwards: {exc}")
    notes += outcome_notes(outcome, facts, plan)
    notes += log_notes(log_path)
    return outcome, facts, notes


def main(argv: Sequence[str] | None = None) -> int:
    """Run the rush, print and save the report; 0 only if every check passed."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    sizes: Sizes = args.sizes
    plan = cpu_plan()
    RESULTS.mkdir(parents=True, exist_ok=True)
    try:
        url = postgres.bench_url()
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    unreachable = postgres.unreachable_reason(url)
    if unreachable:
        required = os.environ.get(REQUIRE_SERVICES_ENV) == "1"
        text = f"booking rush skipped: {unreachable}" + (
            f" and {REQUIRE_SERVICES_ENV}=1" if required else ""
        )
        print(text, flush=True)
        REPORT.write_text(text + "\n")
        return 1 if required else 0
    spec = server_spec(args)
    timezone = hall_timezone(datetime.now(UTC))
    header = describe(sizes, spec, plan, timezone)
    print("\n".join(header), flush=True)

    outcome, facts, notes = run_rush_on_server(spec, sizes, plan, timezone)
    if outcome is None:
        table_text, ok = f"{spec.name}: the rush could not run (see below)", False
    else:
        table = build_table(outcome, facts, sizes)
        ok = not table.failed and facts is not None and outcome.error is None
        verdict = (
            "all checks passed"
            if ok
            else "FAILED: " + ", ".join(table.failed or ["the run did not complete"])
        )
        table_text = f"{table.format()}\n{verdict}"
    text = "\n".join([*header, "", table_text, "", *notes])
    print("\n" + "\n".join(text.split("\n")[len(header) :]))
    REPORT.write_text(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
