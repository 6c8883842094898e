"""What operators rely on: liveness and readiness (the schema at the code's migration, the
database and Redis answering), Prometheus metrics (requests by route, the halls' queues,
optionally behind a token) and ``onedoor check`` saying what to fix."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from queue_server import ops
from queue_server.app import create_app
from queue_server.clock import FixedClock
from queue_server.db.migrate import upgrade, upgrade_async
from queue_server.service.bus import Bus
from queue_server.settings import Settings
from tests.support import build_hall, call_as


async def test_live_ready_and_metrics(client: AsyncTestClient[Any], bus: Bus) -> None:
    assert (await client.get("/livez")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "database": "ok", "schema": "ok",
                            "redis": "not used"}  # fmt: skip
    hall = await build_hall(client, bus, clerks=1)
    for _ in range(3):
        issued = await client.post(
            f"/api/halls/{hall.hall_id}/tickets", json={"service_id": hall.services["A"]},
            headers=hall.kiosk,
        )  # fmt: skip
        assert issued.status_code == 201
    assert (await call_as(client, hall.manager, "GET", "/api/halls/999")).status_code in (403, 404)
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert (
        'onedoor_http_requests_total{method="POST",route="/api/halls/{hall_id}/tickets",'
        'status="201"} 3.0' in text
    )
    assert f'onedoor_waiting_tickets{{hall="{hall.hall_id}"}} 3.0' in text
    assert f'onedoor_longest_wait_seconds{{hall="{hall.hall_id}"}}' in text
    assert "onedoor_http_request_seconds_bucket" in text
    assert "onedoor_websocket_clients 0.0" in text


async def test_metrics_behind_a_token_and_readiness_of_an_old_schema(
    tmp_path: Path, clock: FixedClock
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.sqlite3'}"
    await upgrade_async(url, "0012")
    settings = Settings(var_dir=tmp_path / "var", database_url=url, scheduler=False,
                        metrics_token="s3cret-scrape")  # fmt: skip
    async with AsyncTestClient(create_app(settings, clock), base_url="http://t.local") as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        head = ops.code_head(url)
        assert ready.json()["schema"] == f"at 0012, the code needs {head}: run onedoor db upgrade"
        assert (await client.get("/livez")).status_code == 200
        assert (await client.get("/metrics")).status_code == 401
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = await client.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape"})
        assert right.status_code == 200 and "onedoor_http_requests_total" in right.text


def onedoor_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "queue_server.cli", "check"], env={**os.environ, **env},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_onedoor_check_says_what_to_fix(tmp_path: Path) -> None:
    env = {"ONEDOOR_VAR_DIR": str(tmp_path / "var"),
           "ONEDOOR_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'hall.sqlite3'}"}  # fmt: skip
    fresh = onedoor_check(env)
    assert fresh.returncode == 1, fresh.stdout + fresh.stderr
    assert "FAIL  schema" in fresh.stdout and "run onedoor db upgrade" in fresh.stdout
    upgrade(env["ONEDOOR_DATABASE_URL"])
    fine = onedoor_check(env)
    assert fine.returncode == 0, fine.stdout + fine.stderr
    assert "all checks passed" in fine.stdout
    away = onedoor_check({**env, "ONEDOOR_DATABASE_URL": "postgresql+asyncpg://x@127.0.0.1:1/x"})
    assert away.returncode == 1
    assert "FAIL  database" in away.stdout and "ONEDOOR_DATABASE_URL" in away.stdout
    no_redis = onedoor_check({**env, "ONEDOOR_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert no_redis.returncode == 1 and "FAIL  redis" in no_redis.stdout


def test_onedoor_check_warns_when_postgres_statistics_go_stale(
    tmp_path: Path, database_url: str
) -> None:
    """On PostgreSQL the check says whether autovacuum keeps the planner's statistics
    current — a warning, not a failure; SQLite has nothing to say."""
    env = {"ONEDOOR_VAR_DIR": str(tmp_path / "var"), "ONEDOOR_DATABASE_URL": database_url}
    checked = onedoor_check(env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "all checks passed" in checked.stdout
    lines = [line for line in checked.stdout.splitlines() if "database statistics" in line]
    if database_url.startswith("sqlite"):
        assert lines == []
        return
    setting = asyncio.run(_autovacuum(database_url))
    assert len(lines) == 1, checked.stdout
    if setting == "on":
        assert lines[0].startswith("ok    database statistics") and "autovacuum on" in lines[0]
    else:
        assert lines[0].startswith("warn  database statistics")
        assert "autovacuum is off" in lines[0] and "VACUUM ANALYZE" in lines[0]


async def _autovacuum(url: str) -> str:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return str(await connection.scalar(text("SHOW autovacuum")))
    finally:
        await engine.dispose()
