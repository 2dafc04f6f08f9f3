"""The cores a phase kept busy, per group of processes (``CpuMeter``), and waiting for the
machine to be quiet before measuring."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection

from measure.proc import machine_busy_seconds, process_cpu_seconds


class CpuMeter:
    """Average cores busy over a phase: the whole machine, each group of processes, this
    process (``own``: the bench itself, e.g. its load generator) and "other": what none of them
    used, i.e. anything else running on the machine at the time.

    A process counts from its first sample (0 if it started during the phase) to the last;
    one that exits during the phase takes its CPU time with it, so groups are sampled before
    anything in them is stopped. For the groups named in ``reaped`` (a server whose children
    come and go, such as PostgreSQL's backends), a process's exited children count too."""

    def __init__(
        self,
        groups: dict[str, Callable[[], list[int]]],
        own: str = "bench",
        reaped: Collection[str] = (),
    ) -> None:
        self.groups = groups | {own: lambda: [os.getpid()]}
        self.reaped = set(reaped)
        self.started = time.monotonic()
        self.wall = 0.0
        self.machine = machine_busy_seconds()
        self.first = {name: self.sample(pids, name) for name, pids in self.groups.items()}

    def sample(self, pids: Callable[[], list[int]], name: str) -> dict[int, float]:
        reaped = name in self.reaped
        return {pid: process_cpu_seconds(pid, reaped) for pid in set(pids())}

    def seconds(self) -> dict[str, float]:
        """CPU seconds used since the meter started: the machine's, each group's, "other"."""
        self.wall = time.monotonic() - self.started
        used = {"machine": machine_busy_seconds() - self.machine}
        for name, pids in self.groups.items():
            first = self.first[name]
            now = self.sample(pids, name)
            used[name] = sum(v - first.get(pid, 0.0) for pid, v in now.items())
        accounted = sum(v for k, v in used.items() if k != "machine")
        used["other"] = max(0.0, used["machine"] - accounted)
        return used

    def cores(self) -> dict[str, float]:
        used = self.seconds()
        return {k: round(v / self.wall, 2) for k, v in used.items()}


def cpu_text(cpu: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.2f}" for name, value in cpu.items())


def wait_for_quiet(
    ignore: Callable[[], list[int]] = list, most_cores: float = 0.3, timeout: float = 5
) -> float:
    """Other jobs on the machine skew every number: wait, at most ``timeout`` seconds, until the
    machine is nearly idle, not counting the ``ignore`` processes (an idle server that is part
    of the setup). Returns the cores busy in the last second looked at."""
    deadline = time.monotonic() + timeout
    warned = False
    while True:
        meter = CpuMeter({"ignored": ignore})
        time.sleep(1)
        cores = meter.cores()
        busy = cores["machine"] - cores["ignored"]
        if busy <= most_cores or time.monotonic() > deadline:
            if busy > most_cores:
                print(f"   WARNING: the machine is still {busy:.2f} cores busy; going ahead")
            return busy
        if not warned:
            print(f"   waiting for the machine to quieten ({busy:.2f} cores busy)...", flush=True)
            warned = True
