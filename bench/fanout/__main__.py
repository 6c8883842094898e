"""Command line: ``python -m bench.fanout`` (see the package's docstring or ``--help``)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from types import FrameType

from . import __doc__ as OVERVIEW
from . import ceiling
from .measure import run_config
from .options import (
    CONFIGS,
    DEFAULT_FULL,
    DEFAULT_SMOKE,
    FULL,
    RESULTS,
    SMOKE,
    BenchError,
    Config,
    CpuPlan,
    Sizes,
)
from .report import report


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fanout",
        description=(OVERVIEW or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--smoke", action="store_true", help="a short run for CI (< 60 s)")
    parser.add_argument(
        "--configs",
        help=f"comma-separated, of {', '.join(CONFIGS)} or 'all' (default: "
        f"{','.join(DEFAULT_FULL)}; smoke: {','.join(DEFAULT_SMOKE)})",
    )
    parser.add_argument("--halls", type=int, help="halls per configuration")
    parser.add_argument("--boards-per-hall", type=int, help="board websockets per hall")
    parser.add_argument("--rate", type=float, help="calls per second, all halls together")
    parser.add_argument("--seconds", type=float, help="length of the call phase")
    return parser.parse_args(argv)


def chosen(args: argparse.Namespace) -> tuple[Sizes, list[Config]]:
    sizes = SMOKE if args.smoke else FULL
    overrides = {
        "halls": args.halls,
        "boards_per_hall": args.boards_per_hall,
        "calls_per_s": args.rate,
        "call_seconds": args.seconds,
    }
    sizes = replace(sizes, **{k: v for k, v in overrides.items() if v})
    names = (
        args.configs.split(",") if args.configs else (DEFAULT_SMOKE if args.smoke else DEFAULT_FULL)
    )
    if list(names) == ["all"]:
        names = list(CONFIGS)
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configuration(s) {unknown}; known: {', '.join(CONFIGS)}")
    return sizes, [CONFIGS[n] for n in names]


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Let SIGTERM unwind like Ctrl-C, so every ``finally`` stops its servers."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes, configs = chosen(args)
    cpus = CpuPlan.choose()
    os.sched_setaffinity(0, cpus.loadgen)  # this process makes the calls
    RESULTS.mkdir(parents=True, exist_ok=True)
    results = []
    started = time.monotonic()
    with sigterm_as_interrupt():
        for config in configs:
            print(f"{config.name}: {config.describe()}", flush=True)
            results.append(run_config(config, sizes, cpus, RESULTS))
        sockets = sizes.halls * sizes.boards_per_hall
        print(f"ceiling: a bare ASGI websocket app, {sockets} idle sockets ...", flush=True)
        bare: ceiling.Ceiling | str
        stock: ceiling.Ceiling | str
        try:
            bare = ceiling.measure(sockets, cpus)
        except (BenchError, OSError) as exc:
            bare = f"could not run: {exc}"
        print(f"ceiling: the same with uvicorn's own {ceiling.STOCK} ...", flush=True)
        try:
            stock = ceiling.measure(sockets, cpus, ceiling.STOCK)
        except (BenchError, OSError) as exc:
            stock = f"could not run: {exc}"
    text = report(results, cpus, args.smoke, bare, stock)
    text += f"\n(total {time.monotonic() - started:.0f} s)"
    print("\n" + text)
    (RESULTS / "fanout.txt").write_text(text + "\n")
    return 1 if any(r.failures for r in results) else 0


if __name__ == "__main__":
    # The classes that cross the pipe to the boards process live in bench.fanout.boards, so
    # they pickle under that name, not as __main__.*; main can run from here.
    sys.exit(main())
