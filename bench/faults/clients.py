"""The load's clients' common ground: how one request is sent and booked, and what all
the clients of a scenario saw."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

REQUEST_TIMEOUT_S = 10.0
"""A client gives up on one answer after this long and counts it as a hang."""
GIVE_UP_AFTER_S = 60.0
"""A kiosk stops asking for one ticket after this long (a visitor would have gone)."""


@dataclass
class Tally:
    """What the load's clients saw."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    dropped: int = 0
    """Connections refused or cut before an answer."""
    hangs: int = 0
    no_retry_after: int = 0
    gave_up: list[str] = field(default_factory=list)
    answered: dict[str, int] = field(default_factory=dict)
    """Idempotency-Key → the ticket id the server answered for it (the last answer)."""
    contradictions: list[str] = field(default_factory=list)
    """A key answered with two different tickets."""
    ok_at: list[float] = field(default_factory=list)
    """time.monotonic() of every successful answer (issue, call, no-show)."""
    retried: set[str] = field(default_factory=set)
    """Keys whose ticket came only after a retry (the first answer never came or was 503)."""
    slowest_refusal_s: float = 0.0
    """The longest a 503 or a dropped connection took to come: failing fast means short."""
    calls: int = 0
    no_shows: int = 0
    called_ids: list[int] = field(default_factory=list)

    @property
    def refused(self) -> int:
        return self.statuses[503] - self.no_retry_after + self.dropped

    @property
    def errors(self) -> int:
        broken = sum(n for status, n in self.statuses.items() if status >= 500 and status != 503)
        return broken + self.hangs + self.no_retry_after + len(self.gave_up)

    def first_ok_after(self, moment: float) -> float | None:
        later = [t for t in self.ok_at if t >= moment]
        return min(later) - moment if later else None

    def longest_gap(self, start: float, end: float) -> float:
        """The longest stretch between ``start`` and ``end`` with no successful answer."""
        marks = [start, *sorted(t for t in self.ok_at if start <= t <= end), end]
        return max(b - a for a, b in itertools.pairwise(marks))


async def send(
    client: httpx.AsyncClient, tally: Tally, path: str, **kwargs: object
) -> httpx.Response | None:
    """One request; None when no answer came (booked as dropped or a hang)."""
    tally.requests += 1
    start = time.monotonic()
    try:
        answer = await client.post(path, timeout=REQUEST_TIMEOUT_S, **kwargs)  # type: ignore[arg-type]
    except httpx.TimeoutException:
        tally.hangs += 1
        return None
    except httpx.TransportError:
        tally.dropped += 1
        tally.slowest_refusal_s = max(tally.slowest_refusal_s, time.monotonic() - start)
        return None
    tally.statuses[answer.status_code] += 1
    if answer.status_code == 503:
        tally.slowest_refusal_s = max(tally.slowest_refusal_s, time.monotonic() - start)
    if answer.status_code == 503 and "retry-after" not in answer.headers:
        tally.no_retry_after += 1
    return answer


def retry_after(answer: httpx.Response | None) -> float:
    if answer is None:
        return 0.2
    try:
        return min(float(answer.headers.get("retry-after", "1")), 5.0)
    except ValueError:
        return 1.0
