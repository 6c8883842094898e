"""The audit log through the API, on both databases: configuration and account changes are
logged with who, when, from where, before and after (secrets never shown); downloads,
outcome corrections and calls out of turn too; refused changes leave nothing; managers read
and download their hall's log, nobody can change it."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from playwright.async_api import expect

from queue_server.service.audit import MASK
from queue_server.service.bus import Bus
from tests.e2e.pages import axe_check, browser, demo, new_page
from tests.e2e.test_admin_pages import open_section
from tests.e2e.test_admin_pages import sign_in as admin_sign_in
from tests.e2e.test_counter_page import Staff
from tests.servers import Server
from tests.support import build_hall, call_as

__all__ = ["browser", "demo"]
Demo = tuple[Server, dict[str, str]]


async def test_changes_are_logged_with_who_what_before_and_after(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await build_hall(client, bus, clerks=2)
    base = f"/api/halls/{hall.hall_id}"
    manager, clerk = hall.manager, hall.clerks[0]
    a = hall.services["A"]

    renamed = await call_as(
        client, manager, "PATCH", f"{base}/services/{a}", json={"name_en": "Pensions"}
    )
    assert renamed.status_code == 200, renamed.text
    reset = await call_as(
        client, manager, "PATCH", f"{base}/staff/{clerk.user_id}",
        json={"password": "a-new-password-1"},
    )  # fmt: skip
    assert reset.status_code == 200, reset.text
    device = await call_as(
        client, manager, "POST", f"{base}/devices", json={"kind": "board", "name": "Lobby"}
    )
    assert device.status_code == 201, device.text
    # Refused (counter 1 exists; the insert failed): nothing changed, nothing is logged.
    refused = await call_as(
        client, manager, "POST", f"{base}/counters",
        json={"number": 1, "name": "Twice", "profile": []},
    )  # fmt: skip
    assert refused.status_code == 409, refused.text

    log = await call_as(client, manager, "GET", f"{base}/audit")
    assert log.status_code == 200, log.text
    entries = log.json()
    by_action: dict[str, Any] = {}
    for entry in entries:  # newest first: the newest of each action
        by_action.setdefault(entry["action"], entry)
    matter = by_action["matter changed"]
    assert (matter["before"], matter["after"]) == ({"name_en": "Social insurance"},
                                                   {"name_en": "Pensions"})  # fmt: skip
    assert matter["user_id"] == manager.user_id and matter["actor"] == "manager"
    assert matter["address"] and matter["target"] == f"matter {a} (A)"
    password = by_action["staff changed"]
    assert password["before"] == {"password_hash": MASK}
    assert password["after"] == {"password_hash": MASK}
    made = by_action["device created"]
    assert made["after"]["name"] == "Lobby" and made["after"]["token_hash"] == MASK
    assert device.json()["token"] not in str(entries)
    assert not [e for e in entries if "Twice" in str(e)], "a refused change is not logged"
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)

    only_staff = await call_as(client, manager, "GET", f"{base}/audit?action=staff")
    assert {e["action"] for e in only_staff.json()} == {"staff changed", "staff created"}


async def test_downloads_and_out_of_turn_calls_are_logged_and_the_log_cannot_be_changed(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await build_hall(client, bus, clerks=1, counters=[(1, {"A": "primary"})])
    base = f"/api/halls/{hall.hall_id}"
    manager, clerk = hall.manager, hall.clerks[0]
    for _ in range(2):
        issued = await client.post(
            f"{base}/tickets", json={"service_id": hall.services["A"]}, headers=hall.kiosk
        )
        assert issued.status_code == 201, issued.text
    second = issued.json()
    counter = f"/api/counters/{hall.counters[1]}"
    assert (await call_as(client, clerk, "POST", f"{counter}/open")).status_code == 200
    out_of_turn = await call_as(client, clerk, "POST", f"{counter}/call/{second['id']}")
    assert out_of_turn.status_code == 200, out_of_turn.text

    assert (await call_as(client, clerk, "POST", f"{counter}/start")).status_code == 200
    done = await call_as(client, clerk, "POST", f"{counter}/finish", json={"outcome": "done"})
    assert done.status_code == 200, done.text
    corrected = await call_as(
        client, manager, "POST", f"{base}/tickets/{second['id']}/outcome",
        json={"outcome": "visitor_left", "reason": "the visitor went before the end"},
    )  # fmt: skip
    assert corrected.status_code == 200, corrected.text
    exported = await call_as(client, manager, "GET", f"{base}/statistics/export?format=csv")
    assert exported.status_code == 200
    entries = (await call_as(client, manager, "GET", f"{base}/audit")).json()
    call = next(e for e in entries if e["action"] == "called out of turn")
    assert call["target"] == f"ticket {second['number']}" and call["user_id"] == clerk.user_id
    download = next(e for e in entries if e["action"] == "download")
    outcome = next(e for e in entries if e["action"] == "outcome corrected")
    assert (outcome["before"]["outcome"], outcome["after"]["outcome"]) == ("done", "visitor_left")
    assert outcome["after"]["reason"] == "the visitor went before the end"
    assert download["target"].endswith(".csv") and download["user_id"] == manager.user_id

    sheet = await call_as(client, manager, "GET", f"{base}/audit/export?format=csv")
    assert sheet.status_code == 200, sheet.text
    rows = list(csv.reader(io.StringIO(sheet.content.decode("utf-8-sig"))))
    assert rows[0][:5] == ["id", "at", "actor", "address", "action"]
    assert "called out of turn" in {r[4] for r in rows[1:]}

    for method in ("POST", "PATCH", "PUT", "DELETE"):
        changed = await call_as(client, manager, method, f"{base}/audit", json={})
        assert changed.status_code in (404, 405), (method, changed.status_code)
    assert (await call_as(client, clerk, "GET", f"{base}/audit")).status_code == 403
    client.cookies.clear()
    assert (await client.get(f"{base}/audit")).status_code == 401
    bad = await call_as(client, manager, "GET", f"{base}/audit?from=2026-03-09&to=2026-03-01")
    assert bad.status_code == 400 and bad.json()["detail"]


@pytest.mark.slow
async def test_a_manager_reads_the_audit_log_on_the_admin_page(browser: Any, demo: Demo) -> None:
    server, creds = demo
    async with Staff(server.base, "manager", creds["manager"]) as manager:
        renamed = await manager.http.patch("/api/halls/1/services/2", json={"name_en": "Hukou"})
        assert renamed.status_code == 200, renamed.text
    page = await new_page(browser, "desktop", "zh_CN")
    await admin_sign_in(page, server, creds["manager"], lang="zh_CN")
    section = await open_section(page, "audit")
    await expect(section.get_by_role("heading", name="审计日志", exact=True)).to_be_visible()
    row = section.locator("[data-audit-id]", has_text="matter changed").first
    await expect(row).to_contain_text("Household registration → Hukou")
    await expect(row).to_contain_text("manager")
    await axe_check(page, "admin: audit log, zh")
    async with page.expect_download() as started:
        await section.locator("#audit-csv").click()
    body = Path(await (await started.value).path()).read_text(encoding="utf-8-sig")
    assert "matter changed" in body and "Hukou" in body
