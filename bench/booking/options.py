"""The run's sizes: the full and smoke ones, the command-line options that change them,
and where the results go."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent.parent / "results"

REPORT = RESULTS / "booking-latest.txt"

SLOT_MINUTES = 30

MAX_SAMPLES = 5


@dataclass(frozen=True)
class Sizes:
    attempts: int
    days: int
    """Bookable days: today and the next ``days - 1`` (the window)."""
    slots_per_day: int
    capacity: int
    """Places per slot (no walk-in share held back)."""
    concurrency: int
    reuse_share: float
    """Share of the attempts that use a phone number another attempt uses too."""
    seed: int

    @property
    def slots(self) -> int:
        return self.days * self.slots_per_day

    @property
    def places(self) -> int:
        return self.slots * self.capacity

    @property
    def timeout_s(self) -> float:
        """How long the rush may take before it is stopped (and the run fails)."""
        return max(60.0, self.attempts / 20)


FULL = Sizes(
    attempts=20_000, days=8, slots_per_day=20, capacity=25, concurrency=200, reuse_share=0.1,
    seed=1,
)  # fmt: skip
SMOKE = Sizes(
    attempts=2_000, days=4, slots_per_day=10, capacity=10, concurrency=200, reuse_share=0.1,
    seed=1,
)  # fmt: skip


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.booking",
        description="A booking rush on PostgreSQL (see bench/README.md).",
    )
    parser.add_argument("--smoke", action="store_true", help="a short run for CI (< 60 s)")
    parser.add_argument("--attempts", type=int, help="booking attempts (full 20000, smoke 2000)")
    parser.add_argument(
        "--places",
        type=int,
        help="total places; sets the places per slot, so it must divide by the slots",
    )
    parser.add_argument("--capacity", type=int, help="places per slot (full 25, smoke 10)")
    parser.add_argument("--days", type=int, help="bookable days, today included (full 8)")
    parser.add_argument(
        "--slots-per-day", type=int, help="30-minute slots a day from 09:00 (full 20)"
    )
    parser.add_argument("--concurrency", type=int, help="concurrent clients (200)")
    parser.add_argument(
        "--reuse", type=float, help="share of attempts sharing a phone number (0.1)"
    )
    parser.add_argument("--seed", type=int, help="random seed of the attempts (1)")
    parser.add_argument("--workers", type=int, default=1, help="server processes (1)")
    parser.add_argument("--pool-size", type=int, help="ONEDOOR_DB_POOL_SIZE (server default)")
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="how the load generator sends attempts: its own HTTP/1.1 (raw) or httpx",
    )
    parser.add_argument(
        "--booking-concurrency",
        type=int,
        help="ONEDOOR_BOOKING_CONCURRENCY, 0 for no limit (server default)",
    )
    args = parser.parse_args(argv)
    try:
        args.sizes = sizes_from(args)
    except ValueError as exc:
        parser.error(str(exc))
    if args.workers < 1:
        parser.error("--workers: give 1 or more")
    if args.pool_size is not None and args.pool_size < 1:
        parser.error("--pool-size: give 1 or more")
    return args


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value


def sizes_from(args: argparse.Namespace) -> Sizes:
    """The run's sizes: the full or smoke ones with the options given; ValueError if unusable."""
    base = SMOKE if args.smoke else FULL
    sizes = Sizes(
        attempts=_given(args.attempts, base.attempts),
        days=_given(args.days, base.days),
        slots_per_day=_given(args.slots_per_day, base.slots_per_day),
        capacity=_given(args.capacity, base.capacity),
        concurrency=_given(args.concurrency, base.concurrency),
        reuse_share=_given(args.reuse, base.reuse_share),
        seed=_given(args.seed, base.seed),
    )
    if not 1 <= sizes.days <= 31:
        raise ValueError("--days: give 1 to 31 (the slot list shows at most 31 days)")
    if not 1 <= sizes.slots_per_day <= 30:
        raise ValueError("--slots-per-day: give 1 to 30 (09:00 to at most 24:00)")
    if args.places is not None:
        if args.places < 1 or args.places % sizes.slots:
            raise ValueError(
                f"--places {args.places}: give a multiple of the {sizes.slots} slots "
                f"({sizes.days} days x {sizes.slots_per_day}), or change --days/--slots-per-day"
            )
        sizes = replace(sizes, capacity=args.places // sizes.slots)
    if sizes.capacity < 1:
        raise ValueError("--capacity: give 1 or more places per slot")
    if sizes.attempts < 1 or sizes.concurrency < 1:
        raise ValueError("--attempts and --concurrency: give 1 or more")
    if not 0 <= sizes.reuse_share < 1:
        raise ValueError("--reuse: give a share from 0 to below 1, e.g. 0.1")
    return sizes
