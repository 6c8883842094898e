"""The fault suite's table: one row per scenario, then what each row checked."""

from __future__ import annotations

import platform
import time

from .common import Row

HEADER = ("scenario", "requests", "errors seen", "503/cut, retried", "lost", "duplicated",
          "recovery s", "goal s", "verdict")  # fmt: skip


def _recovery(row: Row) -> str:
    return "-" if row.recovery_s is None else f"{row.recovery_s:.2f}"


def _cells(r: Row) -> tuple[str, ...]:
    goal = "-" if r.goal_s is None else f"≤ {r.goal_s:g}"
    verdict = "ok" if r.ok else "FAILED"
    return (r.scenario, f"{r.requests:,}", str(r.errors), f"{r.refused:,}", str(r.lost),
            str(r.duplicated), _recovery(r), goal, verdict)  # fmt: skip


def table(rows: list[Row], short: bool, seconds: float) -> str:
    cells = [_cells(r) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(HEADER)]
    lines = [
        f"OneDoor fault suite ({'short' if short else 'full'}), "
        f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}, {seconds:.0f} s",
        "| " + " | ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    lines.append("")
    for r in rows:
        lines.append(f"{r.scenario}:")
        lines += [f"  - {c}" for c in r.checks]
        lines += [f"  ! {p}" for p in r.problems]
    return "\n".join(lines)
