"""The calls: at a steady total rate, round robin over the halls, each an issue, a
call-next and a no-show; failures are counted, not raised."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from .halls import Hall
from .options import HTTP_LIMITS, HTTP_TIMEOUT, MAX_SAMPLES, Sizes


@dataclass
class Calls:
    """What the caller saw: when each call-next answered, and every failed request."""

    returned: dict[tuple[int, int], float] = field(default_factory=dict)
    """(hall id, ticket id) → wall-clock time the call-next answer arrived."""
    statuses: Counter[str] = field(default_factory=Counter)
    """Failed requests by status ("5xx" included) or exception name."""
    samples: list[str] = field(default_factory=list)
    late_ms: list[float] = field(default_factory=list)
    """How long after its scheduled time each call started (issuing its ticket)."""
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status.startswith("5"))


async def request(
    calls: Calls, client: httpx.AsyncClient, path: str, headers: dict[str, str], body: Any = None
) -> Any | None:
    """POST during the call phase; a failure is counted, not raised; None then."""
    try:
        response = await client.post(path, json=body, headers=headers)
    except httpx.HTTPError as exc:
        calls.statuses[type(exc).__name__] += 1
        if len(calls.samples) < MAX_SAMPLES:
            calls.samples.append(f"POST {path}: {exc!r}")
        return None
    if not response.is_success:
        calls.statuses[str(response.status_code)] += 1
        if len(calls.samples) < MAX_SAMPLES:
            calls.samples.append(f"POST {path}: {response.status_code} {response.text[:200]}")
        return None
    return response.json()


async def call_once(calls: Calls, kiosk: httpx.AsyncClient, hall: Hall, due: float) -> None:
    """Issue a ticket, call next (recording when the answer arrived), mark a no-show."""
    async with hall.lock:
        calls.late_ms.append((time.monotonic() - due) * 1000)
        bearer = {"Authorization": f"Bearer {hall.kiosk_token}"}
        issued = await request(
            calls,
            kiosk,
            f"/api/halls/{hall.hall_id}/tickets",
            bearer,
            {"service_id": hall.service_id},
        )
        if issued is None:
            return
        csrf = {"X-CSRF-Token": hall.csrf}
        answer = await request(
            calls, hall.clerk, f"/api/counters/{hall.counter_id}/call-next", csrf
        )
        returned = time.time()
        if answer is None:
            return
        if answer.get("ticket") is None:
            calls.statuses["nobody to call"] += 1
            return
        calls.returned[(hall.hall_id, int(answer["ticket"]["id"]))] = returned
        await request(calls, hall.clerk, f"/api/counters/{hall.counter_id}/no-show", csrf)


async def make_calls(base_url: str, halls: list[Hall], sizes: Sizes) -> Calls:
    """``sizes.calls`` calls at a steady total rate, round robin over the halls (a hall's
    calls never overlap: its clerk has one counter)."""
    calls = Calls()
    async with httpx.AsyncClient(
        base_url=base_url, timeout=HTTP_TIMEOUT, limits=HTTP_LIMITS
    ) as kiosk:
        started = time.monotonic()
        tasks = []
        for index in range(sizes.calls):
            due = started + index / sizes.calls_per_s
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            hall = halls[index % len(halls)]
            tasks.append(asyncio.create_task(call_once(calls, kiosk, hall, due)))
        await asyncio.gather(*tasks)
        calls.seconds = time.monotonic() - started
    return calls
