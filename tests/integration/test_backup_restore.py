"""The backup and restore of docs/deployment.md, followed here on PostgreSQL: a hall with
tickets is dumped with ``pg_dump -Fc``, restored with ``pg_restore`` into a new database,
and a server on the restored database is ready and carries on — the next ticket follows
the last one, the queue is as it was."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import make_url

from queue_server.app import create_app
from queue_server.clock import FixedClock
from queue_server.db.engine import create_engine, session_factory
from queue_server.service.bus import Bus
from queue_server.settings import Settings
from tests.conftest import _admin_execute, _plain_dsn
from tests.support import build_hall

pytestmark = pytest.mark.postgres


def run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{' '.join(command[:2])}: {done.stderr}"


async def test_a_dump_restored_into_a_new_database_carries_on(
    pg_url: str, tmp_path: Path, clock: FixedClock
) -> None:
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        pytest.skip("pg_dump and pg_restore are needed (Debian: postgresql-client)")
    settings = Settings(var_dir=tmp_path / "var", database_url=pg_url, scheduler=False)
    engine = create_engine(pg_url)
    try:
        async with AsyncTestClient(create_app(settings, clock), base_url="http://a.local") as a:
            hall = await build_hall(a, Bus(session_factory(engine), clock), clerks=1)
            numbers = []
            for _ in range(3):
                made = await a.post(
                    f"/api/halls/{hall.hall_id}/tickets", json={"service_id": hall.services["A"]},
                    headers=hall.kiosk,
                )  # fmt: skip
                numbers.append(made.json()["number"])
    finally:
        await engine.dispose()
    assert numbers == ["A001", "A002", "A003"]

    dump = tmp_path / "onedoor.dump"
    run("pg_dump", "--format=custom", f"--file={dump}", _plain_dsn(pg_url))
    name = f"onedoor_restore_{uuid.uuid4().hex[:8]}"
    await _admin_execute(f'CREATE DATABASE "{name}"')
    restored = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    try:
        run("pg_restore", "--no-owner", f"--dbname={_plain_dsn(restored)}", str(dump))
        again = Settings(var_dir=tmp_path / "var", database_url=restored, scheduler=False)
        async with AsyncTestClient(create_app(again, clock), base_url="http://b.local") as b:
            ready = await b.get("/readyz")
            assert ready.status_code == 200, ready.text
            nxt = await b.post(
                f"/api/halls/{hall.hall_id}/tickets", json={"service_id": hall.services["A"]},
                headers=hall.kiosk,
            )  # fmt: skip
            assert nxt.status_code == 201, nxt.text
            assert nxt.json()["number"] == "A004"
            snapshot: Any = (
                await b.get(f"/api/halls/{hall.hall_id}/snapshot", headers=hall.kiosk)
            ).json()
            waiting = {w["prefix"]: w["waiting"] for w in snapshot["waiting"]}
            assert waiting["A"] == 4
    finally:
        await _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
