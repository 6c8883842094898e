"""A long busy stretch (``--soak MINUTES``, default 30; 1 with ``--short``): kiosks, clerks
and boards on two workers with Redis, sampled every few seconds. Promised: memory flat (the
workers' resident size at the end within 15% + 8 MiB of what it was once warm), no growing
queue (the outbox of unpublished events drains, the waiting line does not pile up beyond
what the counters can call), and the same correctness as every other row.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from tests.servers import PrivateRedis

from .. import procs
from ..hall import build_hall
from ..server import ADMIN_PASSWORD, ADMIN_USERNAME
from .common import Context, Row, database_of, judge_queue, onedoor, start_load
from .redis_restart import open_boards, until
from .workers import workers_of

NAME = "soak"
GROWTH = 1.10
SLACK_MIB = 8.0


async def _run(ctx: Context) -> Row:
    minutes = ctx.soak_minutes
    row = Row(f"soak, {minutes:g} min busy")
    url = await ctx.pg.create_database("faults_soak")
    db = database_of(url)
    every = 5.0 if minutes <= 2 else 15.0
    redis = PrivateRedis().start()
    samples: list[tuple[float, float, int, int]] = []  # (t, RSS MiB of workers, backlog, waiting)
    try:
        with onedoor(ctx, NAME, url, workers=2, redis_url=redis.url) as server:
            hall = await build_hall(server.base_url, ADMIN_USERNAME, ADMIN_PASSWORD, 4)
            boards, stop_boards, followers = await open_boards(server.base_url, hall.hall_id)
            load = await start_load(server.base_url, hall, kiosks=4, kiosk_pause_s=0.1)
            start = time.monotonic()
            try:
                while time.monotonic() - start < minutes * 60:
                    await asyncio.sleep(every)
                    rss = sum(procs.rss_mib(p) or 0.0 for p in workers_of(server.pgid))
                    ((backlog,),) = await asyncio.to_thread(
                        db.rows, "SELECT count(*) FROM hall_events WHERE published_at IS NULL"
                    )
                    ((waiting,),) = await asyncio.to_thread(
                        db.rows, "SELECT count(*) FROM tickets WHERE state = 'waiting'"
                    )
                    samples.append((time.monotonic() - start, rss, int(backlog), int(waiting)))
                    ctx.say(f"{samples[-1][0]:5.0f} s: workers {rss:.0f} MiB, "
                            f"unpublished {backlog}, waiting {waiting}, "
                            f"{len(load.tally.ok_at)} answers")  # fmt: skip
            finally:
                tally = await load.finish()
            drained = await until(
                lambda: (
                    db.rows("SELECT count(*) FROM hall_events WHERE published_at IS NULL") == [(0,)]
                ),
                30,
            )
            stop_boards.set()
            await asyncio.gather(*followers)
    finally:
        redis.stop()
    await asyncio.to_thread(judge_queue, row, db, hall.hall_id, tally)
    if len(samples) < 4:
        row.problems.append(f"only {len(samples)} samples: run longer")
        return row
    quarter = max(1, len(samples) // 4)
    warm = statistics.median(s[1] for s in samples[quarter : 2 * quarter])
    end = statistics.median(s[1] for s in samples[-quarter:])
    if end > warm * GROWTH + SLACK_MIB:
        row.problems.append(f"memory grew: {warm:.0f} MiB once warm, {end:.0f} MiB at the end")
    backlog_max = max(s[2] for s in samples)
    waiting_end = statistics.median(s[3] for s in samples[-quarter:])
    waiting_warm = statistics.median(s[3] for s in samples[quarter : 2 * quarter])
    if drained is None:
        row.problems.append("unpublished events left 30 s after the load")
    if waiting_end > max(50, 2 * waiting_warm):
        row.problems.append(f"the waiting line grew: {waiting_warm:.0f} → {waiting_end:.0f}")
    jumps = [j for b in boards for j in b.jumps]
    row.lost += len(jumps)
    if jumps:
        row.problems.append(f"boards skipped events: {jumps[:5]}")
    row.checks.append(
        f"{len(samples)} samples: workers {warm:.0f} MiB warm → {end:.0f} MiB at the end "
        f"({(end - warm) / max(samples[-1][0] / 60, 1):+.2f} MiB/min); "
        f"unpublished events at most {backlog_max}, none left; waiting {waiting_warm:.0f} → "
        f"{waiting_end:.0f}; {sum(b.events for b in boards)} board events, no jump"
    )
    return row


def run(ctx: Context) -> Row:
    return asyncio.run(_run(ctx))
