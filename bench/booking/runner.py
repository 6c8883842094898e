"""One run on a server: its settings, a fresh database and server, the rush from the
pinned load generator, then the database's facts and the notes."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor
from pathlib import Path

import asyncpg

from .. import load, postgres
from ..run import CpuPlan, log_notes, server_notes
from ..server import ServerError, ServerSpec, running_server
from .facts import DbFacts, db_facts
from .options import RESULTS, Sizes
from .plan import RushOutcome, RushPlan
from .report import outcome_notes
from .rush import run_rush

REDIS_URL_ENV = "ONEDOOR_BENCH_REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


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


def run_rush_on_server(
    spec: ServerSpec, sizes: Sizes, plan: CpuPlan, timezone: str, client: str = "raw"
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
                server.base_url, server.pgid, sizes, timezone,
                str(postgres.bench_url().database), client,
            )  # fmt: skip
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
