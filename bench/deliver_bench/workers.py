"""Child processes of a run: the benchmark's own roles (run to completion, answering JSON) and
the Celery worker processes of a worker config, with what their logs say about tasks."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from measure.paths import ROOT
from measure.servers import ProcessGroup
from measure.stats import percentile

from deliver_bench.config import SELF, WorkerConfig


def bench_role(
    role: str, env: dict[str, str], *args: str, script: Sequence[str] = SELF
) -> dict[str, Any]:
    """Run one of the benchmark's roles (of ``script``: python and a bench script) in a child
    process; its last line of output is JSON."""
    done = subprocess.run(
        [*script, role, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        name = Path(script[-1]).name
        raise RuntimeError(f"{name} {role} failed:\n{done.stdout}{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def start_workers(
    config: WorkerConfig, env: dict[str, str], directory: Path, label: str
) -> list[ProcessGroup]:
    """The config's worker processes; the first also runs beat (the sweeper)."""
    worker_env = env | {"DELIVERY_CONCURRENCY": str(config.delivery_concurrency)}
    groups: list[ProcessGroup] = []
    try:
        for index in range(config.processes):
            argv = [sys.executable, "-m", "celery", "-A", "dashboard.project", "worker"]
            if index == 0:
                argv += ["--beat", "--schedule", str(directory / f"beat-{label}")]
            argv += ["--pool", config.pool, "--concurrency", str(config.concurrency)]
            argv += ["--hostname", f"bench{index}@%h", "--loglevel", "INFO"]
            argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
            log = directory / f"worker-{label}-{index}.log"
            groups.append(ProcessGroup(argv, worker_env, log))
        for index, group in enumerate(groups):
            group.wait_for(lambda g=group: " ready." in g.text(), f"worker {index}")  # type: ignore[misc]
    except BaseException:
        for group in groups:
            group.stop()
        raise
    return groups


TASK_LINE = re.compile(
    r"Task destinations\.deliver\[[^\]]+\] succeeded in ([\d.]+)s: \{'claimed': (\d+)"
)


@dataclass
class TaskStats:
    """The ``destinations.deliver`` tasks the workers logged as done, and how long each took."""

    tasks: int = 0
    empty: int = 0  # woke up, claimed nothing: a duplicate wake-up (sweeper or redelivery)
    seconds: list[float] = field(default_factory=list)

    @classmethod
    def from_logs(cls, groups: Sequence[ProcessGroup]) -> TaskStats:
        stats = cls()
        for group in groups:
            for match in TASK_LINE.finditer(group.text()):
                stats.tasks += 1
                stats.empty += match.group(2) == "0"
                stats.seconds.append(float(match.group(1)))
        return stats

    @property
    def median_ms(self) -> float:
        return percentile(self.seconds, 0.5) * 1000
