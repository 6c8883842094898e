"""Dependencies the controllers receive by name."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litestar.datastructures import State
from litestar.exceptions import ServiceUnavailableException
from litestar.types import Scope

from queue_server.service import hall_config
from queue_server.service.accounts import Principal
from queue_server.service.bus import Bus
from queue_server.service.hall_config import HallOut
from queue_server.settings import Settings

from .auth import PRINCIPAL_KEY


def provide_bus(state: State) -> Bus:
    return state.bus  # type: ignore[no-any-return]


class BookingGate:
    """At most ``limit`` bookings of this process at once (0: no limit); the rest wait here,
    in order, holding no database connection, for up to ``wait`` seconds: then 503 with
    ``Retry-After``, rather than booking long after the visitor gave up."""

    def __init__(self, limit: int, wait: float = 20.0) -> None:
        self._slots = asyncio.Semaphore(limit) if limit else None
        self._wait = wait

    async def __aenter__(self) -> None:
        if self._slots is None:
            return
        try:
            async with asyncio.timeout(self._wait):
                await self._slots.acquire()
        except TimeoutError:
            raise ServiceUnavailableException(
                "bookings are very busy right now; please try again in a few seconds",
                headers={"Retry-After": "5"},
            ) from None

    async def __aexit__(self, *exc: object) -> None:
        if self._slots is not None:
            self._slots.release()


def provide_booking_gate(state: State) -> BookingGate:
    return state.booking_gate  # type: ignore[no-any-return]


def provide_settings(state: State) -> Settings:
    return state.settings  # type: ignore[no-any-return]


def provide_principal(scope: Scope) -> Principal:
    """The authenticated caller (HTTP or websocket), as the ``authorize`` guard found it.

    Routes that take it are never public, so the guard has always run and set it.
    """
    principal = scope.get("state", {}).get(PRINCIPAL_KEY)
    assert principal is not None, "authorize() lets no anonymous caller reach this route"
    return principal  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Desk:
    """What the busiest routes (issuing, the counter's actions) need, as one dependency:
    Litestar resolves a route's several dependencies in a task group per request, a
    measurable share of a short request's CPU; one is resolved inline."""

    bus: Bus
    settings: Settings
    principal: Principal


def provide_desk(state: State, scope: Scope) -> Desk:
    return Desk(state.bus, state.settings, provide_principal(scope))


def provide_hubs(state: State) -> Any:
    """The process's hall hubs (queue_server.realtime.hub.Hubs), set up at startup."""
    return state.hubs


def provide_hall_lookup(state: State) -> Callable[[int], Awaitable[HallOut]]:
    """For pages outside the API (the board): look a hall up by id (404 if unknown)."""

    async def lookup(hall_id: int) -> HallOut:
        return await state.bus.run(hall_config.get_hall, hall_id)  # type: ignore[no-any-return]

    return lookup


def provide_speech_cache(state: State) -> Path:
    """Where rendered announcements are kept."""
    return state.settings.var_dir / "speech"  # type: ignore[no-any-return]
