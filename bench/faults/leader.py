"""The scheduler's leader killed: another process takes over the jobs within a minute, and
no job runs twice (issue 14).

Two ``onedoor serve`` (two workers each, the scheduler on, the product's leader poll of
5 s, the no-show sweep and reminders every 2 s) share one database; every worker tries to
lead, one holds the advisory lock. Reminders go to a receiver of the scenario's own, at an
address per server, so every reminder says which server sent it. Kiosks and clerks work
against the server that will survive; the leader's whole process group is killed with
SIGKILL.

What the jobs did is read from where they leave it: overdue bookings (written straight
into the database, in a slot of their own with one spare place counted as booked) must end
``no_show`` with exactly one ``BookingMarkedNoShow`` event and exactly one place given
back; bookings due a reminder must get exactly one reminder, from the server that led at
the time. A batch of each is added before the kill (the old leader does it), right after
the kill (the takeover does it: the takeover time is from the kill to the last of them
done) and after the takeover (the new leader's interval jobs do it). Throughout, a sampler
reads ``pg_locks`` and ``scheduler_leader``: never two sessions holding the scheduler's
lock, the leader row going from the killed process to the survivor once and never back.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from booking.domain.codes import new_code

from .. import procs
from ..hall import Hall, build_hall, login, open_counters
from ..server import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    ONEDOOR,
    RunningServer,
    ServerSpec,
    running_process,
    server_env,
)
from ..stats import _listed
from .common import (
    Context,
    Row,
    Tally,
    clerk_loop,
    database_of,
    free_port,
    judge_queue,
    kiosk_loop,
    onedoor,
)

NAME = "leader-kill"
GOAL_S = 60.0
SWEEP_SECONDS = 2.0
"""ONEDOOR_SWEEP_SECONDS: no-show sweep and reminders this often (the default is 60 s)."""
LEADER_POLL_SECONDS = 5.0
"""The product's default ONEDOOR_LEADER_POLL_SECONDS, said here so the row can name it."""
TAKEOVER_WAIT_S = 90.0
"""How long to wait for the takeover: past the goal, so a slow one is measured, not lost."""
SAMPLE_EVERY_S = 0.2
PHONE = "13800138000"
T = TypeVar("T")
FAILURE = re.compile(r"Traceback|scheduled job \S+ failed|scheduler step failed|lost the scheduler")
# pg_advisory_lock key of queue_server.scheduler: "OneDoor!" as a big-endian 64-bit integer.
LOCK_KEY = int.from_bytes(b"OneDoor!", "big", signed=True)


# --- a receiver for the reminders ---------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    sender: str
    """The server whose notifier posted it (the path's last part)."""
    code: str
    at: float
    """time.time() when it arrived."""


class Receiver:
    """A minimal HTTP server taking the WebhookNotifier's POSTs: ``/notify/<server>``."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.got: list[Receipt] = []
        self.odd: list[str] = []

    def url(self, sender: str) -> str:
        return f"http://127.0.0.1:{self.port}/notify/{sender}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            _, path, _ = head[0].split(" ", 2)
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            body = json.loads(await reader.readexactly(length))
            self.got.append(Receipt(path.rsplit("/", 1)[-1], str(body["code"]), time.time()))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ValueError, KeyError, ConnectionError) as exc:
            self.odd.append(f"{type(exc).__name__}: {exc}")
        finally:
            writer.close()

    async def serve(self) -> asyncio.Server:
        return await asyncio.start_server(self._handle, sock=self.sock)


# --- who leads ----------------------------------------------------------------------------


def local_ports(pids: list[int]) -> set[int]:
    """The local TCP ports of the sockets ``pids`` have open (from /proc)."""
    inodes = set()
    for pid in pids:
        with suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@dataclass(frozen=True)
class Sample:
    at: float
    """time.time()"""
    lock_ports: tuple[int, ...]
    """Client ports of the sessions holding the scheduler's lock."""
    holder: str | None
    since: datetime | None
    heartbeat: datetime | None


@dataclass
class Watch:
    """What the sampler saw: the lock's holders and the leader row, every SAMPLE_EVERY_S."""

    samples: list[Sample] = field(default_factory=list)
    owner_of_port: dict[int, str] = field(default_factory=dict)
    """Lock client port → the server whose process had it open ("gone" if none)."""


LOCKS = """
    SELECT a.client_port, l.classid::text::bigint, l.objid::text::bigint
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


async def watch_leader(
    conn: asyncpg.Connection, servers: dict[str, RunningServer], watch: Watch, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        ports = tuple(
            int(port) for port, high, low in await conn.fetch(LOCKS)
            if ((high << 32) | low) == LOCK_KEY
        )  # fmt: skip
        row = await conn.fetchrow(
            "SELECT holder, since, heartbeat_at FROM scheduler_leader WHERE name = 'jobs'"
        )
        for port in ports:
            if port not in watch.owner_of_port:
                owners = [
                    n for n, s in servers.items() if port in local_ports(procs.group_pids(s.pgid))
                ]
                # A killed process's session lingers a moment: nobody alive owns it.
                watch.owner_of_port[port] = owners[0] if len(owners) == 1 else "gone"
        watch.samples.append(
            Sample(time.time(), ports, *(row if row is not None else (None, None, None)))
        )
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_S)


def holder_pid(holder: str | None) -> int | None:
    return int(holder.rsplit(":", 1)[1]) if holder else None


def server_of_pid(servers: dict[str, RunningServer], pid: int | None) -> str | None:
    return next((n for n, s in servers.items() if pid is not None and pid in s.pids), None)


# --- the jobs' work -----------------------------------------------------------------------


@dataclass
class Batch:
    label: str
    added_at: float
    overdue: list[str]
    """Codes of bookings past their late window: the sweep makes them no-shows."""
    remind: list[str]
    """Codes of bookings due a reminder now."""


class Bookings:
    """Bookings written straight into the database (the API refuses slots that have begun),
    each in a slot of its own; one spare place of each overdue one's slot counts as booked,
    so a place given back twice shows."""

    def __init__(self, conn: asyncpg.Connection, hall_id: int, service_id: int) -> None:
        self.conn = conn
        self.hall_id = hall_id
        self.service_id = service_id
        self.serial = 0
        self.batches: list[Batch] = []

    async def _one(self, start: datetime, booked: int) -> str:
        self.serial += 1
        # Half a second past a whole one: never a start the release job makes.
        start = start.replace(microsecond=500_000) + timedelta(seconds=self.serial)
        slot_id = await self.conn.fetchval(
            "INSERT INTO slots (hall_id, service_id, starts_at, ends_at, capacity, bookable, "
            "booked) VALUES ($1, $2, $3, $4, 3, 3, $5) RETURNING id",
            self.hall_id, self.service_id, start, start + timedelta(minutes=30), booked,
        )  # fmt: skip
        code = new_code(secrets.randbelow)
        await self.conn.execute(
            "INSERT INTO bookings (hall_id, service_id, slot_id, slot_start, code, name, phone, "
            "state, channel, made_at) VALUES ($1, $2, $3, $4, $5, '王小明', $6, 'booked', "
            "'online', $7)",
            self.hall_id, self.service_id, slot_id, start, code, PHONE,
            start - timedelta(days=1),
        )  # fmt: skip
        return code

    async def add(self, label: str, size: int) -> Batch:
        now = datetime.now(UTC)
        overdue = [await self._one(now - timedelta(hours=1), booked=2) for _ in range(size)]
        # Within the default remind_before (2 h) of its slot, booked long before: due now.
        remind = [await self._one(now + timedelta(hours=1), booked=1) for _ in range(size)]
        batch = Batch(label, time.time(), overdue, remind)
        self.batches.append(batch)
        return batch

    async def swept(self, codes: list[str]) -> dict[str, datetime]:
        """The codes among ``codes`` marked no-show, with when (the server's ended_at)."""
        rows = await self.conn.fetch(
            "SELECT code, ended_at FROM bookings WHERE code = ANY($1) AND state = 'no_show'",
            codes,
        )
        return {r["code"]: r["ended_at"] for r in rows}


async def within(seconds: float, probe: Callable[[], Awaitable[T | None]]) -> T | None:
    """``probe()``'s first truthy answer within ``seconds``, else None."""
    deadline = time.monotonic() + seconds
    while True:
        answer = await probe()
        if answer or time.monotonic() >= deadline:
            return answer or None
        await asyncio.sleep(0.1)


def sent_to(receiver: Receiver, codes: list[str]) -> list[Receipt]:
    wanted = set(codes)
    return [r for r in receiver.got if r.code in wanted]


# --- the scenario -------------------------------------------------------------------------


@dataclass
class Outcome:
    tally: Tally
    hall_id: int
    leader: str = ""
    survivor: str = ""
    t_kill: float = 0.0
    lock_s: float | None = None
    swept_s: float | None = None
    reminded_s: float | None = None
    killed: str = ""


def _env(receiver: Receiver, name: str) -> tuple[tuple[str, str], ...]:
    return (
        ("ONEDOOR_SCHEDULER", "1"),
        ("ONEDOOR_SWEEP_SECONDS", str(SWEEP_SECONDS)),
        ("ONEDOOR_NOTIFY", "webhook"),
        ("ONEDOOR_NOTIFY_WEBHOOK_URL", receiver.url(name)),
    )


async def make_bookable(base_url: str, hall: Hall) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as admin:
        csrf = await login(admin, ADMIN_USERNAME, ADMIN_PASSWORD)
        answer = await admin.put(
            f"/api/halls/{hall.hall_id}/services/{hall.service_ids[0]}/booking",
            json={"slot_minutes": 30, "capacity": 2, "walk_in_share": 0},
            headers={"X-CSRF-Token": csrf},
        )
        answer.raise_for_status()


async def scenario(
    ctx: Context, url: str, servers: dict[str, RunningServer], receiver: Receiver, row: Row
) -> Outcome:
    listening = await receiver.serve()
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    watch_conn = await asyncpg.connect(dsn)
    first = next(iter(servers.values()))
    hall = await build_hall(first.base_url, ADMIN_USERNAME, ADMIN_PASSWORD, counters=2)
    await make_bookable(first.base_url, hall)
    out = Outcome(Tally(), hall.hall_id)
    watch = Watch()
    stop_watch, stop_load = asyncio.Event(), asyncio.Event()
    watcher = asyncio.create_task(watch_leader(watch_conn, servers, watch, stop_watch))
    load: list[asyncio.Task[None]] = []
    sessions = []
    bookings = Bookings(conn, hall.hall_id, hall.service_ids[0])
    try:
        # 1. Who leads: the lock's holder and the leader row agree on one live worker.
        async def leader_known() -> tuple[str, str] | None:
            last = watch.samples[-1] if watch.samples else None
            if last is None or len(last.lock_ports) != 1:
                return None
            by_lock = watch.owner_of_port.get(last.lock_ports[0])
            by_row = server_of_pid(servers, holder_pid(last.holder))
            if by_row is None or by_row != by_lock or last.holder is None:
                return None
            return by_row, last.holder

        known = await within(30, leader_known)
        if known is None:
            row.problems.append("no leader within 30 s of the start (see the servers' logs)")
            return out
        out.leader, old_holder = known
        [out.survivor] = [n for n in servers if n != out.leader]
        survivor = servers[out.survivor]
        ctx.say(f"leader: {old_holder} ({out.leader}); load against {out.survivor}")

        # 2. Load against the survivor; the old leader does a batch of work.
        kiosks, pre_s, post_s, size = (2, 5.0, 8.0, 5) if ctx.short else (4, 30.0, 45.0, 20)
        sessions = await open_counters(survivor.base_url, hall.clerks)
        load += [
            asyncio.create_task(kiosk_loop(survivor.base_url, hall, out.tally, stop_load, 0.05))
            for _ in range(kiosks)
        ]
        load += [asyncio.create_task(clerk_loop(s, out.tally, stop_load)) for s in sessions]
        before = await bookings.add("before the kill", size)

        async def done(batch: Batch) -> bool:
            swept = await bookings.swept(batch.overdue)
            return len(swept) == len(batch.overdue) and len(
                {r.code for r in sent_to(receiver, batch.remind)}
            ) == len(batch.remind)

        await within(SWEEP_SECONDS * 5 + 10, lambda: done(before))
        await asyncio.sleep(pre_s)  # the load runs a while before the fault

        # 3. Kill the leader's whole process group; work falls due at once.
        out.t_kill = time.time()
        os.killpg(servers[out.leader].pgid, signal.SIGKILL)
        gone = await within(10, lambda: _async(not procs.group_pids(servers[out.leader].pgid)))
        out.killed = "its process group gone" if gone else "processes STILL ALIVE 10 s after"
        ctx.say(f"killed {out.leader} (pgid {servers[out.leader].pgid}): {out.killed}")
        after = await bookings.add("right after the kill", size)

        async def taken_over() -> bool:
            last = watch.samples[-1] if watch.samples else None
            return bool(
                last and len(last.lock_ports) == 1
                and watch.owner_of_port.get(last.lock_ports[0]) == out.survivor
                and server_of_pid(servers, holder_pid(last.holder)) == out.survivor
            )  # fmt: skip

        if await within(TAKEOVER_WAIT_S, taken_over):
            # When the survivor wrote the leader row, just after it took the lock (its clock).
            since = next(
                s.since for s in watch.samples
                if s.since and server_of_pid(servers, holder_pid(s.holder)) == out.survivor
            )  # fmt: skip
            out.lock_s = since.timestamp() - out.t_kill
        await within(max(5.0, TAKEOVER_WAIT_S - (time.time() - out.t_kill)), lambda: done(after))
        swept = await bookings.swept(after.overdue)
        if len(swept) == len(after.overdue):
            out.swept_s = max(t.timestamp() for t in swept.values()) - out.t_kill
        receipts = sent_to(receiver, after.remind)
        if len({r.code for r in receipts}) == len(after.remind):
            out.reminded_s = max(r.at for r in receipts) - out.t_kill
        ctx.say(
            f"takeover: lock {_s(out.lock_s)}, overdue swept {_s(out.swept_s)}, "
            f"reminders sent {_s(out.reminded_s)} after the kill"
        )

        # 4. The new leader's interval jobs go on; the load runs on a while.
        later = await bookings.add("after the takeover", size)
        await within(SWEEP_SECONDS * 5 + 10, lambda: done(later))
        await asyncio.sleep(post_s)
    finally:
        stop_load.set()
        await asyncio.gather(*load, return_exceptions=True)
        await asyncio.gather(*(s.client.aclose() for s in sessions), return_exceptions=True)
        stop_watch.set()
        await watcher
        try:
            await judge_jobs(conn, servers, receiver, bookings, watch, out, row)
        finally:
            await conn.close()
            await watch_conn.close()
            listening.close()
    return out


async def _async(value: T) -> T:
    return value


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s"


async def judge_jobs(
    conn: asyncpg.Connection,
    servers: dict[str, RunningServer],
    receiver: Receiver,
    bookings: Bookings,
    watch: Watch,
    out: Outcome,
    row: Row,
) -> None:
    """The jobs' part of the row: each booking's work done exactly once, by the leader."""
    batches = bookings.batches
    overdue = [c for b in batches for c in b.overdue]
    remind = [c for b in batches for c in b.remind]
    if not batches:
        return
    # The sweep: one no-show and one event per booking, one place given back per slot.
    facts = await conn.fetch(
        """
        SELECT b.code, b.state, b.ended_at, s.booked,
               (SELECT count(*) FROM hall_events e
                WHERE e.hall_id = b.hall_id AND e.name = 'BookingMarkedNoShow'
                  AND (e.payload->>'service_id')::bigint = b.service_id
                  AND (e.payload->>'slot_start')::timestamptz = b.slot_start) AS events
        FROM bookings b JOIN slots s ON s.id = b.slot_id WHERE b.code = ANY($1)
        """,
        overdue,
    )
    unswept = sorted(f["code"] for f in facts if f["state"] != "no_show")
    twice = sorted(f["code"] for f in facts if f["events"] > 1 or f["booked"] < 1)
    silent = sorted(
        f["code"]
        for f in facts
        if f["state"] == "no_show" and (f["events"] == 0 or f["booked"] > 1)
    )
    row.lost += len(unswept) + len(silent) + (len(overdue) - len(facts))
    row.duplicated += len(twice)
    if unswept:
        row.problems.append(f"overdue bookings never swept: {_listed(unswept)}")
    if twice:
        row.problems.append(
            f"bookings swept twice (two events or two places back): {_listed(twice)}"
        )
    if silent:
        row.problems.append(f"no-shows without their event or place back: {_listed(silent)}")
    # Reminders: exactly one each, from the server that led when it was sent.
    per_code = Counter(r.code for r in sent_to(receiver, remind))
    unsent = sorted(c for c in remind if per_code[c] == 0)
    doubled = sorted(c for c, n in per_code.items() if n > 1)
    row.lost += len(unsent)
    row.duplicated += sum(n - 1 for n in per_code.values() if n > 1)
    if unsent:
        claimed = {
            r["code"] for r in await conn.fetch(
                "SELECT code FROM bookings WHERE code = ANY($1) AND reminded_at IS NOT NULL",
                unsent,
            )
        }  # fmt: skip
        row.problems.append(
            f"reminders never received: {_listed(unsent)} "
            f"({len(claimed)} of them marked reminded in the database)"
        )
    if doubled:
        row.problems.append(f"reminders sent twice: {_listed(doubled)}")
    if receiver.odd:
        row.problems.append(f"odd requests at the reminder receiver: {receiver.odd[:3]}")
    new_since = next(
        (s.since for s in watch.samples
         if server_of_pid(servers, holder_pid(s.holder)) == out.survivor and s.since),
        None,
    )  # fmt: skip
    wrong_sender = [
        r for r in sent_to(receiver, remind)
        if (r.sender == out.leader and r.at >= out.t_kill)
        or (r.sender == out.survivor and (new_since is None or r.at < new_since.timestamp()))
    ]  # fmt: skip
    before_lead = []
    if new_since is not None and len(batches) > 1:
        swept = await bookings.swept(batches[1].overdue)
        before_lead = sorted(c for c, t in swept.items() if t < new_since)
    row.duplicated += len(wrong_sender) + len(before_lead)
    if wrong_sender:
        row.problems.append(
            "reminders sent by a process that did not lead: "
            + _listed(f"{r.code} by {r.sender}" for r in wrong_sender)
        )
    if before_lead:
        row.problems.append(f"swept before the survivor led: {_listed(before_lead)}")
    # Leadership over time: one lock holder at most; the row goes old → new, once.
    two = [s for s in watch.samples if len(s.lock_ports) > 1]
    holders = [h for h, _ in _runs(s.holder for s in watch.samples if s.holder)]
    owners = [server_of_pid(servers, holder_pid(h)) for h in holders]
    early = [
        s for s in watch.samples
        if s.at < out.t_kill
        and any(watch.owner_of_port.get(p) == out.survivor for p in s.lock_ports)
    ]  # fmt: skip
    if two:
        row.duplicated += 1
        row.problems.append(f"two sessions held the scheduler lock ({len(two)} samples)")
    if early:
        row.duplicated += 1
        row.problems.append(f"{out.survivor} held the lock while {out.leader} still led")
    if out.leader and owners != [out.leader, out.survivor]:
        row.problems.append(f"leader row went {' → '.join(holders)}, not killed → survivor once")
    beats = [s.heartbeat for s in watch.samples if s.heartbeat and s.holder in holders[-1:]]
    if len(set(beats)) < 2:
        row.problems.append("the new leader's heartbeat in scheduler_leader never moved")
    row.checks.append(
        f"{len(watch.samples)} samples of pg_locks and scheduler_leader: "
        f"{'never two lock holders' if not two else 'TWO LOCK HOLDERS'}, leader row "
        f"{' → '.join(holders)} ({' → '.join(map(str, owners))}), heartbeat moving"
    )
    row.checks.append(
        f"{len(overdue)} overdue bookings in {len(batches)} batches (before the kill, right "
        f"after, after the takeover): {len(overdue) - len(unswept)} no-show, each with one "
        f"event and one place given back; the post-kill batch swept only once the survivor led"
    )
    row.checks.append(
        f"{len(remind)} bookings due a reminder: {sum(1 for c in remind if per_code[c] == 1)} "
        f"reminded exactly once, each by the server leading then (receiver per server)"
    )


def _runs(items: Any) -> list[tuple[Any, int]]:
    """Consecutive equal items folded: [a, a, b, a] → [(a, 2), (b, 1), (a, 1)]."""
    runs: list[tuple[Any, int]] = []
    for item in items:
        if runs and runs[-1][0] == item:
            runs[-1] = (item, runs[-1][1] + 1)
        else:
            runs.append((item, 1))
    return runs


def log_problems(server: RunningServer) -> list[str]:
    """Scheduler failures and tracebacks in a server's log."""
    text = server.log_path.read_text(errors="replace")
    lines = [line for line in text.splitlines() if FAILURE.search(line)]
    return [f"{server.log_path.parent.name} log: {line.strip()[:160]}" for line in lines[:3]]


def run(ctx: Context) -> Row:
    row = Row("scheduler leader killed", goal_s=GOAL_S)
    url = asyncio.run(ctx.pg.create_database("faults_leader"))
    receiver = Receiver()
    try:
        with onedoor(ctx, "leader-a", url, workers=2, env=_env(receiver, "leader-a")) as a:
            spec = ServerSpec("leader-b", url, 2, None, _env(receiver, "leader-b"))
            var = ctx.workdir / "leader-b"
            var.mkdir(parents=True, exist_ok=True)
            port = free_port()
            command = [*ONEDOOR, "serve", "--no-migrate", "--log-level", "warning"]
            env = server_env(spec, var, port)
            with running_process(command, env, port, 2, var / "server.log", ctx.cpus) as b:
                servers = {"leader-a": a, "leader-b": b}
                out = asyncio.run(scenario(ctx, url, servers, receiver, row))
                survivor = servers.get(out.survivor)
                if survivor is not None:
                    row.problems += log_problems(survivor)
    finally:
        receiver.sock.close()
    judge_queue(row, database_of(url), out.hall_id, out.tally)
    times = [out.lock_s, out.swept_s, out.reminded_s]
    row.recovery_s = None if None in times else max(t for t in times if t is not None)
    if row.recovery_s is None:
        row.problems.append(
            f"no complete takeover within {TAKEOVER_WAIT_S:.0f} s: lock {_s(out.lock_s)}, "
            f"sweep {_s(out.swept_s)}, reminders {_s(out.reminded_s)}"
        )
    row.checks.insert(
        0,
        f"{out.leader or '?'} led and was killed -9 (whole process group: {out.killed}); "
        f"{out.survivor or '?'} held the lock {_s(out.lock_s)} after, had swept the overdue "
        f"bookings {_s(out.swept_s)} and sent the reminders due {_s(out.reminded_s)} after "
        f"(leader poll {LEADER_POLL_SECONDS:.0f} s, the default; sweep every "
        f"{SWEEP_SECONDS:.0f} s)",
    )
    return row
