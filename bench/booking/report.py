"""The report: the table of checks and measures, the notes beside it, and the header that
describes the run."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from .. import procs
from ..report import format_columns
from ..run import CpuPlan
from ..server import ServerSpec
from ..stats import percentile
from .client import describe as describe_client
from .facts import DbFacts
from .options import SLOT_MINUTES, Sizes
from .plan import RushOutcome

TARGET_CLEAR_S = 10.0

HEADERS = ("measure", "value", "must be", "ok")
LEFT_ALIGNED = {"measure", "must be", "ok"}


@dataclass
class Table:
    rows: list[tuple[str, ...]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def check(self, measure: str, value: object, must_be: str, ok: bool) -> None:
        """A measure the run fails on when not ``ok``."""
        self.rows.append((measure, str(value), must_be, "yes" if ok else "NO"))
        if not ok:
            self.failed.append(measure)

    def show(self, measure: str, value: object, target: str = "", met: str = "") -> None:
        """A measure the run does not fail on."""
        self.rows.append((measure, str(value), target, met))

    def format(self) -> str:
        return format_columns(HEADERS, self.rows, LEFT_ALIGNED)


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def build_table(outcome: RushOutcome, facts: DbFacts | None, sizes: Sizes) -> Table:
    table = Table()
    answers = outcome.answers
    if facts is not None:
        table.check("bookings made", facts.made, f"= {facts.places} places", (
            facts.made == facts.places == sizes.places
        ))  # fmt: skip
        table.check("overbooked slots", facts.overbooked, "0", facts.overbooked == 0)
        table.check("slots.booked != bookings", facts.mismatched, "0", facts.mismatched == 0)
        table.check("duplicate holders", facts.duplicate_holders, "0", facts.duplicate_holders == 0)
        table.check(
            "201 answers", answers["booked"], f"= {facts.made} made",
            answers["booked"] == facts.made,
        )  # fmt: skip
    table.check("5xx", answers["5xx"], "0", answers["5xx"] == 0)
    table.check("other errors", answers["other"], "0", answers["other"] == 0)
    table.check("429 rate limited", answers["rate_limited"], "0 (limit off)", (
        answers["rate_limited"] == 0
    ))  # fmt: skip
    table.check(
        "attempts answered", outcome.answered, f"= {sizes.attempts}",
        outcome.answered == sizes.attempts and outcome.incomplete is None,
    )  # fmt: skip
    table.show("409 slot full", answers["slot_full"])
    table.show("409 phone limit", answers["phone_limit"])
    table.show("p50 ms", _ms(percentile(outcome.latencies_ms, 0.50)))
    table.show("p99 ms", _ms(percentile(outcome.latencies_ms, 0.99)))
    table.show("max ms", _ms(max(outcome.latencies_ms, default=math.nan)))
    clear = outcome.clear_seconds
    table.show("req/s", f"{outcome.answered / clear:.0f}" if clear > 0 else "-")
    table.show(
        "time to clear s", f"{clear:.1f}", f"<= {TARGET_CLEAR_S:.0f} (target)",
        "yes" if clear <= TARGET_CLEAR_S else "no (not enforced)",
    )  # fmt: skip
    return table


def outcome_notes(outcome: RushOutcome, facts: DbFacts | None, plan: CpuPlan) -> list[str]:
    notes = [
        f"  load generator pid {outcome.pid} on {procs.format_cpus(set(outcome.cpus))}"
        + ("" if set(outcome.cpus) == plan.loadgen else " (NOT as planned)")
        + f"; setup (hall, matter, booking rules, slot list) {outcome.setup_seconds:.1f} s",
        f"  hall {outcome.hall_id}, matter {outcome.service_id}: {len(outcome.offered)} slots "
        f"offered with {outcome.offered_places} places; {outcome.per_slot[0]} to "
        f"{outcome.per_slot[1]} attempts per slot; {outcome.reused_phones} phone numbers "
        "shared by several attempts",
    ]
    wall = outcome.clear_seconds or 1.0
    rest = (
        outcome.machine_cpu_seconds
        - outcome.server_cpu_seconds
        - outcome.loadgen_cpu_seconds
        - outcome.postgres_cpu_seconds
    )
    notes.append(
        f"  during the rush ({wall:.1f} s), CPU in % of one core: server "
        f"{100 * outcome.server_cpu_seconds / wall:.0f}, load generator "
        f"{100 * outcome.loadgen_cpu_seconds / wall:.0f}, PostgreSQL backends of the bench "
        f"database still open at the end {100 * outcome.postgres_cpu_seconds / wall:.0f}, the "
        f"rest of the machine (other PostgreSQL work, other processes) "
        f"{100 * max(0.0, rest) / wall:.0f}"
    )
    by_kind = [
        f"{kind} {_ms(percentile(times, 0.50))}/{_ms(percentile(times, 0.99))}"
        for kind, times in sorted(outcome.latencies_by_kind.items())
    ]
    if by_kind:
        notes.append(f"  latency p50/p99 ms by answer: {', '.join(by_kind)}")
    if outcome.answered:
        per = 1000 / outcome.answered
        notes.append(
            f"  CPU per attempt: server {per * outcome.server_cpu_seconds:.2f} ms, load "
            f"generator {per * outcome.loadgen_cpu_seconds:.2f} ms, PostgreSQL backends "
            f"{per * outcome.postgres_cpu_seconds:.2f} ms"
        )
    if outcome.incomplete:
        notes.append(f"  rush incomplete: {outcome.incomplete}")
    notes += [f"    error: {sample}" for sample in outcome.samples]
    if facts is not None:
        notes.append(
            f"  database: bookings by state {dict(sorted(facts.states.items()))}; offered "
            f"slots with a place left {facts.not_full}; stored slots not offered "
            f"{facts.stray_slots}"
        )
        notes += [f"    {example}" for example in facts.examples]
        notes.append(
            f"  PostgreSQL, bench database, setup included: {facts.sessions} connections "
            f"opened; backends ran statements for {facts.active_s:.1f} s and sat idle in a "
            f"transaction, waiting for the server, for {facts.idle_in_transaction_s:.1f} s"
        )
    if outcome.error:
        notes.append("  load generator stopped early:")
        notes += [f"    {line}" for line in outcome.error.strip().splitlines()]
    return notes


def describe(
    sizes: Sizes, spec: ServerSpec, plan: CpuPlan, timezone: str, client: str = "raw"
) -> list[str]:
    now = datetime.now(UTC).astimezone(ZoneInfo(timezone))
    lines = [
        f"booking rush, {spec.name}: {sizes.attempts} attempts for {sizes.places} places "
        f"({sizes.days} days x {sizes.slots_per_day} slots of {SLOT_MINUTES} min x "
        f"{sizes.capacity}), {sizes.concurrency} concurrent clients, "
        f"{sizes.reuse_share:.0%} of attempts share a phone number, seed {sizes.seed}",
        f"load generator: {describe_client(client)} in 1 process pinned to "
        f"{procs.format_cpus(plan.loadgen)}; server ({spec.workers} process"
        f"{'es' if spec.workers > 1 else ''}) on {procs.format_cpus(plan.server)}; "
        "PostgreSQL not pinned",
        f"server settings: {', '.join(f'{k}={v}' for k, v in spec.env)}"
        + (f", ONEDOOR_REDIS_URL={spec.redis_url}" if spec.redis_url else ""),
        f"hall clock: {timezone}, {now:%Y-%m-%d %H:%M} at the start (every slot ahead)",
    ]
    if plan.shared:
        lines.append("note: only one CPU is usable, so server and load generator share it.")
    return lines
