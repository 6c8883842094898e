"""``python -m bench.faults`` (``make faults``): break things while a hall is busy and print
what the clients saw and what the database holds after, one row per scenario.

Each scenario starts its own processes (OneDoor servers, print agents, a fake network
printer, a private Redis) on a private PostgreSQL cluster it may crash and restart, runs
the load, causes its fault, and reads the database afterwards. The run fails (exit 1) when
any row lost or duplicated something, a client saw a broken answer, or recovery was slower
than promised. ``--short`` is CI's version: the same faults, less load and time.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from .common import Context, PrivatePostgres, Row
from .report import table

SCENARIOS = {
    "worker-kill": "workers",
    "postgres-restart": "database",
    "redis-restart": "redis_restart",
    "printer": "printers",
    "leader-kill": "leader",
    "soak": "soak",
}
"""Scenario → the module (of this package) whose ``run(ctx) -> Row`` plays it."""


def play(name: str, ctx: Context) -> Row:
    module = importlib.import_module(f"{__package__}.{SCENARIOS[name]}")
    row: Row = module.run(ctx)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__)
    parser.add_argument("--short", action="store_true", help="CI's short run of every scenario")
    parser.add_argument(
        "--only", default="", help=f"comma-separated scenarios (of {', '.join(SCENARIOS)})"
    )
    parser.add_argument(
        "--soak", type=float, default=None, metavar="MINUTES",
        help="the soak's length (default 30, --short 1)",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs) after")
    args = parser.parse_args(argv)
    chosen = [s for s in args.only.split(",") if s] or list(SCENARIOS)
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    soak_minutes = args.soak if args.soak is not None else (1.0 if args.short else 30.0)

    workdir = Path(tempfile.mkdtemp(prefix="onedoor-faults-"))
    print(f"fault suite: {', '.join(chosen)}; work dir {workdir}", flush=True)
    pg = PrivatePostgres(workdir / "pg")
    try:
        pg.init()
    except Exception as exc:  # say what is missing, then stop
        print(f"cannot start a private PostgreSQL: {exc}", file=sys.stderr)
        return 2
    ctx = Context(workdir, args.short, pg, frozenset(os.sched_getaffinity(0)), soak_minutes)
    rows: list[Row] = []
    started = time.monotonic()
    try:
        for name in chosen:
            print(f"\n{name}", flush=True)
            try:
                row = play(name, ctx)
            except Exception:  # a scenario that breaks is a failed row
                row = Row(name, problems=[traceback.format_exc(limit=6).strip()])
            rows.append(row)
            print(f"  → {'ok' if row.ok else 'FAILED'}", flush=True)
    finally:
        pg.stop("immediate")
        if args.keep or not all(r.ok for r in rows):
            print(f"\nlogs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(table(rows, args.short, time.monotonic() - started))
    return 0 if rows and all(r.ok for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
