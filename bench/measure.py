"""What the benchmark scripts share: CPU accounting from /proc, percentiles, the machine's
description and py-spy profiling. Imported by the scripts in this folder (``python bench/x.py``
puts the folder on ``sys.path``)."""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# CPU accounting from /proc -----------------------------------------------------------------------


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    found = children(pid)
    return found + [d for child in found for d in descendants(child)]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
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


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: a value that was actually observed."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] if ordered else math.nan


# The machine -------------------------------------------------------------------------------------


def command_output(*argv: str) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "unknown"


def cpu_model() -> str:
    return next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )


# Profiling ---------------------------------------------------------------------------------------

# Sampling the thread that holds the GIL shows where CPU time goes; --subprocesses follows
# prefork's children.
PY_SPY_OPTIONS = ("--subprocesses", "--rate", "250", "--gil", "--nonblocking", "--format", "raw")


class Profiler:
    """py-spy on each of a phase's processes: raw collapsed stacks, GIL holder only."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.running: list[subprocess.Popen[bytes]] = []
        self.outputs: list[Path] = []

    def start(self, label: str, pids: list[int]) -> None:
        if self.directory is None:
            return
        py_spy = shutil.which("py-spy")
        if py_spy is None:
            raise RuntimeError("--profile needs py-spy: uv run --with py-spy python bench/...")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.outputs = [self.directory / f"{label}-{pid}.txt" for pid in pids]
        self.running = [
            subprocess.Popen(
                [py_spy, "record", "--pid", str(pid), *PY_SPY_OPTIONS, "--output", str(output)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for pid, output in zip(pids, self.outputs, strict=True)
        ]
        time.sleep(1)  # let py-spy attach before the load starts

    def finish(self) -> None:
        if not self.running:
            return
        for child in self.running:
            child.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for child in self.running:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.running = []
        print_profile(self.outputs)


def print_profile(outputs: Sequence[Path], top: int = 15) -> None:
    """Where the GIL-holding samples were: the app's functions (inclusive) and the packages
    whose code was running (exclusive), heaviest first."""
    total = 0
    app: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    for output in outputs:
        if not output.exists():
            continue
        for line in output.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            samples = int(count)
            total += samples
            frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
            for frame in set(frames):
                if frame.split("(")[-1].startswith(("destinations/", "dashboard/")):
                    app[frame] += samples
            where = frames[-1].split("(")[-1]
            packages[where.split("/")[0] if "/" in where else "stdlib/other"] += samples
    print(f"   profile: {total:,} samples in {', '.join(str(o) for o in outputs)}")
    print("   app functions, inclusive:")
    for frame, samples in app.most_common(top):
        print(f"   {100 * samples / max(total, 1):5.1f}%  {frame}")
    print("   running code by package, exclusive:")
    for package, samples in packages.most_common(top):
        print(f"   {100 * samples / max(total, 1):5.1f}%  {package}")


# PostgreSQL --------------------------------------------------------------------------------------

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as connection:
        connection.execute(sql)


def pg_recreate(database: str) -> None:
    """A fresh, empty database of that name (the bench's own: never a shared one)."""
    pg_admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    pg_admin(f"CREATE DATABASE {database}")


def pg_query(dsn: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as connection:
        cursor = connection.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def pg_version(dsn: str) -> str:
    return "PostgreSQL " + str(pg_query(dsn, "SHOW server_version")[0][0]).split()[0]
