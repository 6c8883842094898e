"""Helpers for tests that drive the API: sign in, call as someone, build a hall."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from queue_server.service.bus import Bus
from queue_server.settings import Settings

ALL_DAY = {d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def anonymous(client: AsyncTestClient[Any]) -> AsyncTestClient[Any]:
    """Forget the client's cookies and default headers."""
    client.cookies.clear()
    client.headers.pop("X-CSRF-Token", None)
    client.headers.pop("Authorization", None)
    return client


@dataclass
class Staff:
    """A signed-in staff member's credentials for requests."""

    cookies: httpx.Cookies
    csrf: str
    user_id: int

    @property
    def headers(self) -> dict[str, str]:
        return {"X-CSRF-Token": self.csrf}


@dataclass
class DemoSetup:
    hall_id: int
    services: dict[str, int]
    counters: dict[int, int]
    kiosk_token: str
    board_token: str
    admin: Staff
    manager: Staff
    clerks: list[Staff]

    @property
    def kiosk(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.kiosk_token}"}


async def login(client: AsyncTestClient[Any], username: str, password: str) -> Staff:
    client.cookies.clear()
    answer = await client.post("/api/auth/login", json={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    cookies = httpx.Cookies(client.cookies)
    client.cookies.clear()
    body = answer.json()
    return Staff(cookies, body["csrf_token"], body["user"]["user_id"])


async def call_as(
    client: AsyncTestClient[Any], who: Staff, method: str, url: str, **kwargs: Any
) -> httpx.Response:
    """A request with ``who``'s session cookie and CSRF header (not the client's own)."""
    headers = {**who.headers, **kwargs.pop("headers", {})}
    request = client.build_request(method, url, headers=headers, cookies=who.cookies, **kwargs)
    return await client.send(request)


async def build_hall(
    client: AsyncTestClient[Any],
    bus: Bus,
    *,
    clerks: int = 2,
    counters: list[tuple[int, dict[str, str]]] | None = None,
) -> DemoSetup:
    """A hall open all day with matters A (social insurance), B (tax), C (enquiries),
    counters with the given profiles (matter letter → level), and that many clerks."""
    from queue_server.service import accounts

    await bus.run(accounts.create_user, "root", "root-password-1", accounts.Role.ADMIN, None)
    admin = await login(client, "root", "root-password-1")
    hall = await call_as(
        client,
        admin,
        "POST",
        "/api/halls",
        json={"name_zh": "测试大厅", "name_en": "Test hall", "opening_hours": ALL_DAY},
    )
    assert hall.status_code == 201, hall.text
    hall_id = hall.json()["id"]
    services: dict[str, int] = {}
    for prefix, zh, en, minutes in [
        ("A", "社会保险", "Social insurance", 10),
        ("B", "税务", "Tax", 6),
        ("C", "综合咨询", "Enquiries", 4),
    ]:
        answer = await call_as(
            client,
            admin,
            "POST",
            f"/api/halls/{hall_id}/services",
            json={"name_zh": zh, "name_en": en, "prefix": prefix, "typical_minutes": minutes},
        )
        assert answer.status_code == 201, answer.text
        services[prefix] = answer.json()["id"]
    counters = counters or [(1, {"A": "primary", "C": "secondary"}), (2, {"B": "primary"})]
    counter_ids: dict[int, int] = {}
    for number, profile in counters:
        answer = await call_as(
            client,
            admin,
            "POST",
            f"/api/halls/{hall_id}/counters",
            json={
                "number": number,
                "name": f"窗口 {number}",
                "profile": [
                    {"service_id": services[p], "level": level} for p, level in profile.items()
                ],
            },
        )
        assert answer.status_code == 201, answer.text
        counter_ids[number] = answer.json()["id"]
    tokens = {}
    for kind in ("kiosk", "board"):
        answer = await call_as(
            client,
            admin,
            "POST",
            f"/api/halls/{hall_id}/devices",
            json={"kind": kind, "name": kind},
        )
        assert answer.status_code == 201, answer.text
        tokens[kind] = answer.json()["token"]
    staff = []
    for role, username in [
        ("manager", "manager"),
        *[("clerk", f"clerk{i}") for i in range(clerks)],
    ]:
        answer = await call_as(
            client,
            admin,
            "POST",
            f"/api/halls/{hall_id}/staff",
            json={"username": username, "password": f"{username}-password", "role": role},
        )
        assert answer.status_code == 201, answer.text
        staff.append(await login(client, username, f"{username}-password"))
    return DemoSetup(
        hall_id, services, counter_ids, tokens["kiosk"], tokens["board"], admin, staff[0], staff[1:]
    )


async def hall_with_matter(bus: Bus) -> tuple[int, int]:
    """A hall open all day with one matter (A, social insurance), made through the service
    layer: the ids of both."""
    from queue_server.service import hall_config

    hall = await bus.run(
        hall_config.create_hall,
        {"name_zh": "大厅", "name_en": "Hall", "timezone": "Asia/Shanghai",
         "opening_hours": ALL_DAY, "priority_boosts": {}},
    )  # fmt: skip
    matter = await bus.run(
        hall_config.create_service,
        hall.id,
        {"name_zh": "社保", "name_en": "Social", "prefix": "A", "typical_minutes": 5},
    )
    return hall.id, matter.id


async def bookable_matter(
    bus: Bus,
    *,
    timezone: str = "Asia/Shanghai",
    hours: dict[str, list[list[str]]] | None = None,
    **rules: Any,
) -> tuple[int, int]:
    """A hall (open all day unless ``hours`` say otherwise) with one matter booked online
    under ``rules`` (30-minute slots and no walk-in share unless given): both ids."""
    hall_id, matter_id = await passport_hall(bus, timezone=timezone, hours=hours)
    await book_online(bus, hall_id, matter_id, **rules)
    return hall_id, matter_id


async def passport_hall(
    bus: Bus, *, timezone: str = "Asia/Shanghai", hours: dict[str, list[list[str]]] | None = None
) -> tuple[int, int]:
    """A hall (open all day unless ``hours`` say otherwise) with one matter, passports
    (10 minutes), not booked online yet: both ids."""
    from queue_server.service import hall_config

    hall = await bus.run(
        hall_config.create_hall,
        {"name_zh": "预约大厅", "name_en": "Booking hall", "timezone": timezone,
         "opening_hours": hours or ALL_DAY, "priority_boosts": {}},
    )  # fmt: skip
    matter = await bus.run(
        hall_config.create_service,
        hall.id,
        {"name_zh": "出入境", "name_en": "Passports", "prefix": "P", "typical_minutes": 10},
    )
    return hall.id, matter.id


async def book_online(bus: Bus, hall_id: int, matter_id: int, **rules: Any) -> None:
    """Take the matter online under ``rules`` (30-minute slots, no walk-in share unless
    given); the days in its window are released at once."""
    from booking import config

    await bus.run(
        config.set_booking_rules,
        hall_id,
        matter_id,
        {"slot_minutes": 30, "walk_in_share": 0, **rules},
    )


def remembering(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """``settings`` for an app that keeps what it can in memory. On PostgreSQL a process
    keeps nothing unless Redis would tell it of other processes' changes: give it one of
    the module's own (``private_redis``: no other test's halls on its channels)."""
    if settings.effective_database_url.startswith("sqlite"):
        return settings
    return dataclasses.replace(settings, redis_url=request.getfixturevalue("private_redis"))


async def issue(client: AsyncTestClient[Any], hall: DemoSetup, prefix: str) -> dict[str, Any]:
    """A walk-in's ticket for the matter ``prefix`` from the hall's kiosk (201)."""
    answer = await client.post(
        f"/api/halls/{hall.hall_id}/tickets",
        json={"service_id": hall.services[prefix]},
        headers=hall.kiosk,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]
