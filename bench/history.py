"""The managers' views at scale: ``python -m bench.history``.

Fills a PostgreSQL database with ``onedoor demo --history DAYS --halls N`` (a year of 20
halls, about five million tickets, unless told otherwise; built once and kept while it
matches), serves it with ``onedoor serve``, then asks hall 1's views over HTTP as a
manager's browser would — statistics by each grouping, the outcome report, the desk's
cases, and the downloads — for the last 30 days and for the whole year. Each view is asked
``--repeat`` times; the table gives the median and the slowest answer, the goal (≤ 1 s),
and, as the ceiling measured in the same run, the time PostgreSQL takes only to count the
hall's tickets of that range (what any view of it must at least read): the ratio holds on a
noisy machine where absolute times do not.

``--smoke`` (CI): two halls, 21 days, one request each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import httpx

from . import postgres
from .run import REQUIRE_SERVICES_ENV, cpu_plan
from .server import ADMIN_PASSWORD, ADMIN_USERNAME, ONEDOOR, ServerSpec, running_server

RESULTS = Path(__file__).parent / "results"
REPORT = RESULTS / "history.txt"
DATABASE = "onedoor_history_bench"
GOAL_MS = 1000.0
TIMEZONE = "Asia/Shanghai"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--halls", type=int, default=20)
    parser.add_argument("--per-day", type=int, default=840, help="visitors on a usual weekday")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rebuild", action="store_true", help="build the history again")
    parser.add_argument("--smoke", action="store_true", help="2 halls, 21 days, 1 request each")
    args = parser.parse_args(argv)
    if args.smoke:
        args.days, args.halls, args.repeat, args.per_day = 21, 2, 1, 300
    return args


def _url() -> str:
    base = postgres.bench_url()
    return postgres.server_url(base.set(database=DATABASE))


async def _facts(url: str) -> tuple[int, int, date | None]:
    """Halls, tickets and the last history day the database holds now (0, 0, None if it
    has no schema yet)."""
    dsn = url.replace("postgresql+asyncpg", "postgresql")
    try:
        connection = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        return 0, 0, None
    try:
        if not await connection.fetchval("SELECT to_regclass('tickets') IS NOT NULL"):
            return 0, 0, None
        halls = await connection.fetchval("SELECT count(*) FROM halls")
        tickets = await connection.fetchval("SELECT count(*) FROM tickets")
        last = await connection.fetchval("SELECT max(business_day) FROM tickets")
        return int(halls), int(tickets), last
    finally:
        await connection.close()


async def _recreate(url: str) -> None:
    dsn = url.replace("postgresql+asyncpg", "postgresql").rsplit("/", 1)[0] + "/postgres"
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        await connection.execute(f"CREATE DATABASE {DATABASE}")
    finally:
        await connection.close()


def _build(url: str, args: argparse.Namespace, var_dir: Path) -> str:
    """Build the history (unless the database holds it already); what was done."""
    yesterday = datetime.now(UTC).astimezone(ZoneInfo(TIMEZONE)).date() - timedelta(days=1)
    halls, tickets, last = asyncio.run(_facts(url))
    if (
        not args.rebuild
        and halls == args.halls
        and last is not None
        and last >= yesterday - timedelta(days=7)
    ):
        return f"history kept: {halls} halls, {tickets:,} tickets, up to {last}"
    asyncio.run(_recreate(url))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEDOOR_")}
    env.update(
        ONEDOOR_DATABASE_URL=url, ONEDOOR_VAR_DIR=str(var_dir), ONEDOOR_SCHEDULER="0",
        ONEDOOR_DEFAULT_TIMEZONE=TIMEZONE,
    )  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(
        [*ONEDOOR, "demo", "--history", str(args.days), "--halls", str(args.halls),
         "--per-day", str(args.per_day), "--quiet"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"onedoor demo --history failed: {done.stderr[-1500:]}")
    summary = [line for line in done.stdout.splitlines() if line.startswith("history:")]
    took = time.monotonic() - started
    return f"{summary[-1] if summary else 'history built'} (built in {took:.0f} s)"


async def _ceiling_ms(url: str, start: date, end: date, repeat: int) -> float:
    dsn = url.replace("postgresql+asyncpg", "postgresql")
    connection = await asyncpg.connect(dsn)
    try:
        times = []
        for _ in range(max(repeat, 3)):
            began = time.perf_counter()
            await connection.fetchval(
                "SELECT count(*) FROM tickets WHERE hall_id = 1 AND business_day BETWEEN $1 AND $2",
                start, end,
            )  # fmt: skip
            times.append((time.perf_counter() - began) * 1000)
        return statistics.median(times)
    finally:
        await connection.close()


def _views(start: date, end: date) -> list[tuple[str, str]]:
    span = f"from={start}&to={end}"
    views = [(f"statistics by {by}", f"/api/halls/1/statistics?{span}&by={by}")
             for by in ("matter", "counter", "clerk", "channel", "hour", "day")]  # fmt: skip
    views += [
        ("outcomes and one-visit rate", f"/api/halls/1/reports/outcomes?{span}"),
        ("statistics CSV", f"/api/halls/1/statistics/export?{span}&format=csv"),
        ("statistics XLSX", f"/api/halls/1/statistics/export?{span}&format=xlsx&by=day"),
        ("outcomes XLSX", f"/api/halls/1/reports/outcomes/export?{span}&format=xlsx"),
    ]
    return views


def _measure(base: str, args: argparse.Namespace, url: str) -> tuple[list[str], bool]:
    today = datetime.now(UTC).astimezone(ZoneInfo(TIMEZONE)).date()
    end = today - timedelta(days=1)
    lines = [f"{'view':<34} {'range':>6} {'p50 ms':>8} {'max ms':>8} {'×ceiling':>9}  goal ≤ 1 s"]
    ok = True
    with httpx.Client(base_url=base, timeout=60) as http:
        login = http.post(
            "/api/auth/login", json={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD}
        )
        login.raise_for_status()
        for days in sorted({min(30, args.days), min(args.days, 365)}):
            label = "year" if days == 365 else f"{days} d"
            start = end - timedelta(days=days - 1)
            ceiling = asyncio.run(_ceiling_ms(url, start, end, args.repeat))
            name = "ceiling: count the range (SQL)"
            lines.append(f"{name:<34} {label:>6} {ceiling:8.1f} {'':>8} {1.0:9.1f}")
            for name, path in _views(start, end):
                times = []
                for _ in range(args.repeat):
                    began = time.perf_counter()
                    answer = http.get(path)
                    times.append((time.perf_counter() - began) * 1000)
                    if answer.status_code != 200:
                        raise RuntimeError(f"{path}: {answer.status_code} {answer.text[:300]}")
                p50, worst = statistics.median(times), max(times)
                met = p50 <= GOAL_MS
                ok = ok and met
                lines.append(
                    f"{name:<34} {label:>6} {p50:8.0f} {worst:8.0f} {p50 / ceiling:9.1f}  "
                    f"{'met' if met else 'NOT met'}"
                )
    return lines, ok


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    url = _url()
    unreachable = postgres.unreachable_reason(postgres.bench_url())
    if unreachable:
        required = os.environ.get(REQUIRE_SERVICES_ENV) == "1"
        print(f"history bench skipped: {unreachable}", flush=True)
        return 1 if required else 0
    var_dir = RESULTS / "history-var"
    var_dir.mkdir(parents=True, exist_ok=True)
    built = _build(url, args, var_dir)
    print(built, flush=True)
    # Hall 1 belongs to no manager here: the bench signs in as the admin it creates.
    asyncio.run(_drop_admin(url))
    spec = ServerSpec("history", url, workers=1, env=(("ONEDOOR_SCHEDULER", "0"),))
    plan = cpu_plan()
    with running_server(spec, var_dir, RESULTS / "history.server.log", plan.server) as server:
        lines, ok = _measure(server.base_url, args, url)
    header = [f"managers' views on PostgreSQL, hall 1 of {args.halls}: {built}", ""]
    text = "\n".join(
        header + lines + ["", "all views within the goal" if ok else "SOME VIEWS MISSED THE GOAL"]
    )
    print(text, flush=True)
    REPORT.write_text(text + "\n")
    return 0


async def _drop_admin(url: str) -> None:
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await connection.execute("DELETE FROM users WHERE username = $1", ADMIN_USERNAME)
    finally:
        await connection.close()


if __name__ == "__main__":
    sys.exit(main())
