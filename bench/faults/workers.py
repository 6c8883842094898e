"""``kill -9`` of one of two workers while kiosks issue and clerks call.

The kernel sends new connections to the surviving worker's socket (each worker has its own
SO_REUSEPORT socket); requests in flight on the killed one are cut, and their kiosks ask
again with the same Idempotency-Key: whether the first try had committed or not, each key
must end with exactly one ticket. The server's parent starts a new worker.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

from tests.servers import PrivateRedis

from .. import procs
from ..hall import build_hall
from ..server import ADMIN_PASSWORD, ADMIN_USERNAME
from .common import Context, Row, database_of, judge_load, onedoor, start_load

NAME = "worker-kill"


def workers_of(pgid: int) -> list[int]:
    return [pid for pid in procs.group_pids(pgid) if procs.role(pid) == "worker"]


async def _run(ctx: Context) -> Row:
    row = Row("kill -9 one of two workers")
    url = await ctx.pg.create_database("faults_workers")
    rounds = 1 if ctx.short else 3
    with PrivateRedis().started() as redis, onedoor(ctx, NAME, url, 2, redis.url) as server:
        hall = await build_hall(server.base_url, ADMIN_USERNAME, ADMIN_PASSWORD, 4)
        load = await start_load(server.base_url, hall, kiosks=8, bookers=4)
        replaced: list[float] = []
        try:
            await load.answers(100)
            for _ in range(rounds):
                before = workers_of(server.pgid)
                victim = before[0]
                os.kill(victim, signal.SIGKILL)
                killed_at = time.monotonic()
                ctx.say(f"killed worker {victim} (of {before})")
                deadline = killed_at + 60
                while True:  # the parent notices and starts another
                    now = workers_of(server.pgid)
                    if len(now) == 2 and victim not in now:
                        replaced.append(time.monotonic() - killed_at)
                        break
                    if time.monotonic() > deadline:
                        row.problems.append(f"no new worker 60 s after the kill: {now}")
                        break
                    await asyncio.sleep(0.05)
                await load.answers(100)
                gap = load.tally.longest_gap(killed_at, time.monotonic())
                ctx.say(f"new worker after {replaced[-1] if replaced else float('nan'):.1f} s; "
                        f"longest pause in answers {gap:.2f} s")  # fmt: skip
        finally:
            tally = await load.finish()
    await asyncio.to_thread(judge_load, row, database_of(url), hall.hall_id, load)
    row.recovery_s = max(replaced) if replaced else None
    row.goal_s = 30.0
    row.checks.append(
        f"{rounds} kill(s); a new worker up within {row.recovery_s or 0:.1f} s; "
        f"{tally.dropped} requests cut by a kill, each asked again with its key"
    )
    return row


def run(ctx: Context) -> Row:
    return asyncio.run(_run(ctx))
