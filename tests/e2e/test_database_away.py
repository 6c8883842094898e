"""When PostgreSQL drops the server's connections (a restart, a failover), a request that
meets a dead connection is told to try again (503 with Retry-After, nothing changed), and
the next one is served on fresh connections: no 500, no hang."""

from __future__ import annotations

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.engine import make_url

from queue_server.app import create_app
from queue_server.clock import FixedClock
from queue_server.service.bus import Bus
from queue_server.settings import Settings
from tests.support import build_hall


async def _drop_connections(database_url: str) -> int:
    url = make_url(database_url)
    admin = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database="postgres", timeout=5
    )
    try:
        return int(
            await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                url.database,
            )
        )
    finally:
        await admin.close()


@pytest.fixture
def database_url(pg_url: str) -> str:
    """PostgreSQL only: SQLite has no connections to drop."""
    return pg_url


@pytest.mark.postgres
async def test_dropped_connections_answer_503_then_recover(
    settings: Settings, bus: Bus, clock: FixedClock
) -> None:
    app = create_app(settings, clock)
    async with AsyncTestClient(app, base_url="http://testserver.local") as client:
        hall = await build_hall(client, bus)
        service_id = hall.services["A"]
        body = {"service_id": service_id}
        path = f"/api/halls/{hall.hall_id}/tickets"
        first = await client.post(path, json=body, headers=hall.kiosk)
        assert first.status_code == 201, first.text
        assert await _drop_connections(settings.database_url) >= 1
        answers = [await client.post(path, json=body, headers=hall.kiosk) for _ in range(4)]
        statuses = [a.status_code for a in answers]
        assert 500 not in statuses, [a.text for a in answers]
        for answer in answers:
            if answer.status_code == 503:
                assert answer.headers["retry-after"] == "2"
                assert "try again" in answer.json()["detail"]
        assert statuses[-1] == 201
        # What was answered 503 changed nothing: the numbers are consecutive.
        numbers = [first.json()["number"]] + [
            a.json()["number"] for a in answers if a.status_code == 201
        ]
        assert numbers == [f"A{n:03d}" for n in range(1, len(numbers) + 1)]
