"""The scheduled jobs, on SQLite and PostgreSQL: per-hall cron jobs on the hall's own clock
(across a DST change too), kept in step with the halls' configuration; what a new leader
catches up on; reminders through a real webhook; the no-show sweep under concurrency; and,
on PostgreSQL, one leader at a time with a takeover when it goes."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from booking import config, jobs
from booking.checkin import CheckIn, check_in
from booking.notify import LogNotifier, make_notifier
from booking.service import BookSlot, book_slot
from queue_server.clock import FixedClock
from queue_server.db.engine import create_engine, session_factory
from queue_server.db.tables import (
    BookingRow,
    HallEventRow,
    SchedulerLeaderRow,
    SlotRow,
    TicketRow,
)
from queue_server.scheduler import Scheduler, leadership_for
from queue_server.service import accounts, commands, hall_config
from queue_server.service.bus import Bus
from queue_server.service.day_close import close_day
from queue_server.service.unit_of_work import UnitOfWork
from tests.conftest import MONDAY_10AM_SHANGHAI
from tests.support import ALL_DAY

BASE = "https://hall.example.org"
PHONE = "13800138000"
BERLIN = ZoneInfo("Europe/Berlin")


def shanghai(day: int, hour: int, minute: int = 0) -> datetime:
    """2026-03-<day> hour:minute in Shanghai (UTC+8), as UTC."""
    return datetime(2026, 3, day, hour - 8, minute, tzinfo=UTC)


async def bookable_hall(bus: Bus, timezone: str = "Asia/Shanghai", **rules: Any) -> tuple[int, int]:
    """A hall open all day with one matter booked online (3 places a slot): both ids."""
    hall = await bus.run(
        hall_config.create_hall,
        {"name_zh": "政务大厅", "name_en": "Service hall", "timezone": timezone,
         "opening_hours": ALL_DAY, "priority_boosts": {}},
    )  # fmt: skip
    matter = await bus.run(
        hall_config.create_service,
        hall.id,
        {"name_zh": "社会保险", "name_en": "Social insurance", "prefix": "A",
         "typical_minutes": 10},
    )  # fmt: skip
    await bus.run(
        config.set_booking_rules,
        hall.id,
        matter.id,
        {"slot_minutes": 30, "capacity": 3, "walk_in_share": 0, **rules},
    )
    return hall.id, matter.id


def scheduler_for(bus: Bus, database_url: str) -> Scheduler:
    # The interval jobs are far off: the tests run the jobs at the moments they choose.
    return Scheduler(
        bus, leadership_for(database_url), LogNotifier(), base_url=BASE,
        poll_seconds=0.05, sweep_seconds=3600,
    )  # fmt: skip


@pytest.fixture
async def scheduler(bus: Bus, database_url: str) -> AsyncIterator[Scheduler]:
    made = scheduler_for(bus, database_url)
    try:
        yield made
    finally:
        await made._step_down()


async def become_leader(scheduler: Scheduler) -> None:
    await scheduler._step()
    assert scheduler.leading, "the only scheduler on the database must lead"


def hall_jobs(scheduler: Scheduler, hall_id: int) -> dict[str, datetime | None]:
    return {
        job_id: at
        for job_id, at in scheduler.next_runs().items()
        if job_id.startswith((f"release:{hall_id}:", f"close:{hall_id}:"))
    }


def one(runs: dict[str, datetime | None], kind: str) -> tuple[str, datetime]:
    found = [(job_id, at) for job_id, at in runs.items() if job_id.startswith(kind + ":")]
    assert len(found) == 1, runs
    job_id, at = found[0]
    assert at is not None, f"{job_id} is paused"
    return job_id, at


# --- cron jobs on the hall's clock ---------------------------------------------------------


async def test_jobs_run_on_the_halls_clock_not_the_machines(bus: Bus, scheduler: Scheduler) -> None:
    hall_id, _ = await bookable_hall(bus, release_time="08:00")  # day closes at 23:30
    await become_leader(scheduler)
    runs = hall_jobs(scheduler, hall_id)
    assert len(runs) == 2, runs
    real_now = datetime.now(UTC)
    _, release_at = one(runs, "release")
    _, close_at = one(runs, "close")
    # 08:00 and 23:30 in Shanghai are 00:00 and 15:30 UTC (the machine runs UTC).
    assert release_at.astimezone(UTC).time() == time(0, 0)
    assert close_at.astimezone(UTC).time() == time(15, 30)
    for at in (release_at, close_at):
        assert timedelta(0) < at - real_now <= timedelta(days=1), "the next run, not a later one"
    assert {"no-show-sweep", "reminders", "reconcile"} <= set(scheduler.next_runs())


async def test_a_berlin_hall_releases_at_8_local_on_both_sides_of_the_dst_change(
    bus: Bus, scheduler: Scheduler
) -> None:
    hall_id, _ = await bookable_hall(bus, timezone="Europe/Berlin", release_time="08:00")
    await become_leader(scheduler)
    release_id, _ = one(hall_jobs(scheduler, hall_id), "release")
    close_id, _ = one(hall_jobs(scheduler, hall_id), "close")
    assert scheduler.aps is not None
    release = scheduler.aps.get_job(release_id).trigger
    close = scheduler.aps.get_job(close_id).trigger

    # Clocks go forward on Sunday 2026-03-29 at 02:00 (CET, UTC+1, becomes CEST, UTC+2).
    def next_fire(trigger: Any, after: datetime) -> datetime:
        return trigger.get_next_fire_time(None, after).astimezone(UTC)

    friday_noon = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)
    saturday_noon = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    sunday_noon = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)
    assert next_fire(release, friday_noon) == datetime(2026, 3, 28, 7, 0, tzinfo=UTC)
    assert next_fire(release, saturday_noon) == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)
    assert next_fire(close, saturday_noon) == datetime(2026, 3, 28, 22, 30, tzinfo=UTC)
    assert next_fire(close, sunday_noon) == datetime(2026, 3, 29, 21, 30, tzinfo=UTC)


async def test_reconcile_follows_new_halls_changed_close_times_and_matters_taken_offline(
    bus: Bus, scheduler: Scheduler
) -> None:
    first, _ = await bookable_hall(bus)
    await become_leader(scheduler)
    assert len(hall_jobs(scheduler, first)) == 2

    # A hall opened after the leader started, with two matters released at different times.
    berlin, early = await bookable_hall(bus, timezone="Europe/Berlin", release_time="07:00")
    late = await bus.run(
        hall_config.create_service,
        berlin,
        {"name_zh": "税务", "name_en": "Tax", "prefix": "B", "typical_minutes": 6},
    )
    await bus.run(
        config.set_booking_rules, berlin, late.id, {"capacity": 2, "release_time": "09:00"}
    )
    assert hall_jobs(scheduler, berlin) == {}
    await scheduler.reconcile()
    runs = hall_jobs(scheduler, berlin)
    releases = sorted(
        at.astimezone(BERLIN).time() for j, at in runs.items() if at and j.startswith("release:")
    )
    assert releases == [time(7, 0), time(9, 0)]
    _, closes = one(runs, "close")
    assert closes.astimezone(BERLIN).time() == time(23, 30)

    # The manager moves the Berlin day close to 22:00: the 23:30 job goes, a 22:00 one comes.
    await bus.run(config.set_calendar, berlin, {}, None, "22:00")
    await scheduler.reconcile()
    runs = hall_jobs(scheduler, berlin)
    _, closes = one(runs, "close")
    assert closes.astimezone(BERLIN).time() == time(22, 0)
    assert len(runs) == 3, runs

    # The 07:00 matter stops taking bookings online: its release job goes, the other stays.
    await bus.run(config.set_booking_rules, berlin, early, None)
    await scheduler.reconcile()
    runs = hall_jobs(scheduler, berlin)
    _, released = one(runs, "release")
    assert released.astimezone(BERLIN).time() == time(9, 0)
    # The first hall was left as it was.
    assert len(hall_jobs(scheduler, first)) == 2


# --- catch-up on becoming leader ------------------------------------------------------------


async def tickets(bus: Bus, hall_id: int) -> dict[tuple[str, str], tuple[str, str | None]]:
    """(business day, number) → (state, outcome) of the hall's tickets."""

    async def read(uow: UnitOfWork) -> dict[tuple[str, str], tuple[str, str | None]]:
        rows = await uow.session.execute(
            select(
                TicketRow.business_day, TicketRow.number, TicketRow.state, TicketRow.outcome
            ).where(TicketRow.hall_id == hall_id)
        )
        return {(day.isoformat(), n): (state, outcome) for day, n, state, outcome in rows}

    return await bus.run(read)


async def events(bus: Bus, hall_id: int) -> list[tuple[int, str]]:
    async def read(uow: UnitOfWork) -> list[tuple[int, str]]:
        rows = await uow.session.execute(
            select(HallEventRow.seq, HallEventRow.name)
            .where(HallEventRow.hall_id == hall_id)
            .order_by(HallEventRow.seq)
        )
        return [(seq, name) for seq, name in rows]

    return await bus.run(read)


async def mark_published(bus: Bus, hall_id: int, seqs: list[int]) -> None:
    """What the outbox relay does once it has sent the events to the boards."""

    async def write(uow: UnitOfWork) -> None:
        await uow.session.execute(
            update(HallEventRow)
            .where(HallEventRow.hall_id == hall_id, HallEventRow.seq.in_(seqs))
            .values(published_at=HallEventRow.created_at)
        )
        await uow.commit()

    await bus.run(write)


async def hall_with_desks(bus: Bus) -> tuple[int, int, list[tuple[int, int]]]:
    """A Shanghai hall (closing at 23:30) with matter A and two counters, each with a clerk."""
    hall = await bus.run(
        hall_config.create_hall,
        {"name_zh": "政务大厅", "name_en": "Service hall", "timezone": "Asia/Shanghai",
         "opening_hours": ALL_DAY, "priority_boosts": {}},
    )  # fmt: skip
    matter = await bus.run(
        hall_config.create_service,
        hall.id,
        {"name_zh": "社保", "name_en": "Social", "prefix": "A", "typical_minutes": 5},
    )
    desks = []
    for number in (1, 2):
        counter = await bus.run(
            hall_config.create_counter, hall.id, number, f"窗口 {number}", [(matter.id, "primary")]
        )
        clerk = await bus.run(
            accounts.create_user, f"clerk{number}", "clerk-password", accounts.Role.CLERK, hall.id
        )
        desks.append((counter.id, clerk.id))
    return hall.id, matter.id, desks


async def issue(bus: Bus, hall_id: int, matter_id: int, count: int = 1) -> None:
    for _ in range(count):
        await bus.execute(commands.IssueTicket(hall_id, matter_id, commands.Actor(user_id=None)))


async def test_a_new_leader_closes_the_days_left_open_and_prunes_old_events(
    bus: Bus, clock: FixedClock, scheduler: Scheduler
) -> None:
    hall_id, matter_id, desks = await hall_with_desks(bus)
    # Eight days ago: two tickets nobody closed (events 1 and 2).
    clock.set(MONDAY_10AM_SHANGHAI - timedelta(days=8))
    await issue(bus, hall_id, matter_id, 2)
    # Yesterday: A001 being served, A002 called, A003 waiting when everybody went home.
    clock.set(shanghai(1, 15))
    await issue(bus, hall_id, matter_id, 3)
    (c1, k1), (c2, k2) = desks
    for counter, clerk in desks:
        await bus.execute(commands.OpenCounter(counter, clerk))
    await bus.execute(commands.CallNext(c1, k1))
    await bus.execute(commands.StartService(c1, k1))
    await bus.execute(commands.CallNext(c2, k2))
    # Today, 10:00: one ticket waiting, the day is far from closed.
    clock.set(MONDAY_10AM_SHANGHAI)
    await issue(bus, hall_id, matter_id)
    before = await events(bus, hall_id)
    # The relay published all but the second of the old events (it had not got to it).
    await mark_published(bus, hall_id, [seq for seq, _ in before if seq != 2])

    await become_leader(scheduler)

    assert await tickets(bus, hall_id) == {
        ("2026-02-22", "A001"): ("cancelled", "day_closed"),
        ("2026-02-22", "A002"): ("cancelled", "day_closed"),
        ("2026-03-01", "A001"): ("serving", None),  # left to its clerk
        ("2026-03-01", "A002"): ("cancelled", "day_closed"),
        ("2026-03-01", "A003"): ("cancelled", "day_closed"),
        ("2026-03-02", "A001"): ("waiting", None),
    }
    after = await events(bus, hall_id)
    # The published event older than 7 days is gone; the unpublished one and the recent ones
    # stay, followed by one cancellation per closed ticket.
    assert after[: len(before) - 1] == before[1:]
    assert [name for _, name in after[len(before) - 1 :]] == ["TicketCancelled"] * 4

    # Closing again changes nothing.
    again = await bus.run(close_day, hall_id, date(2026, 3, 1))
    assert (again.tickets_closed, again.events_pruned) == (0, 0)
    assert await events(bus, hall_id) == after
    await scheduler.catch_up()
    assert await events(bus, hall_id) == after

    # At 23:30 the day-close job closes today as well.
    clock.set(shanghai(2, 23, 30))
    await scheduler.close(hall_id)
    assert (await tickets(bus, hall_id))[("2026-03-02", "A001")] == ("cancelled", "day_closed")


async def test_a_leader_starting_after_closing_time_closes_today_too(
    bus: Bus, clock: FixedClock, scheduler: Scheduler
) -> None:
    hall_id, matter_id, _ = await hall_with_desks(bus)
    await issue(bus, hall_id, matter_id)
    clock.set(shanghai(2, 23, 29))
    await become_leader(scheduler)
    assert (await tickets(bus, hall_id))[("2026-03-02", "A001")] == ("waiting", None)
    await scheduler._step_down()
    clock.set(shanghai(2, 23, 45))  # the server was down at 23:30
    await become_leader(scheduler)
    assert (await tickets(bus, hall_id))[("2026-03-02", "A001")] == ("cancelled", "day_closed")


async def test_a_close_job_that_runs_after_midnight_closes_the_day_it_was_for(
    bus: Bus, clock: FixedClock, scheduler: Scheduler
) -> None:
    hall_id, matter_id, _ = await hall_with_desks(bus)
    await issue(bus, hall_id, matter_id)  # Monday A001
    await become_leader(scheduler)
    clock.set(datetime(2026, 3, 2, 16, 5, tzinfo=UTC))  # Tuesday 00:05 in Shanghai
    await issue(bus, hall_id, matter_id)  # Tuesday's A001: the new day has begun
    clock.set(datetime(2026, 3, 2, 16, 10, tzinfo=UTC))  # the 23:30 job, 40 minutes late
    await scheduler.close(hall_id)
    found = await tickets(bus, hall_id)
    assert found[("2026-03-02", "A001")] == ("cancelled", "day_closed")
    assert found[("2026-03-03", "A001")] == ("waiting", None)


async def test_a_deactivated_matter_loses_its_release_job(bus: Bus, scheduler: Scheduler) -> None:
    hall_id, matter_id = await bookable_hall(bus)
    await become_leader(scheduler)
    assert any(j.startswith("release:") for j in hall_jobs(scheduler, hall_id))
    await bus.run(hall_config.update_service, hall_id, matter_id, {"active": False})
    await scheduler.reconcile()
    assert [j for j in hall_jobs(scheduler, hall_id) if j.startswith("release:")] == []
    assert any(j.startswith("close:") for j in hall_jobs(scheduler, hall_id))


# --- reminders through a webhook ------------------------------------------------------------


class Webhook:
    """A local HTTP server standing in for the deployer's message bridge."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.content_types: list[str] = []
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = self.rfile.read(length)
                hook.content_types.append(self.headers["Content-Type"])
                hook.received.append(json.loads(body))
                self.send_response(hook.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/reminders"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def take(self) -> list[dict[str, Any]]:
        out, self.received = self.received, []
        return out


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    hook.thread.start()
    try:
        yield hook
    finally:
        hook.server.shutdown()
        hook.server.server_close()


async def book(bus: Bus, hall_id: int, matter_id: int, start: datetime, phone: str) -> str:
    made = await bus.run(book_slot, BookSlot(hall_id, matter_id, start, "王小明", phone))
    return made.code


async def reminded_at(bus: Bus, code: str) -> datetime | None:
    async def read(uow: UnitOfWork) -> datetime | None:
        return await uow.session.scalar(
            select(BookingRow.reminded_at).where(BookingRow.code == code)
        )

    return await bus.run(read)


async def test_one_reminder_per_booking_through_the_webhook(
    bus: Bus, clock: FixedClock, webhook: Webhook
) -> None:
    hall_id, matter_id = await bookable_hall(bus)  # reminders 120 minutes ahead (the default)
    notifier = make_notifier("webhook", webhook.url)
    # Monday 10:00: a booking for Tuesday 11:00, so the reminder is due Tuesday 09:00.
    code = await book(bus, hall_id, matter_id, shanghai(3, 11), "+86 138-0013-8000")

    clock.set(shanghai(3, 8, 59))
    assert await jobs.send_reminders(bus, notifier, BASE) == (0, 0)
    assert webhook.take() == []

    clock.set(shanghai(3, 9, 1))
    assert await jobs.send_reminders(bus, notifier, BASE) == (1, 0)
    [sent] = webhook.take()
    assert webhook.content_types == ["application/json"]
    assert sent["type"] == "booking_reminder"
    assert (sent["code"], sent["phone"], sent["name"]) == (code, PHONE, "王小明")
    assert (sent["local_date"], sent["local_time"]) == ("2026-03-03", "11:00")
    assert sent["manage_url"] == f"{BASE}/b/{code}"
    assert sent["text_zh"] == (
        f"王小明您好：您预约的政务大厅“社会保险”在 2026-03-03 11:00，预约码 {code}。"
        "到厅后请在取号机签到。"
    )
    assert sent["text_en"] == (
        f"Dear 王小明, your booking for Social insurance at Service hall is on 2026-03-03 at "
        f"11:00, code {code}. Check in at the kiosk when you arrive."
    )
    clock.set(shanghai(3, 9, 2))
    assert await jobs.send_reminders(bus, notifier, BASE) == (0, 0)
    assert webhook.take() == []


async def test_a_failed_reminder_is_sent_on_the_next_run(
    bus: Bus, clock: FixedClock, webhook: Webhook
) -> None:
    hall_id, matter_id = await bookable_hall(bus)
    notifier = make_notifier("webhook", webhook.url)
    code = await book(bus, hall_id, matter_id, shanghai(3, 14), PHONE)
    clock.set(shanghai(3, 12, 5))
    webhook.status = 500
    assert await jobs.send_reminders(bus, notifier, BASE) == (0, 1)
    assert [r["code"] for r in webhook.take()] == [code]
    assert await reminded_at(bus, code) is None, "the failed reminder is released"
    clock.set(shanghai(3, 12, 6))
    webhook.status = 200
    assert await jobs.send_reminders(bus, notifier, BASE) == (1, 0)
    assert [r["code"] for r in webhook.take()] == [code]
    assert await reminded_at(bus, code) == shanghai(3, 12, 6)
    assert await jobs.send_reminders(bus, notifier, BASE) == (0, 0)
    assert webhook.take() == []


async def test_a_booking_made_inside_the_reminder_window_gets_none(
    bus: Bus, clock: FixedClock, webhook: Webhook
) -> None:
    hall_id, matter_id = await bookable_hall(bus)
    notifier = make_notifier("webhook", webhook.url)
    clock.set(shanghai(3, 10))
    await book(bus, hall_id, matter_id, shanghai(3, 11), PHONE)  # reminder time was 09:00
    for moment in (shanghai(3, 10, 1), shanghai(3, 10, 45)):
        clock.set(moment)
        assert await jobs.send_reminders(bus, notifier, BASE) == (0, 0)
    assert webhook.take() == []


# --- the no-show sweep ----------------------------------------------------------------------


async def booked_places(bus: Bus, matter_id: int) -> dict[datetime, int]:
    async def read(uow: UnitOfWork) -> dict[datetime, int]:
        rows = await uow.session.execute(
            select(SlotRow.starts_at, SlotRow.booked).where(
                SlotRow.service_id == matter_id, SlotRow.booked > 0
            )
        )
        return {start: booked for start, booked in rows}

    return await bus.run(read)


async def booking_states(bus: Bus, hall_id: int) -> dict[str, str]:
    async def read(uow: UnitOfWork) -> dict[str, str]:
        rows = await uow.session.execute(
            select(BookingRow.code, BookingRow.state).where(BookingRow.hall_id == hall_id)
        )
        return {code: state for code, state in rows}

    return await bus.run(read)


async def test_concurrent_sweeps_mark_each_no_show_once_and_give_its_place_back_once(
    bus: Bus, clock: FixedClock
) -> None:
    hall_id, matter_id = await bookable_hall(bus)
    eleven = [
        await book(bus, hall_id, matter_id, shanghai(2, 11), f"1390000000{i}") for i in range(3)
    ]
    half_past = [
        await book(bus, hall_id, matter_id, shanghai(2, 11, 30), f"1370000000{i}") for i in range(2)
    ]
    noon = await book(bus, hall_id, matter_id, shanghai(2, 12), "13600000000")
    clock.set(shanghai(2, 10, 45))
    await bus.run(check_in, CheckIn(hall_id, commands.Actor(user_id=None), code=eleven[0]))
    assert await booked_places(bus, matter_id) == {
        shanghai(2, 11): 3,
        shanghai(2, 11, 30): 2,
        shanghai(2, 12): 1,
    }
    before = len(await events(bus, hall_id))

    # 11:50: the late windows of 11:00 and 11:30 (15 minutes) are over, 12:00 has not begun.
    clock.set(shanghai(2, 11, 50))
    marked = await asyncio.gather(*(bus.run(jobs.sweep_no_shows) for _ in range(4)))
    assert sum(marked) == 4, marked
    overdue = [*eleven[1:], *half_past]
    assert await booking_states(bus, hall_id) == {
        eleven[0]: "checked_in",
        **dict.fromkeys(overdue, "no_show"),
        noon: "booked",
    }
    # The checked-in visitor keeps the 11:00 place; each no-show gave back exactly one.
    assert await booked_places(bus, matter_id) == {shanghai(2, 11): 1, shanghai(2, 12): 1}
    logged = [name for _, name in (await events(bus, hall_id))[before:]]
    assert logged == ["BookingMarkedNoShow"] * 4
    assert await bus.run(jobs.sweep_no_shows) == 0


# --- one leader on PostgreSQL ---------------------------------------------------------------


async def leader_row(bus: Bus) -> str | None:
    async def read(uow: UnitOfWork) -> str | None:
        row = await uow.session.get(SchedulerLeaderRow, "jobs")
        return None if row is None else row.holder

    return await bus.run(read)


async def eventually(check: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if check():
            return
        assert asyncio.get_running_loop().time() < deadline, f"not so within {timeout} s"
        await asyncio.sleep(0.02)


@pytest.mark.postgres
async def test_one_scheduler_leads_and_another_takes_over_when_it_stops(pg_url: str) -> None:
    engine = create_engine(pg_url)
    bus = Bus(session_factory(engine), FixedClock(MONDAY_10AM_SHANGHAI))
    first, second = scheduler_for(bus, pg_url), scheduler_for(bus, pg_url)
    first.holder, second.holder = "host-a:1", "host-b:2"
    running = [asyncio.create_task(first.run())]
    try:
        await eventually(lambda: first.leading)
        running.append(asyncio.create_task(second.run()))
        await asyncio.sleep(0.5)  # ten tries at 0.05 s
        assert not second.leading, "two leaders at once"
        assert await leader_row(bus) == "host-a:1"
        running[0].cancel()
        await eventually(lambda: second.leading, timeout=2)
        assert not first.leading
        assert await leader_row(bus) == "host-b:2"
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await engine.dispose()


@pytest.mark.postgres
async def test_the_leaders_lock_connection_is_probed_so_a_vanished_host_frees_it(
    pg_url: str,
) -> None:
    """The lock dies with the leader's session; PostgreSQL must notice a host that vanished
    without closing its connection, or no process would run the jobs for hours."""
    leadership = leadership_for(pg_url)
    other = leadership_for(pg_url)
    try:
        assert await leadership.acquire()
        assert not await other.acquire()  # one leader at a time
        conn = leadership.conn  # type: ignore[attr-defined]
        settings = {
            name: await conn.fetchval(f"SHOW {name}")
            for name in ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count")
        }
        assert settings == {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5",
                            "tcp_keepalives_count": "3"}  # fmt: skip
    finally:
        await leadership.release()
        await other.release()
