"""The delivery benchmark's constants, its worker configs and the plan of a run."""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass

from measure.paths import ROOT

# The benchmark's roles (the fake Refiner, the ceiling's clients, the Django roles) run as
# child processes of its entry point.
SELF = (sys.executable, str(ROOT / "bench" / "deliver.py"))
PG_BENCH_DB = "switchboard_bench_deliver"
BROKER_URL = "redis://127.0.0.1:6379/5"
CACHE_URL = "redis://127.0.0.1:6379/6"
API_KEY = "rk_bench"
SOURCE_NAME = "Bench"
DESTINATION_NAME = "Refiner (bench)"
USERS = 10_000  # userIds are drawn from this pool

TARGET_RATE = 1_000.0  # deliveries/s on this 2-core machine
TARGET_SHARE = 0.5  # of the ceiling at equal concurrency
TARGET_P95_SECONDS = 1.0  # received -> delivered at the offered rate
DRAIN_SECONDS = 30  # after the latency phase's load, how long deliveries may take to finish

# Pools and concurrency that production would pick from on 2 cores.
DEFAULT_CONFIGS = "threads:1x4x16,threads:2x2x16,prefork:1x2x16"
QUICK_CONFIGS = "threads:1x4x16"
# The latency phase runs the threads pool that `manage.py start` runs, in two processes: on
# PostgreSQL + Redis the prefork pool (sometimes the best for throughput) let deliveries fall
# seconds behind at 200 events/s with its workers mostly idle, which is still to be explained.
LATENCY_CONFIG = "threads:2x2x16"


@dataclass(frozen=True)
class WorkerConfig:
    """``processes`` Celery worker commands with ``--pool pool --concurrency concurrency``,
    each task sending with ``DELIVERY_CONCURRENCY=delivery_concurrency`` threads."""

    pool: str
    processes: int
    concurrency: int
    delivery_concurrency: int

    @classmethod
    def parse(cls, text: str) -> WorkerConfig:
        match = re.fullmatch(r"(threads|prefork):(\d+)x(\d+)x(\d+)", text.strip())
        if not match:
            raise argparse.ArgumentTypeError(
                f"{text!r}: a config is POOL:PROCESSESxCONCURRENCYxDELIVERY_CONCURRENCY, "
                "e.g. threads:1x4x16"
            )
        pool, *numbers = match.groups()
        return cls(pool, *(int(n) for n in numbers))

    @property
    def spec(self) -> str:
        return f"{self.pool}:{self.processes}x{self.concurrency}x{self.delivery_concurrency}"

    @property
    def shape(self) -> tuple[int, int]:
        """(processes that send, sending threads in each) when every task sends at once."""
        if self.pool == "threads":
            return self.processes, self.concurrency * self.delivery_concurrency
        return self.processes * self.concurrency, self.delivery_concurrency

    @property
    def description(self) -> str:
        unit = "threads" if self.pool == "threads" else "child processes"
        processes = "1 process" if self.processes == 1 else f"{self.processes} processes"
        return (
            f"`--pool {self.pool}`, {processes} x {self.concurrency} {unit}, "
            f"`DELIVERY_CONCURRENCY={self.delivery_concurrency}`"
        )


def shape_text(shape: tuple[int, int]) -> str:
    processes, threads = shape
    return f"{processes} x {threads} threads"


@dataclass(frozen=True)
class Plan:
    """What a run does: its sizes, its worker configs and its phases' lengths."""

    events: int
    configs: tuple[WorkerConfig, ...]
    ceiling_seconds: float
    rate: float
    latency_seconds: float
    web_workers: int
    throughput_timeout: float
    # None: the best throughput config's workers.
    latency_config: WorkerConfig | None = None
