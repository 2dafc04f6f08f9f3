"""Processes and the machine as /proc shows them: a process's children, its CPU time and
memory, the processes of a name, and the CPU time the whole machine has been busy."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

# CPU accounting from /proc -----------------------------------------------------------------------


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    found = children(pid)
    return found + [d for child in found for d in descendants(child)]


def process_cpu_seconds(pid: int, reaped: bool = False) -> float:
    """User + system CPU time of one process so far; with ``reaped``, with that of its
    children that have exited and been waited for (a server's short-lived workers)."""
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks = int(fields[11]) + int(fields[12])
        if reaped:
            ticks += int(fields[13]) + int(fields[14])
        return ticks / os.sysconf("SC_CLK_TCK")
    return 0.0


def pids_named(name: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == name:
                    pids.append(int(entry.name))
    return pids


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (not idle, not waiting on I/O)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


# Memory of a process, from /proc -----------------------------------------------------------------


def memory_mb(field: str = "VmRSS", pid: int | None = None) -> float:
    """A process's (this one's if ``pid`` is None) resident memory now (``VmRSS``) or at its
    peak (``VmHWM``), in MiB; NaN if it has gone."""
    try:
        status = Path(f"/proc/{pid or 'self'}/status").read_text()
    except OSError:
        return math.nan
    for line in status.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return math.nan


def reset_peak_memory() -> None:
    """Start ``VmHWM`` again from the current RSS (Linux 4.0+), so that it gives the peak of
    what follows, not of everything the process did before."""
    Path("/proc/self/clear_refs").write_text("5")
