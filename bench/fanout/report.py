"""The report: one table row per configuration and the notes a reader needs beside it."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from importlib.metadata import version

import httpx

from ..stats import percentile
from .ceiling import Ceiling
from .measure import Result
from .options import CpuPlan

TARGET_P99_MS = 100.0
TARGET_KIB_PER_CONNECTION = 20.0
BUSY_MACHINE_SHARE = 0.5
"""Above this share of one CPU used by other work during the calls, the report warns."""


HEADERS = ("config", "boards", "halls", "calls", "p50 ms", "p99 ms", "max ms", "events lost",
           "resyncs", "KiB/conn", "KiB/conn after calls", "server RSS MiB")  # fmt: skip


def _num(value: float, digits: int = 1) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _spread(values: list[float]) -> str:
    """``p50 X, p99 Y, max Z ms`` of ``values``."""
    worst = max(values) if values else math.nan
    return (
        f"p50 {_num(percentile(values, 0.5))}, p99 {_num(percentile(values, 0.99))}, "
        f"max {_num(worst)} ms"
    )


def row(result: Result) -> tuple[str, ...]:
    if result.error is not None or result.skipped is not None:
        return (result.config.name, *["-"] * (len(HEADERS) - 1))
    latencies = result.at_ms
    report = result.boards
    return (
        result.config.name,
        str(result.connected),
        str(result.sizes.halls),
        str(len(result.calls.returned)),
        _num(percentile(latencies, 0.50)),
        _num(percentile(latencies, 0.99)),
        _num(max(latencies) if latencies else math.nan),
        str(report.lost) if report else "-",
        str(report.resyncs) if report else "-",
        _num(result.kib_per_connection(result.rss_idle_kib)),
        _num(result.kib_per_connection(result.rss_after_calls_kib)),
        _num(result.rss_idle_kib / 1024, 0),
    )


def format_table(results: list[Result]) -> str:
    table = [HEADERS, *(row(r) for r in results)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(HEADERS), "  ".join("-" * w for w in widths), *map(line, table[1:])])


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def cpu_notes(result: Result) -> list[str]:
    """Who used the CPUs during the call phase, as a share of one CPU each, and a warning
    when work outside the benchmark's own processes may have slowed it down."""
    seconds = result.calls.seconds
    cpu = result.cpu

    def share(used: float) -> str:
        return f"{100 * used / seconds:.0f}%"

    rest = cpu.machine - cpu.server - cpu.boards - cpu.caller
    lines = [
        f"  CPU during the calls (share of one CPU): server {share(cpu.server)}, boards "
        f"process {share(cpu.boards)}, caller {share(cpu.caller)}, everything else "
        f"(PostgreSQL, Redis, other processes) {share(rest)}"
    ]
    if rest / seconds > BUSY_MACHINE_SHARE:
        lines.append(
            f"  WARNING: work outside the server and the load generator used {share(rest)} of "
            "a CPU during the calls (more than PostgreSQL and Redis need here): other "
            "processes were busy and the latencies above may be inflated"
        )
    return lines


def notes(result: Result) -> list[str]:
    """What a reader needs beside the row: targets, the load generator, errors, CPU use."""
    lines = [f"{result.config.name}: {result.config.describe()}"]
    if result.skipped is not None:
        return [*lines, f"  {result.skipped}"]
    if result.error is not None:
        return [*lines, f"  could not run: {result.error}", *result.servers, *result.log_notes]
    p99 = percentile(result.at_ms, 0.99)
    kib = result.kib_per_connection(result.rss_idle_kib)
    calls = result.calls
    lines += [
        f"  targets: p99 ≤ {TARGET_P99_MS:.0f} ms {verdict(p99 <= TARGET_P99_MS)} "
        f"({_num(p99)} ms); ≤ {TARGET_KIB_PER_CONNECTION:.0f} KiB/connection "
        f"{verdict(kib <= TARGET_KIB_PER_CONNECTION)} ({_num(kib)} KiB idle)",
        f"  load generator: {result.loadgen}",
        f"  opened {result.connected} boards in {result.connect_seconds:.1f} s "
        f"({result.connect_retries} retries, {result.connect_failed} failed)",
        f"  server RSS: {result.rss_before_kib / 1024:.0f} MiB before the boards, "
        f"{result.rss_idle_kib / 1024:.0f} MiB with them idle, "
        f"{result.rss_after_calls_kib / 1024:.0f} MiB after the calls",
    ]
    if calls.seconds:
        lines += [
            f"  calls: {len(calls.returned)} in {calls.seconds:.1f} s "
            f"({len(calls.returned) / calls.seconds:.1f}/s of {result.sizes.calls_per_s:g}/s "
            f"offered), start delay {_spread(calls.late_ms)}",
            f"  board messages fanned out during the calls: {result.board_messages} "
            f"({result.board_messages / calls.seconds:.0f}/s; server CPU "
            f"{1e6 * result.cpu.server / max(result.board_messages, 1):.0f} µs per message, "
            "API requests included)",
            *cpu_notes(result),
        ]
    if result.boards is not None:
        report = result.boards
        lines += [
            f"  deliveries: {len(result.at_ms)} (board, call) pairs, {result.by_snapshot} of "
            f"them by a snapshot; drain {report.drain_seconds:.1f} s"
            + (f", {report.undrained} boards never caught up" if report.undrained else ""),
            f"    board shows call - event 'at' (table):        {_spread(result.at_ms)}",
            f"    board shows call - call-next answer arrived:  {_spread(result.answer_ms)}",
            f"    board shows call - relay claimed the event:   {_spread(result.fanout_ms)}",
            f"    relay claimed the event - event 'at' (/call): {_spread(result.relay_ms)}",
        ]
        lines += [f"  lost: {s}" for s in report.loss_samples]
        lines += [f"  dropped: {s}" for s in report.drop_samples]
    if calls.failed:
        lines.append(f"  failed requests: {dict(calls.statuses)}")
        lines += [f"    {s}" for s in calls.samples]
    lines += [f"  connect failure: {s}" for s in result.connect_samples]
    lines += [f"  server {s}" for s in result.servers]
    lines += [f"  {s}" for s in result.log_notes]
    return lines


def ceiling_notes(
    results: list[Result], bare: Ceiling | str, stock: Ceiling | str | None = None
) -> list[str]:
    """The sockets' ceiling, each configuration's idle KiB per board beside it, and the
    bare app again on uvicorn's own websocket protocol."""
    if isinstance(bare, str):
        return [f"ceiling: {bare}"]
    lines = [
        f"ceiling: a bare ASGI websocket app (no Litestar, no OneDoor: accept, one message, "
        f"read until closed) served by uvicorn with onedoor serve's options (its websocket "
        f"protocol: queue_server/lean_websocket.py), {bare.connected} idle sockets: "
        f"{bare.kib_per_connection:.1f} KiB/conn "
        f"(RSS {bare.rss_before_kib / 1024:.0f} → {bare.rss_idle_kib / 1024:.0f} MiB)"
    ]
    if isinstance(stock, Ceiling):
        lines.append(
            f"  the same app on uvicorn's own websockets-sansio protocol: "
            f"{stock.kib_per_connection:.1f} KiB/conn "
            f"(RSS {stock.rss_before_kib / 1024:.0f} → {stock.rss_idle_kib / 1024:.0f} MiB)"
        )
    elif stock is not None:
        lines.append(f"  the same app on uvicorn's own protocol: {stock}")
    for result in results:
        kib = result.kib_per_connection(result.rss_idle_kib)
        if result.connected and not math.isnan(kib) and bare.kib_per_connection > 0:
            lines.append(
                f"  {result.config.name}: {kib:.1f} KiB/conn idle = "
                f"{kib / bare.kib_per_connection:.2f} x the ceiling"
            )
    if bare.kib_per_connection > TARGET_KIB_PER_CONNECTION:
        lines.append(
            f"  the ceiling itself is above the {TARGET_KIB_PER_CONNECTION:.0f} KiB target: "
            "uvicorn and the websocket library keep that much per connection before any app"
        )
    return lines


def report(
    results: list[Result],
    cpus: CpuPlan,
    smoke: bool,
    bare: Ceiling | str | None = None,
    stock: Ceiling | str | None = None,
) -> str:
    sizes = results[0].sizes
    head = [
        f"OneDoor websocket fan-out ({'smoke' if smoke else 'full'} run, "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')})",
        f"load generator: websockets {version('websockets')} client (asyncio, one process for "
        f"all boards, permessage-deflate offered) + httpx {httpx.__version__} caller",
        f"pinning: {cpus.describe()}",
        f"per configuration: {sizes.halls} halls x {sizes.boards_per_hall} boards; "
        f"{sizes.calls} calls (issue, call-next, no-show) at {sizes.calls_per_s:g}/s",
        "latency: per (board, TicketCalled), the receive time (time.time()) of the board's first "
        "message (event or snapshot) with seq >= the call's, minus the event's 'at' (the "
        "server's clock at the change, before the commit; same machine)",
        "KiB/conn: growth of the server processes' summed VmRSS / boards, with the boards "
        "idle, and after the calls",
        "",
    ]
    body = [format_table(results), ""]
    if bare is not None:
        body += [*ceiling_notes(results, bare, stock), ""]
    for result in results:
        body += notes(result)
    failures = [f"{r.config.name}: {f}" for r in results for f in r.failures]
    tail = ["", "FAILED: " + "; ".join(failures) if failures else "OK: no event lost, no errors"]
    return "\n".join(head + body + tail)
