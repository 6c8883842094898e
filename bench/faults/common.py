"""What every fault scenario shares: its row of the table, a private PostgreSQL it may
restart, a OneDoor server on it, and the load that runs while the fault happens.

The load is what a hall's devices do: kiosks issue tickets with an Idempotency-Key and,
when an answer does not come (a dropped connection, a timeout, a 503), ask again with the
same key after the Retry-After the server gave; clerks call the next visitor and mark them
absent, and after a failed step try the other one (call-next tells whether the counter is
still busy). Nothing here mocks: real processes, real sockets, real databases.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from ..checks import Database, calls_doubled, numbers
from ..hall import ClerkSession, Hall, open_counters
from ..server import RunningServer, ServerSpec, running_server
from ..stats import _listed
from .bookings import BookingHall, Bookings, booker_loop, booking_hall, booking_problems
from .clients import GIVE_UP_AFTER_S, Tally, retry_after, send


@dataclass
class Row:
    """One line of the table: what the clients saw and what the database holds after."""

    scenario: str
    requests: int = 0
    errors: int = 0
    """Answers clients saw that a hall would call broken: 5xx other than 503, hangs past
    REQUEST_TIMEOUT_S, a 503 without Retry-After, an operation given up."""
    refused: int = 0
    """503 answers with Retry-After and dropped connections: the promised fast failure,
    each followed by a retry."""
    lost: int = 0
    duplicated: int = 0
    recovery_s: float | None = None
    goal_s: float | None = None
    """The recovery the issue promises for this scenario, if any."""
    checks: list[str] = field(default_factory=list)
    """What was verified, in words (the table prints them under the row)."""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        late = self.goal_s is not None and (
            self.recovery_s is None or self.recovery_s > self.goal_s
        )
        return not (self.problems or self.lost or self.duplicated or self.errors or late)


@dataclass(frozen=True)
class Context:
    workdir: Path
    short: bool
    pg: PrivatePostgres
    cpus: frozenset[int]
    soak_minutes: float = 0.0

    def say(self, text: str) -> None:
        print(f"  {time.strftime('%H:%M:%S')} {text}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for folder in versions:
        if (folder / name).exists():
            return str(folder / name)
    raise RuntimeError(f"{name} not found: install PostgreSQL's server package")


class PrivatePostgres:
    """A PostgreSQL cluster of the suite's own (initdb in the work dir, its own port), so a
    scenario can kill and restart it without touching anybody's database."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "pgdata"
        self.port = free_port()
        self.log = root / "postgres.log"

    def _as_owner(self, command: list[str]) -> list[str]:
        # initdb refuses to run as root: the cluster then belongs to the postgres user.
        return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command

    def init(self) -> PrivatePostgres:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            for folder in (self.root, *self.root.parents):
                if folder == Path("/"):
                    break
                folder.chmod(folder.stat().st_mode | 0o055)
            shutil.chown(self.root, "postgres")
        command = [_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                   "--no-sync", "-E", "UTF8", "--locale", "C"]  # fmt: skip
        subprocess.run(self._as_owner(command), check=True, capture_output=True)
        return self.start()

    def start(self) -> PrivatePostgres:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        )
        command = [_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
                   "-w", "-t", "60", "start"]  # fmt: skip
        subprocess.run(self._as_owner(command), check=True, capture_output=True)
        return self

    def stop(self, mode: str = "fast") -> None:
        """``immediate`` is a crash: no checkpoint, recovery from the WAL at the next start."""
        command = [_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"]
        subprocess.run(self._as_owner(command), check=False, capture_output=True)

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    async def create_database(self, name: str) -> str:
        conn = await asyncpg.connect(
            host="127.0.0.1", port=self.port, user="postgres", database="postgres"
        )
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)

    def accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False


def database_of(url: str) -> Database:
    return Database(url=make_url(url).set(drivername="postgresql"))


@contextmanager
def onedoor(
    ctx: Context,
    name: str,
    database_url: str,
    workers: int = 2,
    redis_url: str | None = None,
    env: tuple[tuple[str, str], ...] = (
        ("ONEDOOR_SCHEDULER", "0"),
        ("ONEDOOR_BOOKING_RATE_LIMIT", "0"),  # every booker comes from 127.0.0.1
    ),
) -> Iterator[RunningServer]:
    """``onedoor serve`` on the scenario's database, stopped on the way out."""
    spec = ServerSpec(name, database_url, workers, redis_url, env)
    var = ctx.workdir / name
    var.mkdir(parents=True, exist_ok=True)
    with running_server(spec, var, var / "server.log", ctx.cpus) as server:
        yield server


async def issue_one(
    client: httpx.AsyncClient,
    hall: Hall,
    tally: Tally,
    service_id: int,
    key: str | None = None,
    patient: bool = True,
) -> int | None:
    """Ask for a ticket until the server answers for this key (or GIVE_UP_AFTER_S); a
    patient kiosk waits the Retry-After it was given, an impatient one (the probe that
    times recovery) asks again every 0.1 s."""
    key = key or uuid.uuid4().hex
    headers = {"Authorization": f"Bearer {hall.kiosk_token}", "Idempotency-Key": key}
    deadline = time.monotonic() + GIVE_UP_AFTER_S
    tries = 0
    while time.monotonic() < deadline:
        tries += 1
        answer = await send(
            client, tally, f"/api/halls/{hall.hall_id}/tickets",
            json={"service_id": service_id}, headers=headers,
        )  # fmt: skip
        if answer is not None and answer.status_code == 201:
            ticket_id = int(answer.json()["id"])
            before = tally.answered.setdefault(key, ticket_id)
            if before != ticket_id:
                tally.contradictions.append(f"key {key}: tickets {before} and {ticket_id}")
            tally.ok_at.append(time.monotonic())
            if tries > 1:
                tally.retried.add(key)
            return ticket_id
        if answer is not None and answer.status_code < 500:
            tally.gave_up.append(f"{key}: {answer.status_code} {answer.text[:120]}")
            return None
        await asyncio.sleep(retry_after(answer) if patient else 0.1)
    tally.gave_up.append(f"{key}: no ticket after {GIVE_UP_AFTER_S:.0f} s")
    return None


async def kiosk_loop(
    base_url: str,
    hall: Hall,
    tally: Tally,
    stop: asyncio.Event,
    pause_s: float = 0.0,
    patient: bool = True,
) -> None:
    """Tickets one after another until ``stop``; a retry keeps its key (and a second,
    identical request for one key now and then, as a double tap sends)."""
    async with httpx.AsyncClient(base_url=base_url) as client:
        while not stop.is_set():
            key = uuid.uuid4().hex
            service = random.choice(hall.service_ids)
            got = await issue_one(client, hall, tally, service, key, patient)
            if got is not None and random.random() < 0.05:
                await issue_one(client, hall, tally, service, key)  # the double tap
            if pause_s:
                await asyncio.sleep(pause_s)


async def clerk_loop(
    session: ClerkSession, tally: Tally, stop: asyncio.Event, pause_s: float = 0.05
) -> None:
    """Call-next then no-show until ``stop``; after a failed step the other one (call-next
    says whether the counter is still busy, a no-show of nobody is refused)."""
    counter = f"/api/counters/{session.clerk.counter_id}"
    headers = {"X-CSRF-Token": session.csrf_token}
    step = "call-next"
    while not stop.is_set():
        answer = await send(session.client, tally, f"{counter}/{step}", headers=headers)
        if answer is None or answer.status_code >= 400:
            await asyncio.sleep(
                retry_after(answer) if answer is None or answer.status_code == 503 else 0.05
            )
            step = "no-show" if step == "call-next" else "call-next"
            continue
        tally.ok_at.append(time.monotonic())
        if step == "no-show":
            tally.no_shows += 1
            step = "call-next"
            continue
        ticket = answer.json().get("ticket")
        if ticket is None:
            await asyncio.sleep(0.2)  # nobody waiting: look again soon
            continue
        tally.calls += 1
        tally.called_ids.append(int(ticket["id"]))
        step = "no-show"
        await asyncio.sleep(pause_s)


def ticket_problems(db: Database, hall_id: int, tally: Tally) -> tuple[int, int, list[str]]:
    """(lost, duplicated, problems) from the database after the scenario: every answered
    ticket is there, one ticket per Idempotency-Key, numbers unique and gapless."""
    problems = numbers(db, hall_id)
    made = {int(r[0]) for r in db.rows("SELECT id FROM tickets WHERE hall_id = $1", hall_id)}
    lost = sorted(set(tally.answered.values()) - made)
    per_key = db.rows("SELECT key, count(*) FROM idempotency_keys GROUP BY key HAVING count(*) > 1")
    doubled_ids = [t for t, n in Counter(tally.answered.values()).items() if n > 1]
    # Half-written: a ticket whose issue event (and so its board line) is missing.
    orphans = db.rows(
        "SELECT t.id FROM tickets t WHERE t.hall_id = $1 AND t.seq IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM hall_events e WHERE e.hall_id = t.hall_id AND e.name = 'TicketIssued' "
        "AND {ticket_id} = t.id)",
        hall_id,
    )
    if orphans:
        problems.append(
            f"tickets without their issue event: ids {_listed([o[0] for o in orphans])}"
        )
    if lost:
        problems.append(f"answered but not in the database: ids {_listed(lost)}")
    if per_key:
        problems.append(f"keys with two tickets: {_listed(sorted(k for k, _ in per_key))}")
    if doubled_ids:
        problems.append(f"one ticket answered for two keys: ids {_listed(sorted(doubled_ids))}")
    problems.extend(tally.contradictions)
    duplicated = len(per_key) + len(doubled_ids) + len(tally.contradictions)
    duplicated += sum(1 for p in problems if "distinct numbers" in p)
    return len(lost), duplicated, problems


def call_problems(db: Database, hall_id: int, tally: Tally) -> tuple[int, int, list[str]]:
    """(lost, duplicated, problems) of the calls: no ticket called twice, no counter with
    two tickets, every call answered has its event."""
    doubled, problems = calls_doubled(db, hall_id)
    evented = {
        int(r[0])
        for r in db.rows(
            "SELECT {ticket_id} FROM hall_events WHERE hall_id = $1 AND name = 'TicketCalled'",
            hall_id,
        )
    }
    unrecorded = sorted(set(tally.called_ids) - evented)
    if unrecorded:
        problems.append(f"calls answered without their event: ticket ids {_listed(unrecorded)}")
    return len(unrecorded), doubled, problems


def judge_load(row: Row, db: Database, hall_id: int, load: Load) -> None:
    """``judge_queue``, and the bookings when the load made some."""
    judge_queue(row, db, hall_id, load.tally)
    if load.booking_hall is not None:
        lost, duplicated, problems = booking_problems(db, load.booking_hall, load.bookings)
        row.lost += lost
        row.duplicated += duplicated
        row.problems += problems
        seen = load.bookings
        row.checks.append(
            f"{len(seen.codes)} bookings answered = stored, {len(seen.found_booked)} found "
            f"booked on a retry (an unanswered try had committed), one per phone, no slot over "
            f"its places ({seen.full} refused as full)"
        )


def judge_queue(row: Row, db: Database, hall_id: int, tally: Tally) -> None:
    """Fill ``row`` from the tally and the database: tickets and calls lost or doubled."""
    lost_t, dup_t, problems_t = ticket_problems(db, hall_id, tally)
    lost_c, dup_c, problems_c = call_problems(db, hall_id, tally)
    row.requests += tally.requests
    row.errors += tally.errors
    row.refused += tally.refused
    row.lost += lost_t + lost_c
    row.duplicated += dup_t + dup_c
    row.problems += problems_t + problems_c
    if tally.errors:
        broken = {s: n for s, n in tally.statuses.items() if s >= 500 and s != 503}
        row.problems.append(
            f"clients saw: {broken or 'no 5xx'} other than 503, {tally.hangs} hangs, "
            f"{tally.no_retry_after} 503 without Retry-After, {len(tally.gave_up)} given up"
            + (f" (first: {tally.gave_up[0]})" if tally.gave_up else "")
        )
    row.checks.append(
        f"{len(set(tally.answered.values()))} tickets answered = rows, each with its event, one "
        f"per key ({len(tally.retried)} after a retry), numbers gapless; {tally.calls} calls "
        f"each called once, {tally.no_shows} no-shows"
    )


@dataclass
class Load:
    """Kiosks, clerks and (with a booking hall) online bookers at work until ``finish``."""

    tally: Tally
    stop: asyncio.Event
    tasks: list[asyncio.Task[None]]
    sessions: list[ClerkSession]
    booking_hall: BookingHall | None = None
    bookings: Bookings = field(default_factory=lambda: Bookings())

    async def answers(self, count: int, within_s: float = 120.0) -> None:
        """Return once ``count`` more requests were answered successfully (the load is
        running, not just started); RuntimeError if that takes longer than ``within_s``."""
        target = len(self.tally.ok_at) + count
        deadline = time.monotonic() + within_s
        while len(self.tally.ok_at) < target:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the load got fewer than {count} answers in {within_s:.0f} s")
            failed = [t for t in self.tasks if t.done() and t.exception() is not None]
            if failed:
                raise RuntimeError("a load client crashed") from failed[0].exception()
            await asyncio.sleep(0.05)

    async def finish(self) -> Tally:
        self.stop.set()
        await asyncio.gather(*self.tasks)
        await asyncio.gather(*(s.client.aclose() for s in self.sessions))
        return self.tally


async def start_load(
    base_url: str,
    hall: Hall,
    kiosks: int,
    clerks: bool = True,
    kiosk_pause_s: float = 0.0,
    bookers: int = 0,
) -> Load:
    """``kiosks`` patient kiosks, one impatient probe kiosk (pausing 0.1 s between its
    tickets), with ``clerks`` every counter of the hall calling, and ``bookers`` visitors
    booking online in a booking hall of their own."""
    tally, stop = Tally(), asyncio.Event()
    sessions = await open_counters(base_url, hall.clerks) if clerks else []
    load = Load(tally, stop, [], sessions)
    if bookers:
        place = load.booking_hall = await booking_hall(base_url)
        load.tasks += [
            asyncio.create_task(
                booker_loop(base_url, place, tally, load.bookings, stop, i * 1_000_000)
            )
            for i in range(bookers)
        ]
    load.tasks += [
        asyncio.create_task(kiosk_loop(base_url, hall, tally, stop, kiosk_pause_s))
        for _ in range(kiosks)
    ]
    load.tasks.append(asyncio.create_task(kiosk_loop(base_url, hall, tally, stop, 0.1, False)))
    load.tasks += [asyncio.create_task(clerk_loop(s, tally, stop)) for s in sessions]
    return load
