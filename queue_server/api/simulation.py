"""A hall's simulations for its manager: the last one kept, and starting a new one."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody
from msgspec import Meta, Struct

from queue_server.service import hall_config
from queue_server.service.bus import Bus
from queue_server.simulation.kept import kept_simulation
from queue_server.simulation.launcher import DEFAULT_DAYS, MAX_DAYS, RunStatus, SimulationLauncher

from .auth import MANAGERS, roles


class SimulationIn(Struct, forbid_unknown_fields=True):
    days: Annotated[
        int, Meta(ge=1, le=MAX_DAYS, description="days of history before today to measure")
    ] = DEFAULT_DAYS


def provide_launcher(state: State) -> SimulationLauncher:
    return state.simulations  # type: ignore[no-any-return]


class SimulationController(Controller):
    path = "/api/halls/{hall_id:int}/simulation"
    tags = ["simulation"]
    opt = roles(*MANAGERS)
    dependencies = {"launcher": Provide(provide_launcher, sync_to_thread=False)}

    @get()
    async def last_simulation(
        self, hall_id: FromPath[int], bus: NamedDependency[Bus]
    ) -> dict[str, Any]:
        """The hall's last kept simulation (`onedoor simulate --save`): `scenario` (name,
        source, load, visits, counters, matters), `seeds` (one simulated day each), `goals`
        (key → label, goal, met: whether the first policy meets it), `policies` (name →
        `figures`: key → label, mean, ci95 (half-width of the 95% confidence interval),
        days; and `hourly`: walk-ins' mean and p90 wait by hour of arrival), with `id`,
        `created_at`, `figure_formats` (key → percent, digits) and `history` (hall_id and
        days of history it was measured from, or null).

        404 when none is kept yet: run `onedoor simulate --from-hall N --save`, or POST here.
        """
        return await bus.run(kept_simulation, hall_id)

    @post(status_code=202)
    async def run_simulation(
        self,
        hall_id: FromPath[int],
        bus: NamedDependency[Bus],
        launcher: NamedDependency[SimulationLauncher],
        data: JSONBody[SimulationIn | None] = None,
    ) -> RunStatus:
        """Start `onedoor simulate --from-hall N --days D --save --quiet` on the server
        (`days`: 1 to 365, default 28) and answer at once with what was started (202). Follow
        it at `GET .../simulation/status`; when it is `done`, `GET .../simulation` is the
        new one. One run per hall at a time: 409 while one is running.
        """
        await bus.run(hall_config.get_hall, hall_id)
        return await launcher.start(hall_id, data.days if data is not None else DEFAULT_DAYS)

    @get("/status")
    async def simulation_status(
        self,
        hall_id: FromPath[int],
        bus: NamedDependency[Bus],
        launcher: NamedDependency[SimulationLauncher],
    ) -> RunStatus:
        """How the hall's last simulation started here goes: `state` idle (none started by
        this server process), running, failed (`detail`: the reason the command gave, e.g.
        no history yet) or done; with `started_at`, `finished_at` and `days`."""
        await bus.run(hall_config.get_hall, hall_id)
        return launcher.status(hall_id)
