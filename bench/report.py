"""The results table of ``bench.run``: one row per configuration and phase, plain text,
aligned; and ``format_columns`` for any other table."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .stats import Verdict

HEADERS = (
    "phase",
    "config",
    "conns",
    "requests",
    "req/s",
    "p50 ms",
    "p99 ms",
    "non-2xx",
    "5xx",
    "CPU ms/req",
    "RSS MiB/worker",
    "vs ceiling",
    "correct",
)
LEFT_ALIGNED = {"phase", "config", "vs ceiling", "correct"}
LEGEND = """\
req/s: answers per second of the phase (wrk's -d); for the call phases, calls per second
  (a call = call-next + no-show, both answered 2xx); @N/s rows are paced to N per second
p50/p99: per HTTP request as wrk measures it (for calls: per call-next or no-show)
non-2xx: answers other than 2xx plus connect/read/write errors; 5xx counted again apart
CPU ms/req: the server's processes' user+system CPU over the phase / HTTP requests answered
RSS MiB/worker: VmRSS of each worker process at the end of the phase (the main process when
  it is the only worker)
vs ceiling: HTTP requests/s over the ceiling app's at the same number of connections
  (read: a GET against the write ceiling; 2 req/call: both requests of a call counted;
  fixed: the share of the ceiling the fixed rate asks for)
correct: checked in the database after the phase (see the notes); - where nothing is checked"""


@dataclass(frozen=True)
class Row:
    cells: tuple[str, ...]
    ok: bool
    """False if the row shows a failed correctness check, a 5xx or a failure to run."""


@dataclass(frozen=True)
class Measured:
    """One phase's figures, as the table shows them."""

    phase: str
    config: str
    connections: int
    requests: int
    rate: float
    """Requests per second, calls per second for the call phases."""
    p50_ms: float
    p99_ms: float
    non_2xx: int
    server_errors: int
    cpu_ms_per_request: float
    rss_mib: list[float]
    vs_ceiling: str
    verdict: Verdict | None


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def measured_row(m: Measured) -> Row:
    """The row of one measured phase; not ok if its check failed or a 5xx was answered."""
    correct = "-" if m.verdict is None else ("yes" if m.verdict.ok else "no")
    cells = (
        m.phase,
        m.config,
        str(m.connections),
        str(m.requests),
        f"{m.rate:.0f}",
        _ms(m.p50_ms),
        _ms(m.p99_ms),
        str(m.non_2xx),
        str(m.server_errors),
        _ms(m.cpu_ms_per_request),
        "/".join(f"{rss:.0f}" for rss in m.rss_mib) or "-",
        m.vs_ceiling,
        correct,
    )
    return Row(cells, (m.verdict is None or m.verdict.ok) and m.server_errors == 0)


def failure_row(config: str, phase: str, why: str) -> Row:
    """A row for a configuration or phase that produced no measurement."""
    blanks = ("-",) * (len(HEADERS) - 3)
    return Row((phase, config, *blanks, f"no ({why})"), ok=False)


def format_table(rows: list[Row]) -> str:
    """``rows`` under HEADERS, columns padded to their widest cell."""
    return format_columns(HEADERS, [row.cells for row in rows], LEFT_ALIGNED)


def format_columns(
    headers: tuple[str, ...], rows: list[tuple[str, ...]], left_aligned: set[str]
) -> str:
    """Any table: ``rows`` under ``headers``, columns padded to their widest cell, those
    named in ``left_aligned`` aligned left and the others right."""
    table = [headers, *rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]

    def line(cells: tuple[str, ...]) -> str:
        padded = [
            cell.ljust(width) if header in left_aligned else cell.rjust(width)
            for cell, width, header in zip(cells, widths, headers, strict=True)
        ]
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(cells) for cells in rows)])


def verdict(wrong: list[str]) -> int:
    """Print what a bench found wrong (one ``WRONG:`` line each) and whether it was
    correct; its exit code (1 if anything was wrong)."""
    for line in wrong:
        print(f"WRONG: {line}")
    print("correct: yes" if not wrong else "correct: no")
    return 1 if wrong else 0
