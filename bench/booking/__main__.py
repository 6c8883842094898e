"""Command line: ``python -m bench.booking`` (see the package's docstring or ``--help``)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from types import FrameType

from .. import postgres
from ..run import REQUIRE_SERVICES_ENV, cpu_plan
from .hall_setup import hall_timezone
from .options import REPORT, RESULTS, Sizes, parse_args
from .report import build_table, describe
from .runner import run_rush_on_server, server_spec


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    """Turn SIGTERM (e.g. a cancelled CI job) into SystemExit so the server gets stopped."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the rush, print and save the report; 0 only if every check passed."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    sizes: Sizes = args.sizes
    plan = cpu_plan()
    RESULTS.mkdir(parents=True, exist_ok=True)
    try:
        url = postgres.bench_url()
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    unreachable = postgres.unreachable_reason(url)
    if unreachable:
        required = os.environ.get(REQUIRE_SERVICES_ENV) == "1"
        text = f"booking rush skipped: {unreachable}" + (
            f" and {REQUIRE_SERVICES_ENV}=1" if required else ""
        )
        print(text, flush=True)
        REPORT.write_text(text + "\n")
        return 1 if required else 0
    spec = server_spec(args)
    timezone = hall_timezone(datetime.now(UTC))
    header = describe(sizes, spec, plan, timezone, args.client)
    print("\n".join(header), flush=True)

    outcome, facts, notes = run_rush_on_server(spec, sizes, plan, timezone, args.client)
    if outcome is None:
        table_text, ok = f"{spec.name}: the rush could not run (see below)", False
    else:
        table = build_table(outcome, facts, sizes)
        ok = not table.failed and facts is not None and outcome.error is None
        verdict = (
            "all checks passed"
            if ok
            else "FAILED: " + ", ".join(table.failed or ["the run did not complete"])
        )
        table_text = f"{table.format()}\n{verdict}"
    text = "\n".join([*header, "", table_text, "", *notes])
    print("\n" + "\n".join(text.split("\n")[len(header) :]))
    REPORT.write_text(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
