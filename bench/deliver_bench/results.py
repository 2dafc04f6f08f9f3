"""What each phase measured (a throughput run, the ceiling, the latency under load) and one
backend's results, with the checks that say whether a run is verified."""

from __future__ import annotations

import math
from dataclasses import dataclass

from measure.stats import percentile

from deliver_bench.backends import Backend
from deliver_bench.config import WorkerConfig
from deliver_bench.workers import TaskStats


@dataclass
class Throughput:
    """Phase 1, one worker config: stored events delivered by workers started afterwards."""

    config: WorkerConfig
    events: int
    delivered: int
    sent: int  # requests the fake server received
    seed_seconds: float
    startup_seconds: float  # worker start until ready
    span_seconds: float  # first finished_at to last
    total_seconds: float  # worker start to the last finished_at
    rate: float  # deliveries/s after the first batch, over span_seconds
    cpu: dict[str, float]
    cpu_ms: dict[str, float]  # CPU time per delivery, by group of processes
    tasks: TaskStats
    complete: bool

    @property
    def verified(self) -> bool:
        return self.complete and self.delivered == self.events == self.sent


@dataclass
class Ceiling:
    """Phase 2: a plain ``requests.Session`` loop with a config's concurrency shape."""

    shape: tuple[int, int]
    requests: int
    errors: int
    seconds: float
    cpu: dict[str, float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


@dataclass
class Latency:
    """Phase 3: received -> delivered while single events arrive at a fixed rate."""

    rate: float
    seconds: float
    config: WorkerConfig
    requests: int
    accepted: int
    ingest_seconds: list[float]
    delivered: int
    sent: int
    seconds_each: list[float]  # received -> delivered, per delivery
    cpu: dict[str, float]
    worker_ms_per_task: float
    tasks: TaskStats
    complete: bool

    def p(self, fraction: float) -> float:
        return percentile(self.seconds_each, fraction)

    def shown(self, fraction: float) -> str:
        value = self.p(fraction)
        return "unfinished" if math.isinf(value) else f"{value * 1000:,.0f} ms"

    def ingest_ms(self, fraction: float) -> float:
        return percentile(self.ingest_seconds, fraction) * 1000

    @property
    def verified(self) -> bool:
        return self.complete and self.requests == self.accepted == self.delivered == self.sent


@dataclass
class BackendRun:
    backend: Backend
    version: str
    throughputs: list[Throughput]
    latency: Latency | None

    def best(self) -> Throughput:
        return max(self.throughputs, key=lambda t: (t.verified, t.rate))
