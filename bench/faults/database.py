"""PostgreSQL crashes (``pg_ctl stop -m immediate``: no checkpoint, WAL recovery at the
start) while kiosks issue and clerks call, stays down a few seconds, and starts again.

Promised: while it is down every request is answered at once with 503 and a Retry-After
(no hang, no 500); the service answers again within 5 s of the database accepting
connections; nothing half-written (every ticket has its number and its event, every call
answered is recorded, none doubled).
"""

from __future__ import annotations

import asyncio
import time

from tests.servers import PrivateRedis

from ..hall import build_hall
from ..server import ADMIN_PASSWORD, ADMIN_USERNAME
from .common import Context, Row, database_of, judge_load, onedoor, start_load
from .redis_restart import open_boards, truth, until

NAME = "postgres-restart"
DOWN_S = 3.0
GOAL_S = 5.0


async def _run(ctx: Context) -> Row:
    row = Row("PostgreSQL crash and restart", goal_s=GOAL_S)
    url = await ctx.pg.create_database("faults_database")
    rounds = 1 if ctx.short else 3
    recoveries: list[float] = []
    workers = 2
    with PrivateRedis().started() as redis, onedoor(ctx, NAME, url, workers, redis.url) as server:
        hall = await build_hall(server.base_url, ADMIN_USERNAME, ADMIN_PASSWORD, 4)
        # Boards following the hall on both processes: each process's watcher and hub
        # meet the outage too.
        boards, stop_boards, followers = await open_boards(server.base_url, hall.hall_id)
        load = await start_load(server.base_url, hall, kiosks=8, bookers=4)
        try:
            await load.answers(100)
            for _ in range(rounds):
                ctx.pg.stop("immediate")
                down_at = time.monotonic()
                ctx.say("PostgreSQL stopped (immediate)")
                await asyncio.sleep(DOWN_S)  # the outage itself lasts this long
                answered_while_down = load.tally.first_ok_after(down_at + 0.5)
                if answered_while_down is not None and answered_while_down < DOWN_S - 0.5:
                    row.problems.append("a request was answered 2xx while the database was down")
                await asyncio.to_thread(ctx.pg.start)
                up_at = time.monotonic()
                await load.answers(1, within_s=60)
                recovery = load.tally.first_ok_after(up_at)
                recoveries.append(recovery if recovery is not None else float("inf"))
                ctx.say(f"PostgreSQL back; first answer {recoveries[-1]:.2f} s later")
                await load.answers(100)
        finally:
            tally = await load.finish()
        db = database_of(url)
        seq, _, _ = await asyncio.to_thread(truth, db, hall.hall_id)
        caught_up = await until(lambda: all(b.seq >= seq for b in boards), 15)
        stop_boards.set()
        await asyncio.gather(*followers)
    if caught_up is None:
        row.problems.append(f"boards not at the database's seq {seq} 15 s after the load: "
                            f"{[b.seq for b in boards]}")  # fmt: skip
    else:
        row.checks.append(f"{len(boards)} boards followed the hall through it and caught up")
    await asyncio.to_thread(judge_load, row, db, hall.hall_id, load)
    row.recovery_s = max(recoveries) if recoveries else None
    row.checks.append(
        f"{rounds} crash(es) of {DOWN_S:.0f} s: {tally.statuses[503]} answers 503 with "
        f"Retry-After, {tally.dropped} connections cut, slowest of those "
        f"{tally.slowest_refusal_s:.2f} s; no 500, no hang"
    )
    if tally.slowest_refusal_s > 5:
        row.problems.append(f"a refusal took {tally.slowest_refusal_s:.1f} s: not failing fast")
    # The relay (every 0.1-5 s) and the boards' watcher (every 0.5 s) retry while the
    # database is away: each worker tells each outage once (logs.Outage), not once a
    # retry, and its end when the work resumes (the relay's when it next publishes, which
    # the last crash's may not reach before the server stops).
    log = server.log_path.read_text()
    for loop, first, end in (
        ("the relay", "relay: could not publish", "relay: working again after"),
        ("the boards' watcher", "boards' watcher: could not read", "boards' watcher: working"),
    ):
        told, ended = log.count(first), log.count(end)
        if told > rounds * workers:
            row.problems.append(f"{loop} told {told} outages for {rounds} crash(es) of "
                                f"{workers} workers: more than one line an outage")  # fmt: skip
        else:
            row.checks.append(f"{loop} told {told} outages and {ended} ends: not a line a retry")
    return row


def run(ctx: Context) -> Row:
    return asyncio.run(_run(ctx))
