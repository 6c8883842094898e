"""Dependencies the controllers receive by name."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
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

log = logging.getLogger("onedoor.bookings")


def provide_bus(state: State) -> Bus:
    return state.bus  # type: ignore[no-any-return]


Refused = Callable[[], BaseException | None]
"""What a waiting booking would now be refused with (the slot became known full while
it waited), or None."""


def _never() -> BaseException | None:
    return None


@dataclass(eq=False)
class _Waiter:
    turn: asyncio.Future[None]
    refused: Refused


class BookingGate:
    """At most ``limit`` bookings of this process at once (0: no limit); the rest wait here,
    in order, holding no database connection, for up to ``wait`` seconds: then 503 with
    ``Retry-After``, rather than booking long after the visitor gave up.

    A waiting booking whose slot becomes known full meanwhile is refused at once, not when
    its turn comes: whenever a booking leaves and the process's slot memory has learned a
    slot full since the last look (``watch``), each waiter's ``refused`` is asked again.
    In a rush most waiters are for slots that fill while they queue; answering them at
    once shortens the queue for the rest."""

    def __init__(self, limit: int, wait: float = 20.0) -> None:
        self._limit = limit
        self._wait = wait
        self._busy = 0
        self._waiters: deque[_Waiter] = deque()
        self._news: Callable[[], int] = lambda: 0
        self._seen = 0

    def watch(self, news: Callable[[], int]) -> None:
        """Look at the waiters again whenever ``news()`` has moved (a count of slots learned
        full: ``SlotMemory.learned``)."""
        self._news = news
        self._seen = news()

    def turn(self, refused: Refused = _never) -> _Turn:
        """``async with gate.turn(refused):`` — wait for a turn, or raise ``refused()``'s
        answer once it has one."""
        return _Turn(self, refused)

    async def __aenter__(self) -> None:
        await self.enter(_never)

    async def __aexit__(self, *exc: object) -> None:
        self.leave()

    @property
    def waiting(self) -> int:
        return sum(1 for waiter in self._waiters if not waiter.turn.done())

    async def enter(self, refused: Refused) -> None:
        if not self._limit:
            return
        if self._busy < self._limit and not self._waiters:
            self._busy += 1
            return
        waiter = _Waiter(asyncio.get_running_loop().create_future(), refused)
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self._wait):
                await waiter.turn
        except TimeoutError:
            turn = waiter.turn
            if turn.done() and not turn.cancelled():
                refusal = turn.exception()
                if refusal is not None:
                    raise refusal from None
                return  # the turn came just as the time ran out: take it
            turn.cancel()
            raise ServiceUnavailableException(
                "bookings are very busy right now; please try again in a few seconds",
                headers={"Retry-After": "5"},
            ) from None
        except asyncio.CancelledError:
            turn = waiter.turn
            if not turn.done():
                turn.cancel()
            elif not turn.cancelled() and turn.exception() is None:
                self.leave()  # a turn handed to it just then passes on
            raise

    def leave(self) -> None:
        if not self._limit:
            return
        self._refuse_known_full()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.turn.done():
                waiter.turn.set_result(None)  # this turn passes to it
                return
        self._busy -= 1

    def _refuse_known_full(self) -> None:
        news = self._news()
        if news == self._seen:
            return
        self._seen = news
        kept: deque[_Waiter] = deque()
        for waiter in self._waiters:
            if waiter.turn.done():
                continue
            try:
                refusal = waiter.refused()
            except Exception:  # asking must not stop the gate: it waits its turn
                log.exception("a waiting booking could not be checked again")
                refusal = None
            if refusal is None:
                kept.append(waiter)
            else:
                waiter.turn.set_exception(refusal)
        self._waiters = kept


@dataclass(frozen=True)
class _Turn:
    gate: BookingGate
    refused: Refused

    async def __aenter__(self) -> None:
        await self.gate.enter(self.refused)

    async def __aexit__(self, *exc: object) -> None:
        self.gate.leave()


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
