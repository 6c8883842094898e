"""A manager configures the hall through the API; bad input gets a 4xx that says what to fix."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from queue_server.service.bus import Bus
from tests.support import ALL_DAY, build_hall, call_as


async def test_manager_configures_matters_counters_and_staff(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await build_hall(client, bus, clerks=1)
    m = hall.manager
    base = f"/api/halls/{hall.hall_id}"
    matter = await call_as(
        client, m, "POST", f"{base}/services",
        json={"name_zh": "公积金", "name_en": "Housing fund", "prefix": "H", "typical_minutes": 12,
              "documents": ["身份证 ID card"]},
    )  # fmt: skip
    assert matter.status_code == 201
    hid = matter.json()["id"]
    renamed = await call_as(
        client, m, "PATCH", f"{base}/services/{hid}", json={"typical_minutes": 9}
    )
    assert renamed.json()["typical_minutes"] == 9
    assert renamed.json()["name_en"] == "Housing fund", "PATCH changes only what it names"

    counter = await call_as(
        client, m, "POST", f"{base}/counters",
        json={"number": 9, "name": "综合窗口", "profile": [
            {"service_id": hid, "level": "primary"}, {"service_id": hall.services["A"], "level": "secondary"}]},
    )  # fmt: skip
    assert counter.status_code == 201
    assert counter.json()["profile"] == sorted(
        [
            {"service_id": hid, "level": "primary"},
            {"service_id": hall.services["A"], "level": "secondary"},
        ],
        key=lambda e: e["service_id"],
    )
    cid = counter.json()["id"]
    reprofiled = await call_as(
        client, m, "PATCH", f"{base}/counters/{cid}", json={"profile": [{"service_id": hid}]}
    )
    assert reprofiled.json()["profile"] == [{"service_id": hid, "level": "primary"}]
    listed = await call_as(client, m, "GET", f"{base}/counters")
    assert [c["number"] for c in listed.json()] == [1, 2, 9]

    # Retiring a matter takes it off the kiosk.
    await call_as(client, m, "PATCH", f"{base}/services/{hid}", json={"active": False})
    public = (await client.get(f"/api/public/halls/{hall.hall_id}")).json()
    assert "Housing fund" not in [s["name_en"] for s in public["services"]]
    refused = await client.post(f"{base}/tickets", json={"service_id": hid}, headers=hall.kiosk)
    assert refused.status_code == 409
    assert "inactive" in refused.json()["detail"]

    clerk = await call_as(
        client, m, "POST", f"{base}/staff",
        json={"username": "wang.li", "password": "a-long-password", "role": "clerk", "display_name": "王丽"},
    )  # fmt: skip
    assert clerk.status_code == 201
    assert "password" not in clerk.json() and "password_hash" not in clerk.json()
    staff = (await call_as(client, m, "GET", f"{base}/staff")).json()
    assert "王丽" in [s["display_name"] for s in staff]


async def test_bad_configuration_is_refused_with_reasons(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await build_hall(client, bus, clerks=1)
    m, a = hall.manager, hall.admin
    base = f"/api/halls/{hall.hall_id}"

    async def refused(
        method: str, url: str, body: dict[str, Any], status: int, *needles: str
    ) -> None:
        answer = await call_as(client, a if url == "/api/halls" else m, method, url, json=body)
        assert answer.status_code == status, (url, body, answer.text)
        text = str(answer.json())
        for needle in needles:
            assert needle in text, (needle, text)

    await refused(
        "POST",
        f"{base}/services",
        {"name_zh": "x", "name_en": "x", "prefix": "a1", "typical_minutes": 5},
        400,
        "prefix",
    )
    await refused(
        "POST",
        f"{base}/services",
        {"name_zh": "x", "name_en": "x", "prefix": "Q", "typical_minutes": 0},
        400,
        "typical_minutes",
    )
    await refused(
        "POST",
        f"{base}/services",
        {"name_zh": "", "name_en": "x", "prefix": "Q", "typical_minutes": 5},
        400,
        "name_zh",
    )
    await refused(
        "POST",
        f"{base}/services",
        {"name_zh": "x", "name_en": "x", "prefix": "Q", "typical_minutes": 5, "colour": "red"},
        400,
        "colour",
    )
    await refused(
        "PATCH", f"{base}/services/9999", {"typical_minutes": 5}, 404, "no matter with id 9999"
    )
    await refused(
        "POST",
        f"{base}/counters",
        {"number": 1, "name": "dup"},
        409,
        "already has a counter number 1",
    )
    await refused(
        "POST",
        f"{base}/counters",
        {"number": 5, "name": "x", "profile": [{"service_id": 9999}]},
        400,
        "no matter with id 9999",
    )
    await refused(
        "POST",
        f"{base}/counters",
        {
            "number": 5,
            "name": "x",
            "profile": [{"service_id": hall.services["A"], "level": "tertiary"}],
        },
        400,
        "level",
    )
    await refused("PATCH", f"{base}", {"timezone": "Mars/Olympus"}, 400, "not a known timezone")
    await refused(
        "PATCH",
        f"{base}",
        {"opening_hours": {"monday": [["08:00", "12:00"]]}},
        400,
        "not a weekday",
    )
    await refused(
        "PATCH",
        f"{base}",
        {"opening_hours": {"mon": [["08:00", "12:00"], ["11:00", "13:00"]]}},
        400,
        "overlap",
    )
    await refused(
        "PATCH", f"{base}", {"opening_hours": {"mon": [["25:00", "26:00"]]}}, 400, "HH:MM"
    )
    await refused("PATCH", f"{base}", {"priority_boosts": {"none": 5}}, 400, "reserved")
    await refused(
        "POST",
        f"{base}/staff",
        {"username": "x", "password": "long-enough-pw", "role": "clerk"},
        400,
        "username",
    )
    await refused(
        "POST",
        f"{base}/staff",
        {"username": "shorty", "password": "short", "role": "clerk"},
        400,
        "password",
    )
    await refused(
        "POST",
        f"{base}/staff",
        {"username": "clerk0", "password": "long-enough-pw", "role": "clerk"},
        409,
        "taken",
    )
    await refused("POST", f"{base}/devices", {"kind": "toaster", "name": "t"}, 400, "kind")
    await refused(
        "POST",
        "/api/halls",
        {"name_zh": "x", "name_en": "x", "opening_hours": ALL_DAY, "timezone": "Nowhere"},
        400,
        "timezone",
    )

    # The refused requests left nothing behind.
    counters = (await call_as(client, m, "GET", f"{base}/counters")).json()
    assert [c["number"] for c in counters] == [1, 2]
    services = (await call_as(client, m, "GET", f"{base}/services")).json()
    assert [s["prefix"] for s in services] == ["A", "B", "C"]
    halls = (await call_as(client, a, "GET", "/api/halls")).json()
    assert len(halls) == 1


async def test_custom_priority_class(client: AsyncTestClient[Any], bus: Bus) -> None:
    hall = await build_hall(client, bus, clerks=1)
    patched = await call_as(
        client, hall.manager, "PATCH", f"/api/halls/{hall.hall_id}",
        json={"priority_boosts": {"elderly": 15, "veteran": 30}},
    )  # fmt: skip
    assert patched.json()["priority_boosts"] == {"elderly": 15, "veteran": 30}
    public = (await client.get(f"/api/public/halls/{hall.hall_id}")).json()
    assert public["priority_classes"] == ["none", "elderly", "veteran"]
    issued = await client.post(
        f"/api/halls/{hall.hall_id}/tickets",
        json={"service_id": hall.services["A"], "priority": "veteran"},
        headers=hall.kiosk,
    )
    assert issued.json()["priority"] == "veteran"
    dropped = await client.post(
        f"/api/halls/{hall.hall_id}/tickets",
        json={"service_id": hall.services["A"], "priority": "pregnancy"},
        headers=hall.kiosk,
    )
    assert dropped.status_code == 400


async def test_booking_places_follow_the_counters_a_manager_adds(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await build_hall(client, bus, clerks=1, counters=[(2, {"B": "primary"})])
    m = hall.manager
    base = f"/api/halls/{hall.hall_id}"
    matter = hall.services["A"]  # 10 minutes a visit
    rules = await call_as(
        client, m, "PUT", f"{base}/services/{matter}/booking",
        json={"slot_minutes": 30, "walk_in_share": 0, "window_days": 1},
    )  # fmt: skip
    assert rules.status_code == 200, rules.text

    async def places() -> set[int]:
        slots = await client.get(f"/api/public/halls/{hall.hall_id}/services/{matter}/slots")
        assert slots.status_code == 200, slots.text
        return {s["places"] for day in slots.json()["days"] for s in day["slots"]}

    assert await places() == {0}, "no counter serves the matter yet"
    added = await call_as(
        client, m, "POST", f"{base}/counters",
        json={"number": 1, "name": "社保窗口", "profile": [{"service_id": matter, "level": "primary"}]},
    )  # fmt: skip
    assert added.status_code == 201, added.text
    assert await places() == {3}, "one counter, 30-minute slots, 10 minutes each"
    shared = await call_as(
        client, m, "PATCH", f"{base}/counters/{added.json()['id']}",
        json={"profile": [{"service_id": matter, "level": "primary"},
                          {"service_id": hall.services["B"], "level": "primary"}]},
    )  # fmt: skip
    assert shared.status_code == 200, shared.text
    assert await places() == {1}, "half the counter's time: 1.5 visitors a slot"
