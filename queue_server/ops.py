"""What operators ask of a running OneDoor: is it ready, is it configured right, how is it
doing.

- ``schema_state``: the database's migration revision against the code's head.
- ``readiness``: database reachable with the schema at head, Redis reachable when set (the
  answer of ``GET /readyz``; ``GET /livez`` only says the process answers).
- ``run_checks``: ``onedoor check`` — settings, folders, database, schema, Redis — as lines
  that say what to fix.
- ``Metrics``: the Prometheus text at ``GET /metrics``: requests by route and status with
  their durations, open live feeds, and per hall the waiting tickets, the longest wait now,
  and today's failed print jobs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from queue_server.db.migrate import alembic_config
from queue_server.db.tables import PrintJobRow, TicketRow
from queue_server.domain.model import TicketState
from queue_server.service.unit_of_work import UnitOfWork
from queue_server.settings import Settings


def code_head(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


async def schema_state(connection: AsyncConnection, url: str) -> tuple[str | None, str | None]:
    """(the database's revision, the code's head)."""

    def current(sync: Any) -> str | None:
        return MigrationContext.configure(sync).get_current_revision()

    return await connection.run_sync(current), code_head(url)


async def _redis_ok(url: str) -> str | None:
    """None when Redis answers a PING within 2 s, else why not."""
    from redis.asyncio import Redis

    client = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
        return None
    except Exception as exc:  # any failure: not ready
        return f"{type(exc).__name__}: {exc}"
    finally:
        await client.aclose()


@dataclass(frozen=True)
class Readiness:
    ready: bool
    database: str
    schema: str
    redis: str


async def readiness(engine: Any, settings: Settings) -> Readiness:
    """Whether this process can serve: database, schema at head, Redis (when set)."""
    database = schema = "ok"
    try:
        async with asyncio.timeout(3), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            have, want = await schema_state(connection, settings.effective_database_url)
            if have != want:
                schema = f"at {have}, the code needs {want}: run onedoor db upgrade"
    except Exception as exc:  # any failure: not ready
        database = f"unreachable ({type(exc).__name__})"
        schema = "unknown"
    redis = "not used"
    if settings.redis_url:
        problem = await _redis_ok(settings.redis_url)
        redis = "ok" if problem is None else f"unreachable ({problem})"
    ready = database == "ok" and schema == "ok" and redis in ("ok", "not used")
    return Readiness(ready, database, schema, redis)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    warning: bool = False
    """Works, but not as well as it should: said, not counted as a failure."""


AUTOVACUUM_OFF = (
    "PostgreSQL's autovacuum is off: the planner's statistics go stale as a day's tickets "
    "come in, and the queue's reads then plan for an empty table (measured: call-next read "
    "the whole queue, 11 ms instead of 1 ms, with 12,000 waiting). Turn it on "
    "(autovacuum = on, PostgreSQL's default) or run VACUUM ANALYZE every few minutes"
)


async def _statistics_check(connection: AsyncConnection) -> Check | None:
    """On PostgreSQL, whether its statistics stay current (autovacuum on); None elsewhere."""
    if connection.dialect.name != "postgresql":
        return None
    setting = await connection.scalar(text("SHOW autovacuum"))
    if setting == "on":
        return Check("database statistics", True, "autovacuum on")
    return Check("database statistics", True, AUTOVACUUM_OFF, warning=True)


async def run_checks(settings: Settings) -> list[Check]:
    """``onedoor check``: each setting and connection, and what to do when one fails."""
    from queue_server.db.engine import create_engine

    checks: list[Check] = []
    var = settings.var_dir
    try:
        var.mkdir(parents=True, exist_ok=True)
        probe = var / ".onedoor-check"
        probe.write_text("ok")
        probe.unlink()
        checks.append(Check("var folder", True, f"{var} is writable"))
    except OSError as exc:
        checks.append(Check("var folder", False, f"{var}: {exc}; set ONEDOOR_VAR_DIR"))
    try:
        settings.session_secret()
        where = "ONEDOOR_SECRET_KEY" if settings.secret_key else f"{var / 'secret_key'}"
        note = "" if settings.secret_key or settings.workers == 1 else (
            "; several hosts must share one: set ONEDOOR_SECRET_KEY"
        )  # fmt: skip
        checks.append(Check("session key", True, f"from {where}{note}"))
    except Exception as exc:  # a bad key: say so
        checks.append(Check("session key", False, str(exc)))
    url = settings.effective_database_url
    engine = create_engine(url, pool_size=1)
    try:
        async with asyncio.timeout(5), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            checks.append(Check("database", True, engine.url.render_as_string(hide_password=True)))
            have, want = await schema_state(connection, url)
            checks.append(
                Check("schema", have == want, f"at {have}" if have == want else
                      f"at {have}, the code needs {want}: run onedoor db upgrade")
            )  # fmt: skip
            statistics = await _statistics_check(connection)
            if statistics is not None:
                checks.append(statistics)
    except Exception as exc:  # unreachable, refused, timed out
        checks.append(
            Check("database", False, f"{type(exc).__name__}: {exc}; check ONEDOOR_DATABASE_URL")
        )
    finally:
        await engine.dispose()
    if settings.redis_url:
        problem = await _redis_ok(settings.redis_url)
        checks.append(
            Check("redis", problem is None, settings.redis_url if problem is None else
                  f"{problem}; check ONEDOOR_REDIS_URL")
        )  # fmt: skip
    elif settings.workers > 1:
        checks.append(
            Check("redis", False, f"{settings.workers} workers need ONEDOOR_REDIS_URL for "
                  "live feeds and shared caches")
        )  # fmt: skip
    if settings.host in ("0.0.0.0", "::") and not settings.public_base_url:  # noqa: S104
        checks.append(
            Check("public address", False, "serving on all interfaces: set "
                  "ONEDOOR_PUBLIC_BASE_URL so printed QR codes and links reach visitors")
        )  # fmt: skip
    if settings.trusted_proxies:
        checks.append(Check("trusted proxies", True, settings.trusted_proxies))
    return checks


class Metrics:
    """This process's Prometheus metrics (a registry of its own per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "onedoor_http_requests", "HTTP requests answered", ["method", "route", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.seconds = Histogram(
            "onedoor_http_request_seconds", "Time to answer, by route", ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )  # fmt: skip
        self.feeds = Gauge(
            "onedoor_websocket_clients", "Live feeds open in this process",
            registry=self.registry,
        )  # fmt: skip
        self.follower_updates = Counter(
            "onedoor_follower_updates", "Follow-feed messages sent, by what was read for them: "
            "'ticket' (the ticket read from the database) or 'projection' (only the queue "
            "moved: its wait told again from the hall's shared projection)", ["read"],
            registry=self.registry,
        )  # fmt: skip
        self.waiting = Gauge(
            "onedoor_waiting_tickets", "Tickets waiting now", ["hall"], registry=self.registry
        )
        self.longest = Gauge(
            "onedoor_longest_wait_seconds", "How long the longest-waiting ticket has waited",
            ["hall"], registry=self.registry,
        )  # fmt: skip
        self.print_failed = Gauge(
            "onedoor_print_jobs_failed_today", "Print jobs failed in the last 24 hours",
            ["hall"], registry=self.registry,
        )  # fmt: skip

    def middleware(self, app: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        # Each label set's series, found once: ``labels()`` checks and locks on every call
        # (1.5% of a board read's CPU in py-spy). Bounded as the series are: by the routes,
        # methods and statuses there are.
        counted: dict[tuple[str, str, str], Any] = {}
        timed: dict[str, Any] = {}

        async def measure(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "websocket":
                self.feeds.inc()
                try:
                    await app(scope, receive, send)
                finally:
                    self.feeds.dec()
                return
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            status = [500]

            async def sent(message: Any) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            try:
                await app(scope, receive, sent)
            finally:
                route = scope.get("path_template") or "unmatched"
                key = (scope.get("method", ""), route, str(status[0]))
                count = counted.get(key)
                if count is None:
                    count = counted[key] = self.requests.labels(*key)
                count.inc()
                timer = timed.get(route)
                if timer is None:
                    timer = timed[route] = self.seconds.labels(route)
                timer.observe(time.perf_counter() - started)

        return measure

    async def render(self, bus: Any) -> bytes:
        """The metrics text, the hall figures read now (one grouped query each)."""
        for hall_id, waiting, longest, failed in await bus.run(_hall_figures):
            self.waiting.labels(str(hall_id)).set(waiting)
            self.longest.labels(str(hall_id)).set(longest)
            self.print_failed.labels(str(hall_id)).set(failed)
        return generate_latest(self.registry)


async def _hall_figures(uow: UnitOfWork) -> list[tuple[int, int, float, int]]:
    now = uow.clock.now()
    waiting = await uow.session.execute(
        select(TicketRow.hall_id, func.count(), func.min(TicketRow.queued_at))
        .where(TicketRow.state == TicketState.WAITING)
        .group_by(TicketRow.hall_id)
    )
    failed = dict(
        (
            await uow.session.execute(
                select(PrintJobRow.hall_id, func.count())
                .where(
                    PrintJobRow.state == "failed", PrintJobRow.created_at > now - timedelta(days=1)
                )
                .group_by(PrintJobRow.hall_id)
            )
        ).all()
    )
    figures = []
    seen = set()
    for hall_id, count, oldest in waiting:
        seen.add(hall_id)
        longest = (now - oldest).total_seconds() if oldest is not None else 0.0
        figures.append((hall_id, int(count), max(0.0, longest), int(failed.get(hall_id, 0))))
    figures += [(hall_id, 0, 0.0, int(n)) for hall_id, n in failed.items() if hall_id not in seen]
    return figures
