"""Who is calling, from memory: principals are kept per process, and a change to an account
or a device counts at the next request (the process's own change at once; other
processes': tests/e2e/test_memory_across_processes.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from queue_server.app import create_app
from queue_server.clock import FixedClock
from queue_server.db.engine import create_engine, session_factory
from queue_server.db.tables import UserRow
from queue_server.realtime.invalidation import Invalidations
from queue_server.service import accounts
from queue_server.service.accounts import PrincipalCache
from queue_server.service.bus import Bus
from queue_server.service.unit_of_work import UnitOfWork
from queue_server.settings import Settings
from tests.servers import PrivateRedis
from tests.support import DemoSetup, build_hall, call_as, login, remembering


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return remembering(settings, request)


def board(hall: DemoSetup) -> dict[str, str]:
    return {"Authorization": f"Bearer {hall.board_token}"}


def principals_of(client: AsyncTestClient[Any]) -> PrincipalCache:
    return client.app.state.principals  # type: ignore[no-any-return]


async def test_a_revoked_device_is_refused_at_once_and_heartbeats_keep_the_cache(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await build_hall(client, bus)
    principals = principals_of(client)
    assert (await client.get("/api/auth/me", headers=board(hall))).status_code == 200
    key = accounts.device_key(accounts.token_digest(hall.board_token))
    assert principals.get(key) is not None
    generation = principals.generation
    beat = await client.post("/api/devices/heartbeat", headers=board(hall))
    assert beat.status_code == 200, beat.text
    assert principals.generation == generation, "a heartbeat changes nobody's principal"
    assert principals.get(key) is not None
    devices = await call_as(client, hall.admin, "GET", f"/api/halls/{hall.hall_id}/devices")
    board_id = next(d["id"] for d in devices.json() if d["kind"] == "board")
    revoked = await call_as(
        client, hall.admin, "DELETE", f"/api/halls/{hall.hall_id}/devices/{board_id}"
    )
    assert revoked.status_code == 200, revoked.text
    refused = await client.get("/api/auth/me", headers=board(hall))
    assert refused.status_code == 401
    assert principals.get(key) is None


async def test_deactivation_role_and_password_changes_count_at_the_next_request(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await build_hall(client, bus)
    clerk, principals = hall.clerks[0], principals_of(client)
    staff_list = f"/api/halls/{hall.hall_id}/staff"
    assert (await call_as(client, clerk, "GET", staff_list)).status_code == 403
    assert principals.get(accounts.user_key(clerk.user_id)) is not None

    async def promote(uow: UnitOfWork) -> None:  # no route changes a role: the database does
        row = await uow.session.get(UserRow, clerk.user_id)
        assert row is not None
        row.role = "manager"
        await uow.commit()

    await bus.run(promote)
    assert (await call_as(client, clerk, "GET", staff_list)).status_code == 200
    me = (await call_as(client, clerk, "GET", "/api/auth/me")).json()
    assert me["user"]["role"] == "manager"

    reset = await call_as(
        client, hall.admin, "PATCH", f"{staff_list}/{clerk.user_id}",
        json={"password": "a-new-password-1"},
    )  # fmt: skip
    assert reset.status_code == 200, reset.text
    assert principals.get(accounts.user_key(clerk.user_id)) is None, "read again after a reset"

    # A reset ends the sessions the clerk had: signing in with the new password works.
    assert (await call_as(client, clerk, "GET", "/api/auth/me")).status_code == 401
    clerk = await login(client, "clerk0", "a-new-password-1")
    assert (await call_as(client, clerk, "GET", "/api/auth/me")).status_code == 200
    gone = await call_as(
        client, hall.admin, "PATCH", f"{staff_list}/{clerk.user_id}", json={"active": False}
    )
    assert gone.status_code == 200, gone.text
    assert (await call_as(client, clerk, "GET", "/api/auth/me")).status_code == 401


def test_the_cache_is_bounded_and_keeps_nothing_read_across_a_change() -> None:
    size = 2
    cache = PrincipalCache(size=size, ttl=30.0)
    someone = accounts.Principal(role="board", hall_id=1, device_id=1)
    for n in range(5):
        cache.put(f"device:{n}", someone, cache.generation)
    assert len(cache) == size and cache.get("device:4") is someone
    assert cache.get("device:0") is None, "the oldest went first"
    before = cache.generation
    cache.forget({"device:4"})
    cache.put("device:4", someone, before)  # read before the change committed
    assert cache.get("device:4") is None
    cache.put("device:4", someone, cache.generation)
    assert cache.get("device:4") is someone
    cache.forget({accounts.EVERYONE})
    assert len(cache) == 0
    brief = PrincipalCache(ttl=0.0)
    brief.put("user:1", someone, brief.generation)
    assert brief.get("user:1") is None, "past its time limit"


@pytest.mark.postgres
@pytest.mark.redis
async def test_with_redis_away_a_change_still_bites_here_and_answers_do_not_wait_for_it(
    pg_url: str, tmp_path: Path, clock: FixedClock
) -> None:
    broker = PrivateRedis().start()
    settings = Settings(
        var_dir=tmp_path / "var", database_url=pg_url, redis_url=broker.url, scheduler=False
    )
    engine = create_engine(pg_url)
    try:
        async with AsyncTestClient(
            create_app(settings, clock), base_url="http://t.local"
        ) as client:
            hall = await build_hall(client, Bus(session_factory(engine), clock))
            clerk = hall.clerks[0]
            assert (await call_as(client, clerk, "GET", "/api/auth/me")).status_code == 200
            broker.stop()
            gone = await call_as(
                client, hall.admin, "PATCH", f"/api/halls/{hall.hall_id}/staff/{clerk.user_id}",
                json={"active": False},
            )  # fmt: skip
            assert gone.status_code == 200, gone.text
            assert (await call_as(client, clerk, "GET", "/api/auth/me")).status_code == 401
            invalidations: Invalidations = client.app.state.invalidations
            # The publish failed and is tried again (other processes forget everything when
            # they reconnect anyway), but no answer waits for those retries.
            assert not invalidations.pending
    finally:
        broker.stop()
        await engine.dispose()
