"""``onedoor demo --history DAYS --halls N``: halls like the demo's with DAYS of past days,
for trying the statistics and reports and for measuring them at scale.

Each hall works weekdays 08:30–12:00 and 13:30–17:00 (Saturdays a morning): about
``per_day`` visitors on an ordinary weekday (Mondays busier, Fridays and Saturdays
lighter), arriving in the hall's usual morning and afternoon peaks; each takes a matter in
the demo's shares; one in eight checked in from a booking, a few issued by staff for the
visitor. Waits grow with how busy the hour is; services last about the matter's typical
minutes (lognormal). Most finish done; the others with the outcomes a hall sees (missing
documents naming which, another department, a system problem, the visitor left, …); a
visitor known by phone or ID who was turned away often comes back within days for the same
matter — so repeat visits and the one-visit rate are there to find. Some visits go on to
the desk, which opens a case and closes it. A quarter of the services are rated.

Rows are written in bulk (one statement per table and hall-day), numbered like the live
system's (prefix and sequence per hall, matter prefix and day). Nothing else is touched:
the history is what the reports read.
"""

from __future__ import annotations

import json
import math
import random
import secrets
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import JSON, Table, func, insert, select, text

from queue_server.db.tables import (
    DeskCaseRow,
    HallRow,
    RatingRow,
    TicketRow,
    UserRow,
    VisitRow,
)
from queue_server.domain.model import format_number

from . import demo
from .service.bus import Bus
from .service.unit_of_work import UnitOfWork
from .service.visitors import visitor_hash

# A weekday's arrivals by hour (hall time): the morning peak, lunch, the afternoon.
HOURS = {8: 0.6, 9: 1.4, 10: 1.5, 11: 1.0, 13: 0.5, 14: 1.2, 15: 1.1, 16: 0.7}
WEEKDAY = {0: 1.25, 1: 1.05, 2: 1.0, 3: 1.0, 4: 0.85, 5: 0.45, 6: 0.0}
# The demo's matters by index (demo.MATTERS) and how often visitors come for each.
SHARES = {0: 0.28, 1: 0.2, 2: 0.12, 3: 0.14, 4: 0.16, 5: 0.1}
OUTCOMES = [
    ("done", 0.86), ("missing_documents", 0.06), ("other_department", 0.025),
    ("system_problem", 0.015), ("visitor_left", 0.015), ("needs_escalation", 0.01),
    ("other", 0.015),
]  # fmt: skip
STARS = [(5, 0.62), (4, 0.22), (3, 0.09), (2, 0.04), (1, 0.03)]
CLERKS_PER_HALL = 8
NO_PASSWORD = "!"  # noqa: S105 - the opposite: no password matches it
"""Not an argon2 hash: no password signs in as a past clerk of the history."""


def _pick(rng: random.Random, weighted: list[tuple[Any, float]]) -> Any:
    return rng.choices([w for w, _ in weighted], [p for _, p in weighted])[0]


@dataclass
class _Hall:
    layout: demo.Layout
    tz: ZoneInfo
    salt: str
    clerks: list[int]
    by_matter: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    """matter id → (counter id, clerk index) of the counters serving it at primary level."""
    returning: dict[date, list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))
    """Visitors turned away, by the day they come back: (their key, matter index)."""


@dataclass
class _Ids:
    visit: int
    ticket: int


@dataclass
class Generated:
    halls: int = 0
    days: int = 0
    tickets: int = 0
    visits: int = 0
    cases: int = 0
    ratings: int = 0


async def _max_id(uow: UnitOfWork, column: Any) -> int:
    return int(await uow.session.scalar(select(func.coalesce(func.max(column), 0))) or 0)


async def _clerks(bus: Bus, hall_id: int) -> list[int]:
    """The hall's past clerks (accounts without a usable password: they cannot sign in)."""

    async def make(uow: UnitOfWork) -> list[int]:
        now = uow.clock.now()
        ids = []
        for n in range(1, CLERKS_PER_HALL + 1):
            row = UserRow(
                username=f"history-{hall_id}-{n}", display_name=f"窗口人员 Clerk {hall_id}-{n}",
                password_hash=NO_PASSWORD, role="clerk", hall_id=hall_id, active=True,
                created_at=now,
            )  # fmt: skip
            uow.session.add(row)
            await uow.session.flush()
            ids.append(row.id)
        await uow.commit()
        return ids

    return await bus.run(make)


async def _halls(bus: Bus, count: int, timezone: str, given: list[demo.Layout]) -> list[_Hall]:
    async def existing(uow: UnitOfWork) -> int:
        return int(await uow.session.scalar(select(func.count()).select_from(HallRow)) or 0)

    have = await bus.run(existing)
    layouts = list(given[:count])
    for n in range(have + 1, have + 1 + count - len(layouts)):
        name_zh, name_en = f"示范政务服务中心 {n}", f"Demo Service Centre {n}"
        layouts.append(await demo.create_layout(bus, timezone, name_zh, name_en))
    made = []
    for layout in layouts:

        async def salt(uow: UnitOfWork, hall_id: int = layout.hall_id) -> str:
            return str(await uow.session.scalar(
                select(HallRow.visitor_salt).where(HallRow.id == hall_id)
            ))  # fmt: skip

        hall = _Hall(
            layout, ZoneInfo(timezone), await bus.run(salt), await _clerks(bus, layout.hall_id)
        )
        for counter_index, counter in enumerate(layout.counters):
            for entry in counter.profile:
                if entry.level == "primary":
                    hall.by_matter.setdefault(entry.service_id, []).append(
                        (counter.id, counter_index % len(hall.clerks))
                    )
        made.append(hall)
    return made


def _day_rows(
    hall: _Hall, day: date, rng: random.Random, ids: _Ids, per_day: int
) -> dict[str, list[dict[str, Any]]]:
    """One hall-day's visits, tickets, ratings and desk cases, as rows."""
    rows: dict[str, list[dict[str, Any]]] = {
        "visits": [],
        "tickets": [],
        "ratings": [],
        "cases": [],
    }
    factor = WEEKDAY[day.weekday()]
    if factor == 0:
        hall.returning.pop(day, None)
        return rows
    services = hall.layout.services
    desk = services[demo.DESK]
    seqs: dict[str, int] = defaultdict(int)
    hours = {h: w for h, w in HOURS.items() if day.weekday() < 5 or h < 12}
    total_weight = sum(HOURS.values())
    expected = per_day * factor * sum(hours.values()) / total_weight
    arrivals: list[tuple[datetime, int, str | None, bool]] = []
    for hour, weight in hours.items():
        n = _poisson(rng, expected * weight / sum(hours.values()))
        start = 30 if hour == 8 else 0
        for _ in range(n):
            at = datetime.combine(
                day, time(hour, rng.randrange(start, 60), rng.randrange(60)), hall.tz
            )
            matter = _pick(rng, list(SHARES.items()))
            known = rng.random() < 0.45
            who = f"phone:1{rng.randrange(30, 99)}{rng.randrange(10**8):08d}" if known else None
            arrivals.append((at, matter, who, False))
    for who, matter in hall.returning.pop(day, []):  # visitors back after a matter not done
        hour = _pick(rng, list(hours.items()))
        at = datetime.combine(day, time(hour, rng.randrange(60), rng.randrange(60)), hall.tz)
        arrivals.append((at, matter, who, True))
    arrivals.sort(key=lambda a: a[0])
    for at, matter_index, who, back in arrivals:
        service = services[matter_index]
        utc = at.astimezone(UTC)
        load = HOURS.get(at.hour, 1.0)
        wait = rng.gammavariate(2.0, (3 + 9 * load) / 2.0)
        typical = service.typical_minutes
        duration = max(1.0, rng.lognormvariate(math.log(typical) - 0.125, 0.5))
        counter_id, clerk_index = rng.choice(hall.by_matter[service.id])
        clerk = hall.clerks[clerk_index]
        ids.visit += 1
        ids.ticket += 1
        visit_id, ticket_id = ids.visit, ids.ticket
        rows["visits"].append({
            "id": visit_id, "hall_id": hall.layout.hall_id, "business_day": day,
            "follow_token": secrets.token_urlsafe(18), "created_at": utc,
            "visitor_hash": visitor_hash(hall.salt, who) if who else None,
        })  # fmt: skip
        seqs[service.prefix] += 1
        booked = rng.random() < 0.12
        kind = "appointment" if booked else "walk_in"
        by_staff = None if booked or rng.random() > 0.03 else clerk
        fate = rng.random()
        called = utc + timedelta(minutes=wait)
        ticket = {
            "id": ticket_id, "hall_id": hall.layout.hall_id, "visit_id": visit_id,
            "service_id": service.id, "number": format_number(service.prefix, seqs[service.prefix]),
            "prefix": service.prefix, "seq": seqs[service.prefix], "business_day": day,
            "kind": kind, "priority": "elderly" if rng.random() < 0.08 else "none",
            "issued_at": utc, "queued_at": utc, "due_at": utc if booked else None,
            "counter_id": counter_id, "clerk_id": clerk, "called_at": called, "call_count": 1,
            "started_at": None, "finished_at": None, "outcome": None, "note": None,
            "missing_documents": None, "origin_ticket_id": None,
            "issued_by_device_id": None, "issued_by_user_id": by_staff,
        }  # fmt: skip
        rows["tickets"].append(ticket)
        if fate < 0.01:  # gave up before the call
            ticket.update(state="cancelled", counter_id=None, clerk_id=None, called_at=None,
                          call_count=0, finished_at=utc + timedelta(minutes=wait / 2))  # fmt: skip
            continue
        if fate < 0.04:
            ticket.update(state="no_show", finished_at=called + timedelta(minutes=3))
            continue
        started = called + timedelta(minutes=rng.uniform(0.3, 2))
        outcome = "done" if back and rng.random() < 0.8 else _pick(rng, OUTCOMES)
        ticket.update(
            state="done", started_at=started, finished_at=started + timedelta(minutes=duration),
            outcome=outcome,
        )  # fmt: skip
        if outcome == "missing_documents":
            docs = service.documents
            ticket["missing_documents"] = [rng.choice(docs)] if docs else None
            if not docs:
                ticket["note"] = "材料不全 documents missing"
        elif outcome == "other":
            ticket["note"] = "其他 see the visitor's file"
        if outcome != "done" and who and rng.random() < 0.7:
            back_on = day + timedelta(days=rng.randint(1, 10))
            hall.returning[back_on].append((who, matter_index))
        if outcome == "done" and rng.random() < 0.25:
            rows["ratings"].append({
                "hall_id": hall.layout.hall_id, "ticket_id": ticket_id,
                "stars": _pick(rng, STARS), "comment": "",
                "created_at": started + timedelta(minutes=duration + 2),
            })  # fmt: skip
        if outcome in ("needs_escalation", "system_problem") and rng.random() < 0.5:
            ids.ticket += 1
            desk_counter, desk_clerk = rng.choice(hall.by_matter[desk.id])
            queued: datetime = started + timedelta(minutes=duration)
            desk_start = queued + timedelta(minutes=rng.uniform(1, 15))
            rows["tickets"].append({
                **ticket, "id": ids.ticket, "service_id": desk.id, "seq": None,
                "kind": "escalation", "issued_at": queued, "queued_at": queued, "due_at": None,
                "counter_id": desk_counter, "clerk_id": hall.clerks[desk_clerk],
                "called_at": desk_start, "started_at": desk_start,
                "finished_at": desk_start + timedelta(minutes=rng.uniform(5, 25)),
                "outcome": "done", "note": None, "missing_documents": None,
                "origin_ticket_id": ticket_id, "issued_by_user_id": clerk,
            })  # fmt: skip
            resolved = rng.random() < 0.7
            closed = desk_start + timedelta(days=rng.randint(1, 5))
            rows["cases"].append({
                "hall_id": hall.layout.hall_id, "visit_id": visit_id, "ticket_id": ids.ticket,
                "origin_ticket_id": ticket_id, "service_id": service.id, "status": "closed",
                "summary": "历史诉求 a past case", "owner_id": hall.clerks[desk_clerk],
                "opened_by": hall.clerks[desk_clerk], "opened_at": desk_start,
                "promised_on": day + timedelta(days=5), "answer": "已答复 answered",
                "answered_at": closed, "resolution": "resolved" if resolved else "unresolved",
                "closed_at": closed, "overdue_since": None,
            })  # fmt: skip
    return rows


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson count (normal approximation for large means)."""
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


TABLES = {"visits": VisitRow, "tickets": TicketRow, "ratings": RatingRow, "cases": DeskCaseRow}


async def generate(
    bus: Bus,
    days: int,
    halls: int,
    *,
    per_day: int = 700,
    timezone: str = "Asia/Shanghai",
    seed: int = 20261204,
    fill: list[demo.Layout] | None = None,
    progress: Callable[[int], None] = lambda n: None,
) -> Generated:
    """``halls`` halls with ``days`` past days each (ending yesterday, hall time): those of
    ``fill`` (made like the demo's, without history yet), then new ones; ``progress`` is
    told the hall-days done."""
    rng = random.Random(seed)  # noqa: S311 - made-up history, reproducible by seed
    made = await _halls(bus, halls, timezone, fill or [])

    async def start(uow: UnitOfWork) -> _Ids:
        return _Ids(await _max_id(uow, VisitRow.id), await _max_id(uow, TicketRow.id))

    ids = await bus.run(start)
    today = bus.clock.now().astimezone(ZoneInfo(timezone)).date()
    out = Generated(halls=len(made), days=days)
    for offset in range(days, 0, -1):
        day = today - timedelta(days=offset)
        batch: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for hall in made:
            for name, rows in _day_rows(hall, day, rng, ids, per_day).items():
                batch[name].extend(rows)
        await bus.run(_write, batch)
        out.visits += len(batch["visits"])
        out.tickets += len(batch["tickets"])
        out.ratings += len(batch["ratings"])
        out.cases += len(batch["cases"])
        progress(len(made))
    await bus.run(_after)
    return out


async def _write(uow: UnitOfWork, batch: dict[str, list[dict[str, Any]]]) -> None:
    if uow.repo.dialect == "postgresql":
        await _copy(uow, batch)
    else:
        for name in ("visits", "tickets", "ratings", "cases"):
            rows = batch.get(name)
            if rows:
                await uow.session.execute(insert(TABLES[name]), rows)
    await uow.commit()


async def _copy(uow: UnitOfWork, batch: dict[str, list[dict[str, Any]]]) -> None:
    """PostgreSQL: COPY, some twenty times faster than INSERTs for a year of halls."""
    connection = await uow.session.connection()
    raw = (await connection.get_raw_connection()).driver_connection
    assert raw is not None
    for name in ("visits", "tickets", "ratings", "cases"):
        rows = batch.get(name)
        if not rows:
            continue
        table = cast(Table, TABLES[name].__table__)
        columns = list(rows[0])
        json_columns = {c.name for c in table.columns if isinstance(c.type, JSON)}
        records = [
            tuple(
                json.dumps(row[c], ensure_ascii=False)
                if c in json_columns and row[c] is not None
                else row[c]
                for c in columns
            )
            for row in rows
        ]
        await raw.copy_records_to_table(table.name, records=records, columns=columns)


async def _after(uow: UnitOfWork) -> None:
    """On PostgreSQL the ids were given here: move the sequences past them, and refresh
    the planner's statistics of the tables just filled."""
    if uow.repo.dialect != "postgresql":
        return
    for table in ("visits", "tickets", "ratings", "desk_cases"):
        await uow.session.execute(text(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608 - fixed names
            f"(SELECT coalesce(max(id), 1) FROM {table}))"
        ))  # fmt: skip
    await uow.commit()
    for table in ("visits", "tickets", "ratings", "desk_cases"):
        await uow.session.execute(text(f"ANALYZE {table}"))
    await uow.commit()
