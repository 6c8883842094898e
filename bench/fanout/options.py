"""The fan-out benchmark's sizes and configurations, the CPU plan, and what its modules
share: where results go, the HTTP client settings, the error a configuration fails with."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import httpx

from .. import procs

ROOT = Path(__file__).resolve().parent.parent.parent
RESULTS = ROOT / "bench" / "results"

HTTP_TIMEOUT = httpx.Timeout(30.0)
HTTP_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=64, keepalive_expiry=2.0)
"""Pooled connections are dropped after 2 s idle: uvicorn closes them after 5 s, and a request
sent on one just as it closes fails with "Server disconnected without sending a response"."""

MAX_SAMPLES = 5


@dataclass(frozen=True)
class Sizes:
    """How big one configuration's run is."""

    halls: int
    boards_per_hall: int
    calls_per_s: float
    call_seconds: float
    connect_concurrency: int
    drain_timeout_s: float

    @property
    def boards(self) -> int:
        return self.halls * self.boards_per_hall

    @property
    def calls(self) -> int:
        return round(self.calls_per_s * self.call_seconds)


SMOKE = Sizes(
    halls=6,
    boards_per_hall=50,
    calls_per_s=6,
    call_seconds=8,
    connect_concurrency=50,
    drain_timeout_s=10,
)
FULL = Sizes(
    halls=50,
    boards_per_hall=100,
    calls_per_s=20,
    call_seconds=30,
    connect_concurrency=100,
    drain_timeout_s=20,
)


NO_CONTEXT_TAKEOVER = "deflate-no-context-takeover"
"""The ``ws`` of the prototype served by ``serve_no_context_takeover`` (see there)."""


@dataclass(frozen=True)
class Config:
    """A way of serving the feeds: how many processes, and which uvicorn websocket layer."""

    name: str
    processes: int
    """Server processes; with two, they share PostgreSQL and fan out through Redis."""
    ws: str | None = None
    """None: ``onedoor serve`` (uvicorn's ``--ws auto``); NO_CONTEXT_TAKEOVER: the prototype;
    else ``uvicorn --ws <ws>``."""
    deflate: bool = True
    """permessage-deflate offered by the server (uvicorn's ``--ws-per-message-deflate``)."""
    needs: str | None = None
    """A module the server must be able to import for this configuration to run."""

    def describe(self) -> str:
        if self.ws is None:
            serve = "onedoor serve"
        elif self.ws == NO_CONTEXT_TAKEOVER:
            serve = "uvicorn websockets-sansio, deflate without context takeover (prototype)"
        else:
            serve = f"uvicorn --ws {self.ws}"
        deflate = "" if self.deflate else " --ws-per-message-deflate false"
        redis = " + Redis" if self.processes > 1 else ""
        return f"{self.processes} x {serve}{deflate} (PostgreSQL{redis})"


CONFIGS = {
    config.name: config
    for config in (
        Config("pg-1p", 1),
        Config("pg-redis-2p", 2),
        Config("uvicorn-sansio-nodeflate", 1, ws="websockets-sansio", deflate=False),
        Config("uvicorn-sansio-deflate", 1, ws="websockets-sansio"),
        Config("uvicorn-sansio-deflate-nct", 1, ws=NO_CONTEXT_TAKEOVER),
        Config("uvicorn-websockets-nodeflate", 1, ws="websockets", deflate=False),
        Config("uvicorn-wsproto-nodeflate", 1, ws="wsproto", deflate=False, needs="wsproto"),
    )
}
DEFAULT_FULL = ("pg-1p", "pg-redis-2p")
DEFAULT_SMOKE = ("pg-1p", "pg-redis-2p")


@dataclass(frozen=True)
class CpuPlan:
    """Server processes on one CPU, the load generator (all of this program) on another."""

    server: frozenset[int]
    loadgen: frozenset[int]

    @classmethod
    def choose(cls) -> CpuPlan:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return cls(frozenset(cpus), frozenset(cpus))
        return cls(frozenset(cpus[:1]), frozenset(cpus[1:2]))

    def describe(self) -> str:
        shared = " (shared: fewer than 2 CPUs)" if self.server == self.loadgen else ""
        return (
            f"server process(es) pinned to {procs.format_cpus(self.server)}; load generator "
            f"pinned to {procs.format_cpus(self.loadgen)}{shared}; PostgreSQL and Redis unpinned"
        )


class BenchError(RuntimeError):
    """A configuration could not be prepared or run; the message says what happened."""
