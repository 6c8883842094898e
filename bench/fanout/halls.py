"""Halls, set up over the API: devices, a matter, and a clerk with an open counter."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..hall import ALL_DAY, midday_zone
from ..server import ADMIN_PASSWORD, ADMIN_USERNAME
from .options import HTTP_LIMITS, HTTP_TIMEOUT, BenchError

CLERK_PASSWORD = "fanout-clerk-password"

SETUP_CONCURRENCY = 8


@dataclass
class Hall:
    """A hall ready for the benchmark: its devices' tokens and its clerk's open counter."""

    hall_id: int
    service_id: int
    counter_id: int
    kiosk_token: str
    board_token: str
    clerk: httpx.AsyncClient
    csrf: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


async def post(client: httpx.AsyncClient, path: str, body: Any = None, csrf: str = "") -> Any:
    """POST JSON and return the answer's JSON; BenchError unless 2xx (setup only)."""
    response = await client.post(path, json=body, headers={"X-CSRF-Token": csrf} if csrf else {})
    if not response.is_success:
        raise BenchError(f"POST {path} answered {response.status_code}: {response.text[:300]}")
    return response.json()


async def login(client: httpx.AsyncClient, username: str, password: str) -> str:
    """Sign ``client`` in (its cookie jar keeps the session); return the CSRF token."""
    answer = await post(client, "/api/auth/login", {"username": username, "password": password})
    return str(answer["csrf_token"])


async def build_hall(base_url: str, admin: httpx.AsyncClient, csrf: str, index: int) -> Hall:
    """One hall open around the clock: matter A, counter 1 opened by its clerk, two devices."""
    hall = await post(
        admin,
        "/api/halls",
        {
            "name_zh": f"扇出大厅{index}",
            "name_en": f"Fan-out hall {index}",
            "opening_hours": ALL_DAY,
            "timezone": midday_zone(),  # the day close and midnight outside the run
        },
        csrf,
    )
    hall_id = int(hall["id"])
    service = await post(
        admin,
        f"/api/halls/{hall_id}/services",
        {"name_zh": "社会保险", "name_en": "Social insurance", "prefix": "A", "typical_minutes": 5},
        csrf,
    )
    profile = [{"service_id": service["id"], "level": "primary"}]
    counter = await post(
        admin,
        f"/api/halls/{hall_id}/counters",
        {"number": 1, "name": "c1", "profile": profile},
        csrf,
    )
    devices = f"/api/halls/{hall_id}/devices"
    kiosk = await post(admin, devices, {"kind": "kiosk", "name": "kiosk"}, csrf)
    board = await post(admin, devices, {"kind": "board", "name": "board"}, csrf)
    username = f"clerk{index:03d}"
    staff = {"username": username, "password": CLERK_PASSWORD, "role": "clerk"}
    await post(admin, f"/api/halls/{hall_id}/staff", staff, csrf)
    clerk = httpx.AsyncClient(base_url=base_url, timeout=HTTP_TIMEOUT, limits=HTTP_LIMITS)
    try:
        clerk_csrf = await login(clerk, username, CLERK_PASSWORD)
        await post(clerk, f"/api/counters/{counter['id']}/open", None, clerk_csrf)
    except BaseException:
        await clerk.aclose()
        raise
    return Hall(
        hall_id,
        int(service["id"]),
        int(counter["id"]),
        str(kiosk["token"]),
        str(board["token"]),
        clerk,
        clerk_csrf,
    )


async def build_halls(base_url: str, count: int) -> list[Hall]:
    """``count`` halls, built a few at a time; the clerks' clients stay open for the calls."""
    limit = asyncio.Semaphore(SETUP_CONCURRENCY)
    async with httpx.AsyncClient(
        base_url=base_url, timeout=HTTP_TIMEOUT, limits=HTTP_LIMITS
    ) as admin:
        csrf = await login(admin, ADMIN_USERNAME, ADMIN_PASSWORD)

        async def one(index: int) -> Hall:
            async with limit:
                return await build_hall(base_url, admin, csrf, index)

        results = await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)
    halls = [r for r in results if isinstance(r, Hall)]
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        await asyncio.gather(*(h.clerk.aclose() for h in halls))
        raise failures[0]
    return halls


async def hall_seqs(base_url: str, halls: list[Hall]) -> dict[int, int]:
    """Each hall's current sequence number, from its snapshot (the database's truth)."""
    async with httpx.AsyncClient(
        base_url=base_url, timeout=HTTP_TIMEOUT, limits=HTTP_LIMITS
    ) as client:

        async def seq(hall: Hall) -> tuple[int, int]:
            answer = await client.get(
                f"/api/halls/{hall.hall_id}/snapshot",
                headers={"Authorization": f"Bearer {hall.board_token}"},
            )
            answer.raise_for_status()
            return hall.hall_id, int(answer.json()["seq"])

        return dict(await asyncio.gather(*(seq(h) for h in halls)))
