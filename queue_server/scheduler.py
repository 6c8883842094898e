"""Scheduled jobs (APScheduler 3.x), run by exactly one process: the leader.

Every process runs a ``Scheduler`` that keeps trying to become leader. On PostgreSQL the
leader is whoever holds a session-level advisory lock on a connection of its own: when that
process dies its connection closes, the lock is free, and another process takes over at
its next try (``leader_poll_seconds``). On SQLite there is one process, which leads.

The leader builds its own in-memory job store (job stores are never shared): per hall, the
booking window release at each matter's release time and the day close, both as cron
triggers in the hall's timezone; and, every ``sweep_seconds``, the no-show sweep and the
reminders. When it becomes leader it first catches up (release, sweep, and closing any day
that was not closed). Every job is idempotent, so a takeover that repeats one is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import asyncpg
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.plugins import InitPluginProtocol
from sqlalchemy.engine import make_url

from booking import jobs, privacy
from booking.notify import Notifier, make_notifier
from queue_server.db.engine import is_sqlite
from queue_server.db.tables import SchedulerLeaderRow
from queue_server.service import audit, daily, desk, webhooks
from queue_server.service.bus import Bus
from queue_server.service.day_close import close_day
from queue_server.service.unit_of_work import UnitOfWork
from queue_server.settings import Settings

SCHEDULER = audit.Actor("scheduler")
log = logging.getLogger("onedoor.scheduler")
# pg_advisory_lock key: "OneDoor!" as a big-endian 64-bit integer.
LOCK_KEY = int.from_bytes(b"OneDoor!", "big", signed=True)
RECONCILE_SECONDS = 60
WEBHOOK_SECONDS = 2.0
"""How often the leader posts what is due to webhooks."""


class Leadership(Protocol):
    async def acquire(self) -> bool:
        """Try to become leader; True if this process leads now."""
        ...

    async def still_held(self) -> bool:
        """Whether this process is still the leader."""
        ...

    async def release(self) -> None: ...


class SoleLeadership:
    """One process on one SQLite file: it leads."""

    async def acquire(self) -> bool:
        return True

    async def still_held(self) -> bool:
        return True

    async def release(self) -> None:
        return None


LEADER_KEEPALIVE = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
}


class PostgresLeadership:
    """A session advisory lock on a dedicated connection; it dies with its process."""

    def __init__(self, database_url: str) -> None:
        self.dsn = (
            make_url(database_url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        self.conn: asyncpg.Connection | None = None

    async def acquire(self) -> bool:
        if self.conn is None or self.conn.is_closed():
            # PostgreSQL probes this connection's peer (TCP keepalive) and ends the session
            # of a leader whose host vanished (power cut, network gone) within about 25 s,
            # freeing the lock for another process; without it the session could hold the
            # lock until the OS gave up on the connection (two hours by default on Linux).
            self.conn = await asyncpg.connect(self.dsn, timeout=5, server_settings=LEADER_KEEPALIVE)
        return bool(await self.conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY))

    async def still_held(self) -> bool:
        if self.conn is None or self.conn.is_closed():
            return False
        try:
            return bool(await self.conn.fetchval("SELECT 1", timeout=5))
        except (OSError, asyncpg.PostgresError, TimeoutError):
            await self.release()
            return False

    async def release(self) -> None:
        if self.conn is not None:
            conn, self.conn = self.conn, None
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)


def leadership_for(database_url: str) -> Leadership:
    return SoleLeadership() if is_sqlite(database_url) else PostgresLeadership(database_url)


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def _record_leader(uow: UnitOfWork, holder: str, new: bool) -> None:
    now = uow.clock.now()
    row = await uow.session.get(SchedulerLeaderRow, "jobs")
    if row is None:
        uow.session.add(SchedulerLeaderRow(name="jobs", holder=holder, since=now, heartbeat_at=now))
    else:
        if new or row.holder != holder:
            row.holder, row.since = holder, now
        row.heartbeat_at = now
    await uow.commit()


def _cron(clock: str, tz: ZoneInfo) -> CronTrigger:
    # The timezone is passed explicitly: a trigger built without one runs in UTC.
    hour, minute = (int(part) for part in clock.split(":"))
    return CronTrigger(hour=hour, minute=minute, timezone=tz)


class Scheduler:
    """Tries to lead; while leading, runs the jobs. ``run`` loops until cancelled."""

    def __init__(
        self,
        bus: Bus,
        leadership: Leadership,
        notifier: Notifier,
        *,
        base_url: str,
        poll_seconds: float = 5.0,
        sweep_seconds: float = 60.0,
    ) -> None:
        self.bus = bus
        self.leadership = leadership
        self.notifier = notifier
        self.base_url = base_url
        self.poll_seconds = poll_seconds
        self.sweep_seconds = sweep_seconds
        self.holder = holder_name()
        self.aps: AsyncIOScheduler | None = None

    @property
    def leading(self) -> bool:
        return self.aps is not None

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self._step()
                except asyncio.CancelledError:
                    raise
                except Exception:  # a database hiccup: step down and try again later
                    log.exception("scheduler step failed; stepping down")
                    await self._step_down()
                await asyncio.sleep(self.poll_seconds)
        finally:
            await self._step_down()

    async def _step(self) -> None:
        if not self.leading:
            if await self.leadership.acquire():
                await self._lead()
        elif await self.leadership.still_held():
            await self.bus.run(_record_leader, self.holder, False)
        else:
            log.warning("lost the scheduler lock; %s steps down", self.holder)
            await self._step_down()

    async def _lead(self) -> None:
        log.info("%s runs the scheduled jobs", self.holder)
        await self.bus.run(_record_leader, self.holder, True)
        aps = AsyncIOScheduler(timezone=UTC)
        options: dict[str, Any] = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        every = IntervalTrigger(seconds=self.sweep_seconds, timezone=UTC)
        aps.add_job(
            self._guard(self.sweep), every, id="no-show-sweep", name="no-show sweep", **options
        )
        aps.add_job(self._guard(self.remind), every, id="reminders", name="reminders", **options)
        aps.add_job(
            self._guard(self.flag_cases), every, id="case-reminders", name="desk case reminders",
            **options,
        )  # fmt: skip
        aps.add_job(
            self._guard(self.send_webhooks),
            IntervalTrigger(seconds=WEBHOOK_SECONDS, timezone=UTC),
            id="webhooks", name="webhook deliveries", **options,
        )  # fmt: skip
        aps.add_job(
            self._guard(self.reconcile),
            IntervalTrigger(seconds=RECONCILE_SECONDS, timezone=UTC),
            id="reconcile",
            name="reconcile hall jobs",
            **options,
        )  # fmt: skip
        self.aps = aps
        aps.start()
        await self.reconcile()
        await self.catch_up()

    async def _step_down(self) -> None:
        if self.aps is not None:
            aps, self.aps = self.aps, None
            aps.shutdown(wait=False)
        await self.leadership.release()

    def _guard(self, job: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[None]]:
        async def run(*args: Any) -> None:
            try:
                await job(*args)
            except Exception:  # logged; the next run tries again (jobs are idempotent)
                log.exception("scheduled job %s failed", getattr(job, "__name__", job))

        run.__name__ = getattr(job, "__name__", "job")
        return run

    async def reconcile(self) -> None:
        """Make the per-hall cron jobs match the halls' current times (added, changed or
        removed halls and matters are picked up within a minute)."""
        if self.aps is None:
            return
        wanted: dict[str, tuple[Callable[..., Awaitable[None]], CronTrigger, tuple[Any, ...]]] = {}
        for hall in await self.bus.run(jobs.hall_times):
            tz = ZoneInfo(hall.timezone)
            close_id = f"close:{hall.hall_id}:{hall.timezone}:{hall.day_close}"
            wanted[close_id] = (self._guard(self.close), _cron(hall.day_close, tz), (hall.hall_id,))
            for clock in hall.releases:
                release_id = f"release:{hall.hall_id}:{hall.timezone}:{clock}"
                wanted[release_id] = (self._guard(self.release), _cron(clock, tz), (hall.hall_id,))
        for job in self.aps.get_jobs():
            if job.id.startswith(("close:", "release:")) and job.id not in wanted:
                job.remove()
        for job_id, (func, trigger, args) in wanted.items():
            if self.aps.get_job(job_id) is None:
                self.aps.add_job(
                    func, trigger, args=args, id=job_id, name=job_id, coalesce=True,
                    max_instances=1, misfire_grace_time=3600,
                )  # fmt: skip

    async def catch_up(self) -> None:
        """What a new leader does first: release windows, close days left open, sweep."""
        for hall in await self.bus.run(jobs.hall_times):
            await self._guard(self.release)(hall.hall_id)
            await self._guard(self._close_through)(hall.hall_id, self._last_closed_day(hall))
        await self._guard(self.sweep)()

    def _last_closed_day(self, hall: jobs.HallTimes) -> date:
        """The last business day whose closing time has passed, on the hall's clock: today
        once past the close time, else yesterday. A close job that runs late (after
        midnight) therefore closes the day it was for, not the new one."""
        local = self.bus.clock.now().astimezone(ZoneInfo(hall.timezone))
        hour, minute = (int(p) for p in hall.day_close.split(":"))
        if local.time() >= time(hour, minute):
            return local.date()
        return local.date() - timedelta(days=1)

    async def release(self, hall_id: int) -> None:
        created = await self.bus.run(jobs.release_window, hall_id)
        if created:
            log.info("hall %d: %d slots released", hall_id, created)

    async def close(self, hall_id: int) -> None:
        hall = next((h for h in await self.bus.run(jobs.hall_times) if h.hall_id == hall_id), None)
        if hall is None:
            return
        await self._close_through(hall_id, self._last_closed_day(hall))

    async def _close_through(self, hall_id: int, through: date) -> None:
        with audit.as_actor(SCHEDULER):
            result = await self.bus.run(close_day, hall_id, through)
            await self.bus.run(daily.write_daily_report, hall_id, through)
            if result.tickets_closed or result.events_pruned:
                log.info(
                    "hall %d closed through %s: %d tickets unserved, %d old events pruned",
                    hall_id, through, result.tickets_closed, result.events_pruned,
                )  # fmt: skip
                details = {"tickets_unserved": result.tickets_closed,
                           "events_pruned": result.events_pruned}  # fmt: skip
                await self.bus.run(audit.record, hall_id, "day closed", str(through), details)
            erased = await self.bus.run(privacy.erase_expired, hall_id)
            if erased.bookings or erased.holders or erased.visits:
                counts = {"bookings": erased.bookings, "holders": erased.holders,
                          "visits": erased.visits}  # fmt: skip
                log.info("hall %d: personal data before %s erased %s", hall_id, erased.before,
                         counts)  # fmt: skip
                await self.bus.run(
                    audit.record, hall_id, "personal data erased", f"before {erased.before}",
                    counts,
                )  # fmt: skip

    async def sweep(self) -> None:
        marked = await self.bus.run(jobs.sweep_no_shows)
        if marked:
            log.info("%d bookings marked as no-shows", marked)

    async def remind(self) -> None:
        await jobs.send_reminders(self.bus, self.notifier, self.base_url)

    async def send_webhooks(self) -> None:
        """Post the hall events due to managers' webhooks (never in a request's way)."""
        counts = await webhooks.deliver(self.bus)
        if counts["failed"]:
            log.warning("webhooks: %s", counts)

    async def flag_cases(self) -> None:
        """Flag the desk's open cases past their promised answer date (managers and the
        desk see them highlighted; each is flagged once, until its date is moved)."""
        flagged = await self.bus.run(desk.flag_overdue)
        if flagged:
            log.warning("%d desk cases are past their promised answer date", flagged)

    def next_runs(self) -> dict[str, datetime | None]:
        """Each job and when it runs next (UTC), for operators and tests."""
        if self.aps is None:
            return {}
        return {
            job.id: job.next_run_time.astimezone(UTC) if job.next_run_time else None
            for job in self.aps.get_jobs()
        }


class SchedulerPlugin(InitPluginProtocol):
    """Starts this process's ``Scheduler`` after the live feeds (so the jobs' events are
    relayed) and stops it, releasing the leadership, at shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._task: asyncio.Task[None] | None = None

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        if self.settings.scheduler:
            app_config.on_startup.append(self._start)
            app_config.on_shutdown.append(self._stop)
        return app_config

    async def _start(self, app: Litestar) -> None:
        settings = self.settings
        scheduler = Scheduler(
            app.state.bus,
            leadership_for(settings.effective_database_url),
            make_notifier(settings.notify, settings.notify_webhook_url),
            base_url=settings.effective_public_base_url,
            poll_seconds=settings.leader_poll_seconds,
            sweep_seconds=settings.sweep_seconds,
        )
        app.state.scheduler = scheduler
        self._task = asyncio.create_task(scheduler.run(), name="scheduler")

    async def _stop(self, app: Litestar) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
