"""What the HTTP phases need, set up over the API in Python: the hall (bench/hall.py: matters,
counters with one clerk each), several kiosks and boards, and every clerk signed in at an
open counter, their session cookie and CSRF token handed to wrk."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from . import hall

DEVICES_PER_KIND = 8
"""Kiosks (and boards) of the hall; wrk's connections take their tokens in turn."""


@dataclass(frozen=True)
class CounterLogin:
    counter_id: int
    cookie: str
    """The ``Cookie`` header value that carries the clerk's session."""
    csrf: str


@dataclass(frozen=True)
class Scene:
    hall_id: int
    service_ids: list[int]
    kiosk_tokens: list[str]
    board_tokens: list[str]
    counters: list[CounterLogin]


async def _devices(base_url: str, admin: tuple[str, str], hall_id: int) -> dict[str, list[str]]:
    async with httpx.AsyncClient(base_url=base_url, timeout=hall.TIMEOUT) as client:
        csrf = await hall.login(client, *admin)
        tokens: dict[str, list[str]] = {"kiosk": [], "board": []}
        for kind, made in tokens.items():
            for index in range(DEVICES_PER_KIND):
                body = {"kind": kind, "name": f"{kind}{index + 1}"}
                device = await hall.post(client, f"/api/halls/{hall_id}/devices", body, csrf)
                made.append(str(device["token"]))
    return tokens


async def _sign_in(base_url: str, clerk: hall.Clerk) -> CounterLogin:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    session = await hall.open_counter(base_url, clerk, limits)
    try:
        cookie = "; ".join(f"{c.name}={c.value}" for c in session.client.cookies.jar)
    finally:
        await session.client.aclose()
    return CounterLogin(clerk.counter_id, cookie, session.csrf_token)


async def _build(base_url: str, admin: tuple[str, str], counters: int) -> Scene:
    made = await hall.build_hall(base_url, *admin, counters)
    devices = await _devices(base_url, admin, made.hall_id)
    logins = await asyncio.gather(*(_sign_in(base_url, clerk) for clerk in made.clerks))
    return Scene(
        made.hall_id,
        made.service_ids,
        [made.kiosk_token, *devices["kiosk"]][:DEVICES_PER_KIND],
        devices["board"],
        list(logins),
    )


def build(base_url: str, admin: tuple[str, str], counters: int) -> Scene:
    """Set the hall up on the server at ``base_url``; hall.SetupError if a step is refused."""
    return asyncio.run(_build(base_url, admin, counters))
