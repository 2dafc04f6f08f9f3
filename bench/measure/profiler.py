"""py-spy on a phase's processes, and where the samples were."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

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
