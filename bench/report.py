"""The results table: one row per configuration and phase, plain text, aligned."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .stats import PhaseResult, Verdict, percentile

HEADERS = (
    "config",
    "phase",
    "requests",
    "concurrency",
    "req/s",
    "p50 ms",
    "p99 ms",
    "errors",
    "5xx",
    "correct",
)
LEFT_ALIGNED = {"config", "phase", "correct"}
LEGEND = "errors: non-2xx answers and exceptions, 5xx included; req/s over the phase's wall time"


@dataclass(frozen=True)
class Row:
    cells: tuple[str, ...]
    ok: bool
    """False if the row shows a failed correctness check, a 5xx or a setup failure."""


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def phase_row(config: str, result: PhaseResult, verdict: Verdict) -> Row:
    """The row of one measured phase; not ok if the verdict failed or a 5xx was seen."""
    cells = (
        config,
        result.phase,
        str(result.requests),
        str(result.concurrency),
        f"{result.throughput:.0f}",
        _ms(percentile(result.latencies_ms, 0.50)),
        _ms(percentile(result.latencies_ms, 0.99)),
        str(result.errors),
        str(result.server_errors),
        str(verdict),
    )
    return Row(cells, verdict.ok and result.server_errors == 0)


def failure_row(config: str, phase: str, why: str) -> Row:
    """A row for a configuration or phase that produced no measurement."""
    return Row((config, phase, "-", "-", "-", "-", "-", "-", "-", f"no ({why})"), ok=False)


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
