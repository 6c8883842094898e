"""What the load-generator process is given (the plan) and hands back (the outcome)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .options import Sizes


@dataclass(frozen=True)
class RushPlan:
    base_url: str
    server_pgid: int
    sizes: Sizes
    timezone: str
    database: str
    client: str = "raw"
    """How attempts are sent: ``raw`` (client.RawClient) or ``httpx``."""


@dataclass
class RushOutcome:
    """What the load generator did and saw; plain data so it crosses the process boundary."""

    pid: int
    cpus: list[int]
    setup_seconds: float = 0.0
    hall_id: int = 0
    service_id: int = 0
    offered: list[str] = field(default_factory=list)
    """Start (ISO, UTC) of every slot the public slot list offered before the rush."""
    offered_places: int = 0
    reused_phones: int = 0
    """Distinct phone numbers used by more than one attempt."""
    per_slot: tuple[int, int] = (0, 0)
    """The fewest and the most attempts sent to one slot."""
    answers: Counter[str] = field(default_factory=Counter)
    """Attempts by outcome: booked, slot_full, phone_limit, rate_limited, 5xx, other."""
    latencies_ms: list[float] = field(default_factory=list)
    latencies_by_kind: dict[str, list[float]] = field(default_factory=dict)
    """The same, by outcome (booked, slot_full, ...)."""
    clear_seconds: float = 0.0
    """From the first attempt sent to the last answer."""
    samples: list[str] = field(default_factory=list)
    """A few of the answers that were neither a booking nor an expected refusal."""
    incomplete: str | None = None
    loadgen_cpu_seconds: float = 0.0
    server_cpu_seconds: float = 0.0
    postgres_cpu_seconds: float = 0.0
    """Used by the PostgreSQL backends connected to the bench database."""
    machine_cpu_seconds: float = 0.0
    error: str | None = None
    """Why the run stopped early (a setup refusal or a crash), with a traceback."""

    @property
    def answered(self) -> int:
        return sum(self.answers.values())
