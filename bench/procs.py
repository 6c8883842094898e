"""Linux process facts read from /proc: process-group members, CPU time and CPU affinity."""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, or None if the process is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    return text[text.rindex(")") + 2 :].split()


def group_pids(pgid: int) -> list[int]:
    """The live processes of process group ``pgid``, in pid order."""
    members = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        # After the name: state, ppid, pgrp, ...
        if fields is not None and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return sorted(members)


def role(pid: int) -> str:
    """What a server process is, from its command line: "worker" (a uvicorn worker),
    "resource tracker" (multiprocessing's helper) or "main"; "gone" if it has exited."""
    try:
        command = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return "gone"
    if b"multiprocessing.spawn" in command:
        return "worker"
    if b"multiprocessing.resource_tracker" in command:
        return "resource tracker"
    return "main"


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time the live ``pids`` have used so far (exited ones count 0)."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            # utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the name.
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def group_cpu_seconds(pgid: int) -> float:
    """CPU time used so far by the live members of process group ``pgid``."""
    return cpu_seconds(group_pids(pgid))


def machine_busy_seconds() -> float:
    """CPU time all CPUs of the machine have spent not idle since boot (/proc/stat)."""
    # user nice system idle iowait irq softirq steal
    ticks = [int(n) for n in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS


def format_cpus(cpus: set[int] | frozenset[int]) -> str:
    """``{0}`` → ``"CPU 0"``, ``{0, 1}`` → ``"CPUs 0,1"``."""
    ordered = sorted(cpus)
    label = "CPU" if len(ordered) == 1 else "CPUs"
    return f"{label} {','.join(map(str, ordered))}"


def rss_mib(pid: int) -> float | None:
    """The resident memory of ``pid`` (VmRSS of /proc/<pid>/status) in MiB; None if gone."""
    try:
        status = (PROC / str(pid) / "status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None
