"""Every phase against one backend: the server started as production starts it, a source whose
rate limit is lifted, then s. seed, a. single events, b. batches, c. a fixed offered rate and,
with the server stopped, d. the ceiling. After each phase the stored rows are counted by
messageId prefix and must match what was sent and what the answers reported."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from measure.app import NO_LIMIT, clean_env, manage
from measure.cpu import CpuMeter, cpu_text, wait_for_quiet
from measure.profiler import Profiler
from measure.servers import HOST, ProcessGroup, free_port, start_server, web_server_pids
from measure.stats import percentile

from ingest_bench.backends import Backend, copied_rows, count_rows
from ingest_bench.client import Tally, closed_loop, open_loop
from ingest_bench.config import BATCH_SIZE, USERS, Plan
from ingest_bench.payloads import batch_requests, single_requests

# Before a phase, how long to wait at most for the machine to go quiet (it may be shared).
QUIET_SECONDS = 30
# The floor phase's server runs bench/ingest_bench/floor_app.py instead of Switchboard's app.
FLOOR_ENV = {
    "SWITCHBOARD_WSGI_APPLICATION": "ingest_bench.floor_app.application",
    "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
}


@dataclass
class PhaseResult:
    """One load phase: what was sent and answered, the rows stored, the cores busy."""

    name: str
    tally: Tally
    seconds: float
    rows: int
    cpu: dict[str, float]
    note: str
    stores: bool = True  # False: the HTTP floor, which answers without storing

    @property
    def events_per_second(self) -> float:
        return self.tally.ok_events / self.seconds

    @property
    def requests_per_second(self) -> float:
        return self.tally.requests / self.seconds

    def cpu_ms(self, group: str) -> float:
        """CPU milliseconds ``group`` used per request, on average."""
        return 1000 * self.cpu[group] / self.requests_per_second

    def cpu_bound(self) -> float:
        """Requests/s if the server, databases and load generator had every core to themselves
        at the CPU cost per request measured here: an upper bound, as if nothing else waited."""
        ours = self.cpu["server"] + self.cpu["database"] + self.cpu["load generator"]
        return (os.cpu_count() or 1) * self.requests_per_second / ours

    def latency_ms(self, fraction: float) -> float:
        return percentile(self.tally.latencies, fraction) * 1000

    @property
    def verified(self) -> bool:
        tally = self.tally
        all_ok = tally.statuses.get("200", 0) == tally.requests
        if not self.stores:
            return all_ok and self.rows == 0 == tally.stored_reported
        return all_ok and self.rows == tally.events == tally.stored_reported

    def cpu_ms_per_event(self) -> float:
        """Server and database CPU milliseconds per event stored."""
        per_request = self.cpu_ms("server") + self.cpu_ms("database")
        return per_request * self.tally.requests / max(1, self.tally.events)


@dataclass
class Ceiling:
    """Phase d: one connection inserting phase b's rows straight into the events table."""

    method: str
    rows: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds


@dataclass
class BackendRun:
    backend: Backend
    version: str
    phases: dict[str, PhaseResult]  # by messageId prefix
    ceilings: list[Ceiling]


def run_backend(backend: Backend, plan: Plan, profile_dir: Path | None) -> BackendRun:
    """Every phase on a fresh database of ``backend``; the server is stopped and the database
    dropped whatever happens."""
    print(f"\n=== {backend.title}: fresh database", flush=True)
    # The embedded defaults for everything but what the backend sets: no stray configuration.
    env = clean_env() | {"SWITCHBOARD_DATA_DIR": str(backend.data_dir), "LOG_LEVEL": "WARNING"}
    env |= backend.server_env()
    server: ProcessGroup | None = None
    try:
        backend.create()
        port = free_port()
        server = start_server(env, port, plan.workers, backend.data_dir / "server.log")
        write_key = manage(env, "createsource", "Bench").split()[-1]
        p = backend.placeholder
        backend.query(
            f"UPDATE destinations_source SET rate_limit_per_second = {p} WHERE write_key = {p}",
            [NO_LIMIT, write_key],
        )
        version = backend.version()
        print(f"manage.py start on {HOST}:{port}, {plan.workers} web server processes; {version}")
        auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
        profiler = Profiler(profile_dir)
        phases: dict[str, PhaseResult] = {}

        def phase(
            prefix: str,
            name: str,
            note: str,
            load: Coroutine[Any, Any, Tally],
            stores: bool = True,
        ) -> None:
            assert server is not None
            wait_for_quiet(server.pids, timeout=QUIET_SECONDS)
            if prefix != "s":
                profiler.start(f"{backend.kind}-{prefix}", web_server_pids(server))
            groups = {"server": server.pids, "database": backend.database_pids}
            cpu_meter = CpuMeter(groups, own="load generator")
            started = time.perf_counter()
            tally = asyncio.run(load)
            seconds = time.perf_counter() - started
            cpu = cpu_meter.cores()
            rows = count_rows(backend, prefix)
            phases[prefix] = PhaseResult(name, tally, seconds, rows, cpu, note, stores)
            report(phases[prefix])
            profiler.finish()

        seed = batch_requests("s", auth, seed=True)
        phase(
            "s",
            f"s. seed: /v1/batch, {BATCH_SIZE} events per request, one event per user",
            "16 connections",
            closed_loop(port, 16, 600, seed, limit=USERS // BATCH_SIZE),
        )
        single, batch = plan.single_connections, plan.batch_connections
        phase(
            "a",
            "a. /v1/track, 1 event per request, closed loop",
            f"{single} connections",
            closed_loop(port, single, plan.single_seconds, single_requests("a", auth)),
        )
        phase(
            "b",
            f"b. /v1/batch, {BATCH_SIZE} events per request, closed loop",
            f"{batch} connections",
            closed_loop(port, batch, plan.batch_seconds, batch_requests("b", auth)),
        )
        phase(
            "c",
            f"c. /v1/track offered at {plan.rate:g} requests/s, open loop",
            f"{plan.rate_seconds:g} s",
            open_loop(port, plan.rate, plan.rate_seconds, single_requests("c", auth)),
        )
        phase(
            "e",
            f"e. /v1/track offered at {plan.high_rate:g} requests/s, open loop",
            f"{plan.rate_seconds:g} s",
            open_loop(port, plan.high_rate, plan.rate_seconds, single_requests("e", auth)),
        )
        server.stop(timeout=25)
        # The HTTP floor: the same server and client, /v1/track answered without storing.
        server = start_server(env | FLOOR_ENV, port, plan.workers, backend.data_dir / "floor.log")
        phase(
            "f",
            "f. HTTP floor: /v1/track authenticated and answered, nothing stored, closed loop",
            f"{single} connections",
            closed_loop(port, single, plan.single_seconds, single_requests("f", auth)),
            stores=False,
        )
        server.stop(timeout=25)
        server = None

        ceilings = []
        for prefix, method in zip("xy", backend.ceiling_methods, strict=False):
            rows = copied_rows(backend, "b", prefix)
            wait_for_quiet(timeout=QUIET_SECONDS)
            started = time.perf_counter()
            backend.insert(method, rows)
            ceiling = Ceiling(method, len(rows), time.perf_counter() - started)
            ceilings.append(ceiling)
            stored = count_rows(backend, prefix)
            print(
                f"d. ceiling, {method}, {BATCH_SIZE} rows per transaction, one connection: "
                f"{ceiling.rows:,} rows in {ceiling.seconds:.2f} s = "
                f"{ceiling.rows_per_second:,.0f} rows/s; table holds {stored:,}",
                flush=True,
            )
            if stored != len(rows):
                raise AssertionError(f"ceiling ({method}): {stored} rows stored of {len(rows)}")
        return BackendRun(backend, version, phases, ceilings)
    finally:
        if server is not None:
            server.stop(timeout=25)
        backend.drop()


def report(result: PhaseResult) -> None:
    """A phase's results as they come: rates, latency, statuses, cores, verification."""
    tally = result.tally
    print(
        f"{result.name}: {tally.requests:,} requests, {tally.events:,} events in "
        f"{result.seconds:.1f} s = {result.events_per_second:,.0f} events/s, "
        f"{result.requests_per_second:,.0f} requests/s; latency p50 {result.latency_ms(0.5):.1f}"
        f" ms, p99 {result.latency_ms(0.99):.1f} ms, max {result.latency_ms(1):.1f} ms "
        f"({result.note})",
        flush=True,
    )
    print(
        f"   statuses {dict(tally.statuses)}; most connections {tally.most_connections}; "
        f"cores busy: {cpu_text(result.cpu)}; CPU "
        f"per request: server {result.cpu_ms('server'):.2f} ms, "
        f"database {result.cpu_ms('database'):.2f} ms; CPU bound {result.cpu_bound():,.0f} "
        "requests/s",
        flush=True,
    )
    print(
        f"   verify: sent {tally.events:,} events, answers say {tally.stored_reported:,} stored,"
        f" table holds {result.rows:,}: {'OK' if result.verified else 'MISMATCH'}",
        flush=True,
    )
