"""A manager reads the hall's last kept simulation and starts a new one through the API: a
real ``onedoor simulate --from-hall`` process, on the same database, whose progress the
status endpoint follows to the end (done, or failed with the command's reason)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from litestar.testing import AsyncTestClient

from queue_server.clock import FixedClock
from queue_server.service.bus import Bus
from queue_server.simulation.report import as_json
from queue_server.simulation.runner import run
from queue_server.simulation.saved import save_run
from queue_server.simulation.scenario import load_scenario
from tests.support import DemoSetup, Staff, build_hall, call_as

SHANGHAI = ZoneInfo("Asia/Shanghai")
RUN_SECONDS = 180
"""A run on a busy machine: interpreter start, a few simulated days, the save."""


@pytest.fixture
def clock() -> FixedClock:
    """Yesterday 10:00 in the hall's time, on the real calendar: the simulation process
    measures the days before its own (real) today, so the history made here counts."""
    yesterday = datetime.now(SHANGHAI).date() - timedelta(days=1)
    return FixedClock(
        datetime.combine(yesterday, datetime.min.time(), SHANGHAI) + timedelta(hours=10)
    )


def url(hall_id: int, path: str = "") -> str:
    return f"/api/halls/{hall_id}/simulation{path}"


async def wait_for(
    client: AsyncTestClient[Any], who: Staff, hall_id: int, *states: str
) -> dict[str, Any]:
    """The hall's run status, once it is in one of ``states``."""
    deadline = time.monotonic() + RUN_SECONDS
    while True:
        answer = await call_as(client, who, "GET", url(hall_id, "/status"))
        assert answer.status_code == 200, answer.text
        status: dict[str, Any] = answer.json()
        if status["state"] in states:
            return status
        assert time.monotonic() < deadline, f"still {status} after {RUN_SECONDS} s"
        await asyncio.sleep(0.1)


async def serve_walk_ins(
    client: AsyncTestClient[Any], hall: DemoSetup, clock: FixedClock, count: int
) -> None:
    """``count`` walk-ins for social insurance (A) a few minutes apart, each called,
    served for 6 minutes and finished at counter 1 (a day's history, through the API)."""
    for _ in range(count):
        issued = await client.post(
            f"/api/halls/{hall.hall_id}/tickets",
            json={"service_id": hall.services["A"]},
            headers=hall.kiosk,
        )
        assert issued.status_code == 201, issued.text
        clock.advance(minutes=3)
    clerk, counter = hall.clerks[0], f"/api/counters/{hall.counters[1]}"
    assert (await call_as(client, clerk, "POST", f"{counter}/open")).status_code == 200
    for _ in range(count):
        called = await call_as(client, clerk, "POST", f"{counter}/call-next")
        assert called.json()["ticket"] is not None, called.text
        clock.advance(minutes=1)
        assert (await call_as(client, clerk, "POST", f"{counter}/start")).status_code == 200
        clock.advance(minutes=6)
        finished = await call_as(
            client, clerk, "POST", f"{counter}/finish", json={"outcome": "done"}
        )
        assert finished.status_code == 200, finished.text


async def test_the_last_kept_simulation_is_read_back_by_its_managers_only(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await build_hall(client, bus, clerks=1)
    m = hall.manager

    none = await call_as(client, m, "GET", url(hall.hall_id))
    assert none.status_code == 404
    detail = none.json()["detail"]
    assert f"onedoor simulate --from-hall {hall.hall_id} --save" in detail
    assert "Run simulation on the manager page" in detail

    result = as_json(run(load_scenario("standard-075"), ["v2", "fifo"], seeds=[1, 2]))
    kept = await bus.run(save_run, hall.hall_id, result)
    answer = await call_as(client, m, "GET", url(hall.hall_id))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["id"] == kept
    assert body["scenario"]["name"] == "standard day, load 0.75"
    assert body["seeds"] == [1, 2]
    assert body["goals"]["walkin_p90_vs_fifo"]["goal"] == "≤ 1.25"
    assert list(body["policies"]) == ["v2", "fifo"]
    assert body["policies"]["v2"]["hourly"][0].keys() == {
        "hour",
        "walk_ins",
        "mean_wait",
        "p90_wait",
    }
    assert body["figure_formats"]["booked_on_time"] == {"percent": True, "digits": 1}
    assert body["history"] is None  # a scenario file, not a hall's history
    assert datetime.fromisoformat(body["created_at"]).tzinfo is not None

    # The page's chart library is served from the package itself, with its licence.
    for name, kind in (("uPlot.esm.js", "javascript"), ("uPlot.min.css", "css"), ("LICENSE", "")):
        served = await client.get(f"/static/vendor/uplot/{name}")
        assert served.status_code == 200, name
        assert kind in served.headers["content-type"], (name, served.headers["content-type"])
    assert (
        "export { uPlot as default }"
        in (await client.get("/static/vendor/uplot/uPlot.esm.js")).text
    )

    # The admin reads it too, a clerk may not; an unknown hall is 404 (other halls' managers:
    # test_access).
    assert (await call_as(client, hall.admin, "GET", url(hall.hall_id))).status_code == 200
    clerk = hall.clerks[0]
    for method, path in (("GET", ""), ("POST", ""), ("GET", "/status")):
        refused = await call_as(client, clerk, method, url(hall.hall_id, path))
        assert refused.status_code == 403, (method, path, refused.text)
        assert "may not do this" in refused.json()["detail"]
    for method, path in (("GET", ""), ("POST", ""), ("GET", "/status")):
        unknown = await call_as(client, hall.admin, method, url(9999, path))
        assert unknown.status_code == 404, (method, path, unknown.text)
        assert "no hall with id 9999" in unknown.json()["detail"]


async def test_a_run_started_here_ends_done_and_its_result_is_the_last_kept(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    hall = await build_hall(client, bus, clerks=1)
    m = hall.manager
    await serve_walk_ins(client, hall, clock, 6)
    idle = await call_as(client, m, "GET", url(hall.hall_id, "/status"))
    assert idle.json() == {
        "state": "idle", "detail": "", "started_at": None, "finished_at": None, "days": None,
    }  # fmt: skip

    started = await call_as(client, m, "POST", url(hall.hall_id), json={"days": 7})
    assert started.status_code == 202, started.text
    body = started.json()
    assert body["state"] == "running"
    assert body["days"] == 7
    assert body["detail"] == f"onedoor simulate --from-hall {hall.hall_id} --days 7 --save --quiet"
    assert datetime.fromisoformat(body["started_at"]) == clock.now()

    # One run per hall at a time (the process has barely started).
    again = await call_as(client, m, "POST", url(hall.hall_id))
    assert again.status_code == 409, again.text
    assert "already running" in again.json()["detail"]
    assert again.json()["extra"]["state"] == "running"

    done = await wait_for(client, m, hall.hall_id, "done", "failed")
    assert done["state"] == "done", done
    assert done["detail"] == f"kept for hall {hall.hall_id}'s manager pages"
    assert done["finished_at"] is not None and done["days"] == 7
    kept = await call_as(client, m, "GET", url(hall.hall_id))
    assert kept.status_code == 200, kept.text
    result = kept.json()
    assert result["scenario"]["name"] == f"hall {hall.hall_id} history (7 days)"
    assert result["history"] == {"hall_id": hall.hall_id, "days": 7}
    assert result["scenario"]["matters"] == ["A", "B", "C"]
    assert set(result["policies"]) == {"v2", "fifo"}
    # Made just now on the real clock (the process's own), after the run was started.
    made = datetime.fromisoformat(result["created_at"])
    assert abs(datetime.now(UTC) - made) < timedelta(seconds=RUN_SECONDS)

    # Done: the next run may start (and ends done too: the body is optional).
    second = await call_as(client, m, "POST", url(hall.hall_id))
    assert second.status_code == 202, second.text
    assert second.json()["days"] == 28
    assert (await wait_for(client, m, hall.hall_id, "done", "failed"))["state"] == "done"
    newer = (await call_as(client, m, "GET", url(hall.hall_id))).json()
    assert newer["id"] != result["id"]
    assert newer["history"] == {"hall_id": hall.hall_id, "days": 28}


async def test_a_run_on_a_hall_without_history_fails_with_the_reason(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await build_hall(client, bus, clerks=1)
    m = hall.manager
    started = await call_as(client, m, "POST", url(hall.hall_id), json={})
    assert started.status_code == 202, started.text
    failed = await wait_for(client, m, hall.hall_id, "done", "failed")
    assert failed["state"] == "failed", failed
    assert failed["detail"] == (
        f"history: hall {hall.hall_id} has no served tickets in the last 28 days; "
        "run the hall for a while or use a scenario file"
    )
    assert failed["finished_at"] is not None
    # Nothing was kept, and a failed run does not block the next one.
    assert (await call_as(client, m, "GET", url(hall.hall_id))).status_code == 404
    retry = await call_as(client, m, "POST", url(hall.hall_id), json={"days": 3})
    assert retry.status_code == 202, retry.text
    again = await wait_for(client, m, hall.hall_id, "done", "failed")
    assert again["state"] == "failed" and "in the last 3 days" in again["detail"]


@pytest.mark.parametrize(
    "body", [{"days": 0}, {"days": 366}, {"days": "many"}, {"days": 2.5}, {"weeks": 4}]
)
async def test_a_bad_body_is_refused_naming_the_field_and_starts_nothing(
    client: AsyncTestClient[Any], bus: Bus, body: dict[str, Any]
) -> None:
    hall = await build_hall(client, bus, clerks=1)
    refused = await call_as(client, hall.manager, "POST", url(hall.hall_id), json=body)
    assert refused.status_code == 400, refused.text
    assert next(iter(body)) in str(refused.json())
    status = await call_as(client, hall.manager, "GET", url(hall.hall_id, "/status"))
    assert status.json()["state"] == "idle"
