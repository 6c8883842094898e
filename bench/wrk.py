"""Drive one HTTP phase with wrk (the Debian package's /usr/bin/wrk): one connection per wrk
thread, a Lua script from bench/lua/ for the requests, and the script's JSON summary parsed."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LUA = Path(__file__).parent / "lua"
WRK = "wrk"
TIMEOUT_S = 60
"""wrk's --timeout: its histogram drops latencies above it, so keep it far above any p99."""
MARKER = "BENCH_RESULT "


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed no result; the message says which."""


@dataclass(frozen=True)
class WrkJob:
    script: str
    """The phase's part in bench/lua/ (``issue``, ``call``, ``get``), after common.lua."""
    base_url: str
    connections: int
    duration_s: int
    cpus: frozenset[int]
    interval_ms: float = 0.0
    """> 0: each connection sends one request per interval (see common.lua)."""
    settings: dict[str, str] = field(default_factory=dict)
    """BENCH_* values the script reads, without the prefix, e.g. ``{"HALL": "1"}``."""
    each: dict[str, list[str]] = field(default_factory=dict)
    """Per-connection values: connection i gets item i (cycling) as the Lua global ``name``."""
    keep_ids: bool = False


@dataclass(frozen=True)
class WrkResult:
    seconds: float
    requests: int
    """Answers received (a request still in flight when the time is up is not counted)."""
    status: dict[str, int]
    """Answers by class: ``2xx``, ``3xx``, ``4xx``, ``5xx``."""
    socket_errors: dict[str, int]
    p50_ms: float
    p99_ms: float
    max_ms: float
    samples: list[str]
    """A few non-2xx answers: status and the start of the body."""
    ids: list[int]
    """The ``id`` each 2xx answer started with (when the job asked for them)."""
    counts: dict[str, int]
    """What the script counted, e.g. ``called``, ``resolved``, ``nobody_waiting``."""

    @property
    def rate(self) -> float:
        """Answers per second."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def non_2xx(self) -> int:
        return self.requests - self.status.get("2xx", 0)

    @property
    def failed_sockets(self) -> int:
        """Connect, read and write errors (timeouts are slow answers, counted in ``p99``)."""
        return sum(n for kind, n in self.socket_errors.items() if kind != "timeout")


def describe() -> str:
    """Which wrk runs the load, e.g. ``wrk debian/4.1.0-3+b2 [epoll]``."""
    path = shutil.which(WRK)
    if path is None:
        return "wrk (not installed)"
    done = subprocess.run([path, "-v"], capture_output=True, text=True, check=False)
    first = (done.stdout + done.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0] if first else "wrk"


def script_text(part: str) -> str:
    """common.lua followed by the phase's own part."""
    return (LUA / "common.lua").read_text() + "\n" + (LUA / f"{part}.lua").read_text()


def command(job: WrkJob, script: Path) -> list[str]:
    """``taskset -c CPUS wrk -t N -c N -d Ds ...``: one thread per connection."""
    cpus = ",".join(map(str, sorted(job.cpus)))
    return [
        "taskset",
        "-c",
        cpus,
        WRK,
        f"-t{job.connections}",
        f"-c{job.connections}",
        f"-d{job.duration_s}s",
        f"--timeout={TIMEOUT_S}s",
        "-s",
        str(script),
        job.base_url + "/",
    ]


def environment(job: WrkJob, base: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith("BENCH_")}
    env.update({f"BENCH_{name}": value for name, value in job.settings.items()})
    env.update({f"BENCH_{name}": "\n".join(values) for name, values in job.each.items()})
    env["BENCH_EACH"] = " ".join(job.each)
    env["BENCH_CONNECTIONS"] = str(job.connections)
    env["BENCH_INTERVAL_MS"] = f"{job.interval_ms:.3f}"
    env["BENCH_IDS"] = "1" if job.keep_ids else "0"
    return env


def _ms(latency: dict[str, Any] | None, key: str) -> float:
    return math.nan if latency is None else float(latency[key]) / 1000


def parse(stdout: str) -> WrkResult:
    """The result line done() printed; WrkError if there is none."""
    lines = [line for line in stdout.splitlines() if line.startswith(MARKER)]
    if not lines:
        raise WrkError(f"wrk printed no result:\n{stdout[-1500:]}")
    data = json.loads(lines[-1][len(MARKER) :])
    latency = data["latency_us"]
    return WrkResult(
        seconds=data["duration_us"] / 1e6,
        requests=int(data["requests"]),
        status={k: int(v) for k, v in data["status"].items()},
        socket_errors={k: int(v) for k, v in data["socket_errors"].items()},
        p50_ms=_ms(latency, "p50"),
        p99_ms=_ms(latency, "p99"),
        max_ms=_ms(latency, "max"),
        samples=[str(s) for s in data["samples"]],
        ids=[int(i) for i in data["ids"]],
        counts={k: int(v) for k, v in data["counts"].items()},
    )


def run(job: WrkJob, env: dict[str, str]) -> WrkResult:
    """Run ``job`` to the end (its duration plus wrk's start-up) and return what it measured."""
    if shutil.which(WRK) is None:
        raise WrkError("wrk is not installed (Debian package wrk: apt-get install wrk)")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix=f"bench-{job.script}-") as script:
        script.write(script_text(job.script))
        script.flush()
        try:
            done = subprocess.run(
                command(job, Path(script.name)),
                env=environment(job, env),
                capture_output=True,
                text=True,
                timeout=job.duration_s + TIMEOUT_S + 30,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise WrkError(f"wrk did not finish within {exc.timeout:.0f} s") from exc
    if done.returncode != 0:
        raise WrkError(f"wrk exited with {done.returncode}: {(done.stderr or done.stdout)[-800:]}")
    return parse(done.stdout)
