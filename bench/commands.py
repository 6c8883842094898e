"""CPU per command, in one process, on PostgreSQL: ``python -m bench.commands`` (``--smoke``
for CI).

The HTTP phases (``bench.run``) measure what a client sees, on a machine other work shares:
their figures move by a fifth from one run to the next with no change to the code. This
one takes HTTP, the second worker and the load generator away and counts only this
process's own CPU (``time.process_time``) over each phase, so that two checkouts can be
compared within minutes (``--against`` is not needed: run it in each). On a fresh bench
database, through the same ``Bus`` the API uses: one hall with three matters, 16 counters
each with its clerk signed in, and a kiosk; then

- **issue**: 16 kiosks at once issue ``--tickets`` tickets, each with its Idempotency-Key,
  each answered as the kiosk is (``kiosk_prints.new_ticket_answer``: number, people ahead,
  wait estimate);
- **call + no-show**: 16 counters at once call the next ticket and mark it a no-show, each
  command answered as the clerk is (``views.settled_ticket_view``), until half the queue
  was called;
- **ceiling**: 16 tasks at once run a bare ``INSERT … RETURNING`` in a transaction of its
  own through the same engine (the statement ``bench.ceiling`` serves over HTTP), the CPU
  the stack itself costs a round trip.

Each row: the commands run, this process's CPU per command, and that over the ceiling's
CPU per statement (a ratio holds on a shared machine where a time does not); then the
database is checked (numbers gapless, each ticket called once, one event per change).
Exits 1 if a check fails; skips (exit 0, with a message) when PostgreSQL is unreachable,
unless ONEDOOR_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, text

from queue_server.clock import SystemClock
from queue_server.db.engine import create_engine, session_factory
from queue_server.db.migrate import upgrade_async
from queue_server.db.tables import HallEventRow, TicketRow
from queue_server.service import accounts, commands, hall_config, kiosk_prints, queue, views
from queue_server.service.bus import Bus
from queue_server.service.unit_of_work import UnitOfWork

from . import postgres
from .hall import ALL_DAY, CLERK_PASSWORD, MATTERS, midday_zone
from .report import format_columns, verdict
from .stats import check_numbers

CONCURRENT = 16
FULL_TICKETS = 4000
SMOKE_TICKETS = 320
CEILING_TABLE = "bench_command_ceiling"


@dataclass(frozen=True)
class Phase:
    name: str
    runs: int
    cpu_s: float
    wall_s: float

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu_s / self.runs

    @property
    def rate(self) -> float:
        return self.runs / self.wall_s


async def timed(name: str, workers: Sequence[Callable[[], Awaitable[int]]]) -> Phase:
    """Run ``workers`` at once; each returns how many commands it ran."""
    cpu, wall = time.process_time(), time.perf_counter()
    runs = sum(await asyncio.gather(*(work() for work in workers)))
    return Phase(name, runs, time.process_time() - cpu, time.perf_counter() - wall)


@dataclass(frozen=True)
class Hall:
    hall_id: int
    service_ids: list[int]
    kiosk_id: int
    desks: list[tuple[int, int]]


async def set_up(bus: Bus) -> Hall:
    hall = await bus.run(
        hall_config.create_hall,
        # About noon in its zone: no day close or new business day within the run.
        {"name_zh": "基准大厅", "name_en": "Bench hall", "timezone": midday_zone(),
         "opening_hours": ALL_DAY, "priority_boosts": {"elderly": 15}},
    )  # fmt: skip
    service_ids = []
    for name_zh, name_en, prefix, minutes in MATTERS:
        service = await bus.run(
            hall_config.create_service,
            hall.id,
            {"name_zh": name_zh, "name_en": name_en, "prefix": prefix, "typical_minutes": minutes},
        )
        service_ids.append(service.id)
    kiosk = await bus.run(accounts.create_device, hall.id, accounts.DeviceKind.KIOSK, "kiosk")
    desks = []
    for index in range(CONCURRENT):
        profile = [
            (sid, "primary" if n == index % len(service_ids) else "secondary")
            for n, sid in enumerate(service_ids)
        ]
        counter = await bus.run(
            hall_config.create_counter, hall.id, index + 1, f"c{index + 1}", profile
        )
        clerk = await bus.run(
            accounts.create_user, f"clerk{index + 1}", CLERK_PASSWORD,
            accounts.Role.CLERK, hall.id,
        )  # fmt: skip
        await bus.execute(commands.OpenCounter(counter.id, clerk.id))
        desks.append((counter.id, clerk.id))
    return Hall(hall.id, service_ids, kiosk.id, desks)


async def run_phases(
    bus: Bus, hall: Hall, tickets: int
) -> tuple[list[Phase], list[int], list[int]]:
    """The issue and call phases; the tickets issued and those called."""
    issued: list[int] = []

    def kiosk(index: int) -> Callable[[], Awaitable[int]]:
        async def work() -> int:
            mine = range(index, tickets, CONCURRENT)
            for n in mine:
                new = await bus.run(
                    queue.issue_new,
                    commands.IssueTicket(
                        hall_id=hall.hall_id,
                        service_id=hall.service_ids[n % len(hall.service_ids)],
                        actor=commands.Actor(device_id=hall.kiosk_id),
                        idempotency_key=f"bench-{n}",
                    ),
                )
                await bus.read(kiosk_prints.new_ticket_answer, new)
                issued.append(new.ticket_id)
            return len(mine)

        return work

    issue = await timed("issue (+ its answer)", [kiosk(i) for i in range(CONCURRENT)])
    called: list[int] = []

    def counter(counter_id: int, clerk_id: int) -> Callable[[], Awaitable[int]]:
        async def work() -> int:
            ran = 0
            for _ in range(tickets // 2 // CONCURRENT):
                result, _view = await bus.execute_answered(
                    commands.CallNext(counter_id, clerk_id), views.settled_ticket_view
                )
                if result.ticket_id is None:
                    break
                called.append(result.ticket_id)
                await bus.execute_answered(
                    commands.MarkNoShow(counter_id, clerk_id), views.settled_ticket_view
                )
                ran += 2
            return ran

        return work

    call = await timed("call-next or no-show", [counter(c, k) for c, k in hall.desks])
    return [issue, call], issued, called


async def ceiling(bus: Bus, statements: int) -> Phase:
    engine = bus.sessions.kw["bind"]
    async with engine.begin() as connection:
        await connection.execute(
            text(f"CREATE TABLE IF NOT EXISTS {CEILING_TABLE} (id bigserial PRIMARY KEY, v bigint)")
        )
    insert = text(f"INSERT INTO {CEILING_TABLE} (v) VALUES (:v) RETURNING id")

    def task(index: int) -> Callable[[], Awaitable[int]]:
        async def work() -> int:
            mine = range(index, statements, CONCURRENT)
            for n in mine:
                async with engine.begin() as connection:
                    await connection.execute(insert, {"v": n})
            return len(mine)

        return work

    return await timed("ceiling: INSERT … RETURNING", [task(i) for i in range(CONCURRENT)])


async def check(bus: Bus, hall: Hall, issued: list[int], called: list[int]) -> list[str]:
    """What is wrong in the database after the phases (nothing: an empty list)."""

    async def read(uow: UnitOfWork) -> tuple[list[str], dict[str, int], dict[str, int]]:
        numbers = await uow.session.scalars(
            select(TicketRow.number).where(TicketRow.hall_id == hall.hall_id)
        )
        states = await uow.session.execute(
            select(TicketRow.state, func.count())
            .where(TicketRow.hall_id == hall.hall_id)
            .group_by(TicketRow.state)
        )
        events = await uow.session.execute(
            select(HallEventRow.name, func.count())
            .where(HallEventRow.hall_id == hall.hall_id)
            .group_by(HallEventRow.name)
        )
        return list(numbers), dict(states.all()), dict(events.all())

    numbers, states, events = await bus.run(read)
    wrong = []
    verdict = check_numbers(numbers)
    if not verdict.ok:
        wrong.append(f"numbers: {verdict}")
    if len(numbers) != len(issued) or len(set(issued)) != len(issued):
        wrong.append(f"{len(issued)} issues answered, {len(numbers)} tickets in the database")
    if len(set(called)) != len(called):
        wrong.append(f"{len(called) - len(set(called))} tickets called twice")
    expected = {
        "TicketIssued": len(issued),
        "TicketCalled": len(called),
        "TicketMarkedNoShow": len(called),
    }
    for name, count in expected.items():
        if events.get(name, 0) != count:
            wrong.append(f"{events.get(name, 0)} {name} events, {count} expected")
    if states.get("no_show", 0) != len(called):
        wrong.append(f"{states.get('no_show', 0)} no-shows, {len(called)} expected")
    return wrong


async def measure(url: str, tickets: int) -> tuple[list[Phase], list[str]]:
    await upgrade_async(url)
    engine = create_engine(url, pool_size=CONCURRENT)
    try:
        bus = Bus(session_factory(engine), SystemClock())
        hall = await set_up(bus)
        phases, issued, called = await run_phases(bus, hall, tickets)
        phases.append(await ceiling(bus, tickets))
        wrong = await check(bus, hall, issued, called)
    finally:
        await engine.dispose()
    return phases, wrong


def table(phases: list[Phase]) -> str:
    ceiling_ms = phases[-1].cpu_ms
    rows = [
        (p.name, str(p.runs), f"{p.cpu_ms:.3f}", f"{p.cpu_ms / ceiling_ms:.1f}", f"{p.rate:.0f}")
        for p in phases
    ]
    header = ("phase", "commands", "CPU ms each", "× ceiling", "per s (wall)")
    return format_columns(header, rows, {"phase"})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.commands", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_TICKETS} tickets (CI)")
    parser.add_argument("--tickets", type=int, help=f"tickets issued (default {FULL_TICKETS})")
    args = parser.parse_args(argv)
    tickets = args.tickets or (SMOKE_TICKETS if args.smoke else FULL_TICKETS)
    url = postgres.bench_url()
    code = postgres.skipped("bench.commands", url)
    if code is not None:
        return code
    postgres.recreate_database(url)
    phases, wrong = asyncio.run(measure(postgres.server_url(url), tickets))
    print(
        f"bench.commands: {CONCURRENT} at once, one process, PostgreSQL; "
        "CPU is this process's only (the database's is not counted)"
    )
    print(table(phases))
    return verdict(wrong)


if __name__ == "__main__":
    sys.exit(main())
