"""Measurements of one phase and the correctness verdicts drawn from what the server answered."""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

NUMBER = re.compile(r"^([A-Z]{1,2})(\d+)$")
MAX_LISTED = 5
"""How many offending items a verdict names before it says "and N more"."""


@dataclass
class PhaseResult:
    """What the load generator saw in one phase: one latency per request sent."""

    phase: str
    concurrency: int
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    """Requests answered with a non-2xx status or failed with an exception (5xx included)."""
    server_errors: int = 0
    """Requests answered with a 5xx status."""
    error_samples: list[str] = field(default_factory=list)
    incomplete: str | None = None
    """Why the phase stopped before finishing its work, if it did."""
    loadgen_cpu_seconds: float = 0.0
    server_cpu_seconds: float | None = None

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    @property
    def throughput(self) -> float:
        """Requests per second of wall time."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def percentile(values: Iterable[float], q: float) -> float:
    """The nearest-rank ``q``-quantile (0 < q <= 1) of ``values``; NaN when there are none."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Verdict:
    """A correctness check's answer and a short reason a human can act on."""

    ok: bool
    why: str

    def __str__(self) -> str:
        return f"{'yes' if self.ok else 'no'} ({self.why})"


def _listed(items: Iterable[object]) -> str:
    items = list(items)
    shown = ", ".join(map(str, items[:MAX_LISTED]))
    more = len(items) - MAX_LISTED
    return f"{shown} and {more} more" if more > 0 else shown


def check_numbers(numbers: list[str]) -> Verdict:
    """Per prefix, the issued numbers are exactly 1..n: no duplicate, no gap, no odd format."""
    if not numbers:
        return Verdict(False, "no ticket was issued")
    by_prefix: dict[str, list[int]] = defaultdict(list)
    malformed = []
    for number in numbers:
        match = NUMBER.match(number)
        if match is None:
            malformed.append(number)
        else:
            by_prefix[match.group(1)].append(int(match.group(2)))
    problems = [f"malformed {_listed(malformed)}"] if malformed else []
    for prefix, seqs in sorted(by_prefix.items()):
        doubled = sorted(s for s, n in Counter(seqs).items() if n > 1)
        missing = sorted(set(range(1, max(seqs) + 1)) - set(seqs))
        if doubled:
            problems.append(f"{prefix} duplicated {_listed(doubled)}")
        if missing:
            problems.append(f"{prefix} missing {_listed(missing)}")
    if problems:
        return Verdict(False, "; ".join(problems))
    return Verdict(True, f"{len(by_prefix)} prefixes gapless 1..n")


def check_calls(issued_ids: list[int], called_ids: list[int]) -> Verdict:
    """Every issued ticket was called exactly once and nothing else was called."""
    doubled = sorted(t for t, n in Counter(called_ids).items() if n > 1)
    never = sorted(set(issued_ids) - set(called_ids))
    unknown = sorted(set(called_ids) - set(issued_ids))
    problems = []
    if doubled:
        problems.append(f"called twice: ids {_listed(doubled)}")
    if never:
        problems.append(f"never called: {len(never)} (ids {_listed(never)})")
    if unknown:
        problems.append(f"called but not issued here: ids {_listed(unknown)}")
    if problems:
        return Verdict(False, "; ".join(problems))
    return Verdict(True, f"all {len(issued_ids)} called once")
