"""Set up the benchmark hall over the API: matters, counters with one clerk each, a kiosk."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_DAY = {day: [["00:00", "24:00"]] for day in DAYS}
# (name_zh, name_en, prefix, typical minutes)
MATTERS = [
    ("社会保险", "Social insurance", "A", 8),
    ("户籍办理", "Household registration", "B", 12),
    ("税务办理", "Tax", "C", 10),
]
CLERK_PASSWORD = "bench-clerk-password"
TIMEOUT = httpx.Timeout(60.0)
MIDDAY_MINUTES = 12 * 60


def local_minutes(now: datetime, timezone: str) -> int:
    """Minutes past midnight on ``timezone``'s clock at ``now``."""
    local = now.astimezone(ZoneInfo(timezone))
    return local.hour * 60 + local.minute


def nearest_zone(now: datetime, minutes: int) -> str:
    """The whole-hour ``Etc/GMT`` zone (or UTC) whose clock reads nearest ``minutes`` past
    midnight at ``now``. Etc/GMT-14 is UTC+14, Etc/GMT+12 is UTC-12 (the POSIX sign)."""
    zones = ["UTC" if hours == 0 else f"Etc/GMT{-hours:+d}" for hours in range(-12, 15)]
    return min(zones, key=lambda tz: abs(local_minutes(now, tz) - minutes))


def midday_zone(now: datetime | None = None) -> str:
    """The bench hall's timezone: one where it is about noon when the run starts, so that
    neither the hall's day close (23:30 by default), which records everyone still waiting
    as gone home, nor the business day's end at midnight falls within the run. In
    Asia/Shanghai a run started at 15:30 UTC found nobody waiting by its call phases."""
    return nearest_zone(now or datetime.now(UTC), MIDDAY_MINUTES)


class SetupError(RuntimeError):
    """The server refused a setup step; the message names the request and its answer."""


@dataclass(frozen=True)
class Clerk:
    username: str
    counter_id: int


@dataclass(frozen=True)
class Hall:
    hall_id: int
    service_ids: list[int]
    kiosk_token: str
    clerks: list[Clerk]


@dataclass
class ClerkSession:
    """A signed-in clerk at their open counter; ``client`` carries the session cookie."""

    clerk: Clerk
    client: httpx.AsyncClient
    csrf_token: str


async def post(client: httpx.AsyncClient, path: str, body: Any, csrf: str | None = None) -> Any:
    """POST ``body`` as JSON and return the answer's JSON; SetupError unless 2xx."""
    headers = {"X-CSRF-Token": csrf} if csrf else {}
    response = await client.post(path, json=body, headers=headers)
    if not response.is_success:
        raise SetupError(f"POST {path} answered {response.status_code}: {response.text[:300]}")
    return response.json()


async def login(client: httpx.AsyncClient, username: str, password: str) -> str:
    """Sign ``client`` in (its cookie jar keeps the session) and return the CSRF token."""
    answer = await post(client, "/api/auth/login", {"username": username, "password": password})
    return str(answer["csrf_token"])


def _profile(index: int, service_ids: list[int]) -> list[dict[str, object]]:
    """Counter ``index`` serves every matter: one as primary (in turn), the rest as secondary."""
    primary = service_ids[index % len(service_ids)]
    return [
        {"service_id": sid, "level": "primary" if sid == primary else "secondary"}
        for sid in service_ids
    ]


async def build_hall(
    base_url: str, admin_username: str, admin_password: str, counters: int
) -> Hall:
    """Create a hall open around the clock with MATTERS, ``counters`` counters each with its
    own clerk, and a kiosk; return their ids and the kiosk token."""
    async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as admin:
        csrf = await login(admin, admin_username, admin_password)
        hall = await post(
            admin,
            "/api/halls",
            {
                "name_zh": "压测大厅",
                "name_en": "Bench hall",
                "opening_hours": ALL_DAY,
                "timezone": midday_zone(),
            },
            csrf,
        )
        hall_id = int(hall["id"])
        service_ids = []
        for zh, en, prefix, minutes in MATTERS:
            body = {"name_zh": zh, "name_en": en, "prefix": prefix, "typical_minutes": minutes}
            service = await post(admin, f"/api/halls/{hall_id}/services", body, csrf)
            service_ids.append(int(service["id"]))
        clerks = []
        for index in range(counters):
            body = {
                "number": index + 1,
                "name": f"c{index + 1}",
                "profile": _profile(index, service_ids),
            }
            counter = await post(admin, f"/api/halls/{hall_id}/counters", body, csrf)
            username = f"clerk{index + 1:02d}"
            staff = {"username": username, "password": CLERK_PASSWORD, "role": "clerk"}
            await post(admin, f"/api/halls/{hall_id}/staff", staff, csrf)
            clerks.append(Clerk(username, int(counter["id"])))
        kiosk = await post(
            admin, f"/api/halls/{hall_id}/devices", {"kind": "kiosk", "name": "k"}, csrf
        )
    return Hall(hall_id, service_ids, str(kiosk["token"]), clerks)


async def open_counter(base_url: str, clerk: Clerk, limits: httpx.Limits) -> ClerkSession:
    """Sign ``clerk`` in with a client of their own and open their counter."""
    client = httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT, limits=limits)
    try:
        csrf = await login(client, clerk.username, CLERK_PASSWORD)
        await post(client, f"/api/counters/{clerk.counter_id}/open", None, csrf)
    except BaseException:
        await client.aclose()
        raise
    return ClerkSession(clerk, client, csrf)


async def open_counters(base_url: str, clerks: list[Clerk]) -> list[ClerkSession]:
    """Every clerk signed in at their open counter (one connection each)."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    results = await asyncio.gather(
        *(open_counter(base_url, clerk, limits) for clerk in clerks), return_exceptions=True
    )
    sessions = [r for r in results if isinstance(r, ClerkSession)]
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        await asyncio.gather(*(s.client.aclose() for s in sessions))
        raise failures[0]
    return sessions
