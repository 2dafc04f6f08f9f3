"""The ingest benchmark's constants, its targets and the plan of a run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

PG_BENCH_DB = "switchboard_bench"
REDIS_URL = "redis://127.0.0.1:6379/14"
BATCH_SIZE = 100
USERS = 10_000  # userIds are drawn from this pool
# Targets on a 2-core machine with PostgreSQL (the issue that asked for this benchmark).
TARGET_BATCH_EVENTS = 10_000  # events/s in 100-event batches
TARGET_SINGLE_REQUESTS = 1_000  # single-event requests/s
TARGET_P99_MS = 50  # p99 at the fixed offered rate
TARGET_HIGH_RATE_P99_MS = 100  # p99 at the higher offered rate
TARGET_FLOOR_SHARE = 0.5  # single-event requests/s as a share of the HTTP floor's
TARGET_BATCH_CEILING_SHARE = 0.7  # batched events/s as a share of the database ceiling's
TARGET_CPU_SHARE = 0.25  # CPU per event as a share of the baseline's
# CPU per event (server + database, ms) measured at 407a8df, before group commit: the baseline
# the CPU target is set against (single event; batched event).
BASELINE_CPU_MS = {"postgres": (3.9, 0.56), "sqlite": (4.2, 0.24)}
DISTURBED_CORES = 0.3  # a phase during which other processes used more is flagged

# A request factory returns the bytes of request number n and how many events it carries.
MakeRequest = Callable[[int], tuple[bytes, int]]


@dataclass(frozen=True)
class Plan:
    """What a run does: its phases' lengths and connections, the server's processes."""

    single_seconds: float
    batch_seconds: float
    rate_seconds: float
    single_connections: int
    batch_connections: int
    rate: float
    high_rate: float
    workers: int
    cache_url: str
