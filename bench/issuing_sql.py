"""Issuing's statements on the database alone: ``python -m bench.issuing_sql``
(``--smoke`` for CI).

What does a ticket cost PostgreSQL itself, with no Python in the way, and how does that
change when several issuing statements queue on one hall's rows at once? ``pgbench``
(PostgreSQL's own load generator, a C client; Debian ships it with the server package,
``postgresql-NN``) runs, on a fresh bench database with OneDoor's schema and one hall (a
matter, a kiosk and its printer):

- **one ticket a statement**: ``PG_ENQUEUE_IF_FACTS`` as a kiosk's known issue sends it
  (the matter's day counter, the visit, the ticket, its print job, its Idempotency-Key,
  two events, the hall row), by 1, 2 and 8 clients at once;
- **several a statement**: ``PG_ENQUEUE_MANY`` with 4 and 8 tickets, by 2 clients (one per
  server worker: what ``queue_server/service/issue_batches.py`` sends in a rush);
- **ceiling**: a bare ``INSERT … RETURNING`` into a scratch table (``bench.ceiling``'s).

Each row: tickets a second, the statement's mean latency, and the machine's CPU (all
processes: PostgreSQL, and pgbench's own) per ticket over the run, from /proc/stat; with
nothing else running, that is what a ticket costs the database. The values bound are
those a real issue binds (its payloads, its digest), made by OneDoor's own code; each
statement makes new follow tokens and keys (``gen_random_uuid()``). Afterwards the hall's
numbers and event numbers are checked gapless. Exits 1 if a check fails; skips (exit 0,
with a message) without pgbench, and when PostgreSQL is unreachable unless
ONEDOOR_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL

from queue_server.clock import SystemClock
from queue_server.db import driven
from queue_server.db import statements as sql
from queue_server.db.engine import create_engine, session_factory
from queue_server.db.migrate import upgrade_async
from queue_server.service import accounts, hall_config, queue
from queue_server.service.bus import Bus
from queue_server.service.commands import Actor, IssueTicket

from . import postgres, procs
from .ceiling import CREATE, INSERT, TABLE
from .hall import ALL_DAY, midday_zone
from .report import format_columns, verdict

FULL_SECONDS = 10
SMOKE_SECONDS = 2
UNIQUE = {"token", "key"}
"""Values each statement must make anew (a follow token, an Idempotency-Key)."""
_PARAMETER = re.compile(r"(?<!:):([a-z_]+)")


@dataclass(frozen=True)
class Run:
    name: str
    clients: int
    per_statement: int
    script: Path


@dataclass(frozen=True)
class Measured:
    run: Run
    tickets_per_s: float
    latency_ms: float
    cpu_ms: float


def literal(value: Any) -> str:
    """``value`` as an SQL literal in a pgbench script. JSON is written with a space after
    each colon: pgbench would take ``:null`` for one of its variables."""
    if value is None:
        return "NULL"
    if isinstance(value, bool | int):
        return str(value).lower() if isinstance(value, bool) else str(value)
    if isinstance(value, datetime):
        value = value.isoformat()
    value = str(value)
    if value.startswith("{"):
        value = json.dumps(json.loads(value), separators=(", ", ": "), ensure_ascii=False)
    return "'" + value.replace("'", "''") + "'"


def single_script(values: dict[str, Any]) -> str:
    """``PG_ENQUEUE_IF_FACTS`` with ``values`` written in."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        return "(gen_random_uuid()::text)" if name in UNIQUE else literal(values[name])

    return _PARAMETER.sub(value, sql.PG_ENQUEUE_IF_FACTS.text).strip() + ";\n"


def many_script(values: dict[str, Any], count: int) -> str:
    """``PG_ENQUEUE_MANY`` with ``count`` issues of ``values`` written in."""
    arrays = {"facts": "facts", **driven.ENQUEUE_MANY_ARRAYS}

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "hall":
            return literal(values["hall"])
        field = arrays[name]
        one = "gen_random_uuid()::text" if field in UNIQUE else literal(values[field])
        return "ARRAY[" + ", ".join([one] * count) + "]"

    return _PARAMETER.sub(value, sql.PG_ENQUEUE_MANY.text).strip() + ";\n"


async def issue_values(url: str) -> dict[str, Any]:
    """A hall, and what its next known issue binds (one issue first teaches the process
    the hall and its matter, as a kiosk's first issue does)."""
    await upgrade_async(url)
    engine = create_engine(url)
    try:
        bus = Bus(session_factory(engine), SystemClock())
        hall = await bus.run(
            hall_config.create_hall,
            {"name_zh": "基准大厅", "name_en": "Bench hall", "timezone": midday_zone(),
             "opening_hours": ALL_DAY, "priority_boosts": {"elderly": 15}},
        )  # fmt: skip
        matter = await bus.run(
            hall_config.create_service,
            hall.id,
            {"name_zh": "社会保险", "name_en": "Social insurance", "prefix": "A",
             "typical_minutes": 6},
        )  # fmt: skip
        kiosk = await bus.run(accounts.create_device, hall.id, accounts.DeviceKind.KIOSK, "k")
        await bus.run(accounts.create_device, hall.id, accounts.DeviceKind.PRINTER, "p", kiosk.id)
        command = IssueTicket(
            hall.id, matter.id, actor=Actor(device_id=kiosk.id), idempotency_key="first",
            follow_base="https://hall.example",
        )  # fmt: skip
        await bus.run(queue.issue_new, command)
        known = queue._known_facts[(hall.id, matter.id)]
        idempotency = (f"device:{kiosk.id}", "k", f"{hall.id}/{matter.id}/none/walk_in")
        _, visit = queue._new_visit(
            command, known.hall, known.matter, SystemClock().now(), idempotency
        )
        async with engine.begin() as connection:
            await connection.execute(text(CREATE["postgresql"]))
        return {**visit.values(), "facts": known.digest}
    finally:
        await engine.dispose()


async def gapless(url: str) -> list[str]:
    """What is wrong with the hall's numbers and events (nothing: an empty list)."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            seqs = (await connection.execute(text("SELECT seq FROM tickets ORDER BY seq"))).all()
            events = (
                await connection.execute(text("SELECT seq FROM hall_events ORDER BY seq"))
            ).all()
            jobs = (await connection.execute(text("SELECT count(*) FROM print_jobs"))).scalar()
    finally:
        await engine.dispose()
    wrong = []
    if [row[0] for row in seqs] != list(range(1, len(seqs) + 1)):
        wrong.append("ticket numbers are not 1..n without a gap")
    if [row[0] for row in events] != list(range(1, len(events) + 1)):
        wrong.append("event numbers are not 1..n without a gap")
    if len(events) != 2 * len(seqs) or jobs != len(seqs):
        wrong.append(f"{len(seqs)} tickets, {jobs} print jobs, {len(events)} events")
    return wrong


def pgbench(url: URL, run: Run, seconds: int) -> Measured:
    busy = procs.machine_busy_seconds()
    done = subprocess.run(
        ["pgbench", "-n", "-M", "prepared", "-h", url.host or "127.0.0.1",
         "-p", str(url.port or 5432), "-U", url.username or "postgres",
         "-c", str(run.clients), "-j", str(min(run.clients, 2)), "-T", str(seconds),
         "-f", str(run.script), str(url.database)],
        capture_output=True, text=True, check=False,
        env={**os.environ, "PGPASSWORD": url.password or ""},
    )  # fmt: skip
    cpu = procs.machine_busy_seconds() - busy
    processed = re.search(r"actually processed: (\d+)", done.stdout)
    latency = re.search(r"latency average = ([\d.]+) ms", done.stdout)
    if done.returncode != 0 or not processed or not latency or int(processed.group(1)) == 0:
        raise RuntimeError(f"pgbench failed on {run.name}:\n{done.stdout}\n{done.stderr}")
    tickets = int(processed.group(1)) * run.per_statement
    return Measured(run, tickets / seconds, float(latency.group(1)), 1000 * cpu / tickets)


def table(measured: list[Measured]) -> str:
    rows = [
        (m.run.name, str(m.run.clients), str(m.run.per_statement), f"{m.tickets_per_s:,.0f}",
         f"{m.latency_ms:.2f}", f"{m.cpu_ms:.3f}")
        for m in measured
    ]  # fmt: skip
    header = ("statement", "clients", "tickets each", "tickets/s", "latency ms",
              "machine CPU ms a ticket")  # fmt: skip
    return format_columns(header, rows, {"statement"})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.issuing_sql", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_SECONDS} s a row (CI)")
    parser.add_argument("--seconds", type=int, help=f"seconds a row (default {FULL_SECONDS})")
    args = parser.parse_args(argv)
    seconds = args.seconds or (SMOKE_SECONDS if args.smoke else FULL_SECONDS)
    if shutil.which("pgbench") is None:
        print("bench.issuing_sql: pgbench not found (Debian: the postgresql-NN package); skipped")
        return 0
    url = postgres.bench_url()
    code = postgres.skipped("bench.issuing_sql", url)
    if code is not None:
        return code
    postgres.recreate_database(url)
    values = asyncio.run(issue_values(postgres.server_url(url)))
    with tempfile.TemporaryDirectory(prefix="onedoor-issuing-sql-") as folder:
        scripts = Path(folder)
        (scripts / "one.sql").write_text(single_script(values))
        for count in (4, 8):
            (scripts / f"many{count}.sql").write_text(many_script(values, count))
        (scripts / "ceiling.sql").write_text(str(INSERT).replace(":service_id", "1") + ";\n")
        runs = [
            Run("one ticket (PG_ENQUEUE_IF_FACTS)", clients, 1, scripts / "one.sql")
            for clients in (1, 2, 8)
        ]
        runs += [
            Run(f"{count} together (PG_ENQUEUE_MANY)", 2, count, scripts / f"many{count}.sql")
            for count in (4, 8)
        ]
        runs.append(Run(f"ceiling ({TABLE} insert)", 8, 1, scripts / "ceiling.sql"))
        measured = [pgbench(url, run, seconds) for run in runs]
    wrong = asyncio.run(gapless(postgres.server_url(url)))
    print(f"bench.issuing_sql: pgbench, {seconds} s a row, one hall, PostgreSQL alone")
    print(table(measured))
    return verdict(wrong)


if __name__ == "__main__":
    sys.exit(main())
