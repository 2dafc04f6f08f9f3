"""The three phases against one backend: throughput per worker config (1), the ceiling per
concurrency shape (2) and the latency under load (3), each verified against the database and
the fake Refiner's counts. The app's delivery statuses come from the app itself, so the bench
process has Django loaded (``measure.app.load_app``)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from measure.app import clean_env, manage
from measure.cpu import CpuMeter, cpu_text, wait_for_quiet
from measure.paths import ROOT
from measure.profiler import Profiler
from measure.servers import ProcessGroup, free_port, start_server

from deliver_bench.backends import Backend, PostgresBackend, moment
from deliver_bench.config import DRAIN_SECONDS, SELF, Plan, WorkerConfig, shape_text
from deliver_bench.load import open_loop
from deliver_bench.refiner import fake_refiner_counts
from deliver_bench.results import BackendRun, Ceiling, Latency, Throughput
from deliver_bench.workers import TaskStats, bench_role, start_workers


def open_statuses() -> list[str]:
    """The app's statuses of a delivery that is not finished yet."""
    from destinations.models import FINISHED, DeliveryStatus

    return [status.value for status in DeliveryStatus if status not in FINISHED]


def delivered(rows: list[tuple[str, datetime, datetime]]) -> int:
    from destinations.models import DeliveryStatus

    return sum(1 for status, _, _ in rows if status == DeliveryStatus.DELIVERED)


class Bench:
    """One backend's phases, sharing the fake server and the ceiling results."""

    def __init__(
        self, backend: Backend, fake_port: int, fake_pid: int, work_dir: Path, plan: Plan
    ) -> None:
        self.backend = backend
        self.fake_port = fake_port
        self.fake_pid = fake_pid
        self.work_dir = work_dir
        self.plan = plan
        self.env = clean_env() | backend.env() | {"SWITCHBOARD_QUEUE": backend.queue}
        self.env |= {"PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO"}
        self.destination_id = 0
        self.write_key = ""
        self.runs = 0

    def prepare(self) -> None:
        self.backend.create()
        manage(self.env, "migrate", "--verbosity", "0")
        made = bench_role("setup", self.env, str(self.fake_port))
        self.destination_id, self.write_key = made["destination_id"], made["write_key"]

    def last_delivery_id(self) -> int:
        rows = self.backend.query("SELECT COALESCE(MAX(id), 0) FROM destinations_delivery")
        return int(rows[0][0])

    def unfinished(self, after_id: int) -> int:
        p, statuses = self.backend.placeholder, open_statuses()
        rows = self.backend.query(
            f"SELECT COUNT(*) FROM destinations_delivery WHERE id > {p} "
            f"AND status IN ({', '.join([p] * len(statuses))})",
            [after_id, *statuses],
        )
        return int(rows[0][0])

    def finished(self, after_id: int) -> list[tuple[str, datetime, datetime]]:
        p = self.backend.placeholder
        rows = self.backend.query(
            "SELECT status, received_at, finished_at FROM destinations_delivery "
            f"WHERE id > {p} AND finished_at IS NOT NULL",
            [after_id],
        )
        return [(status, moment(r), moment(f)) for status, r, f in rows]

    def wait_finished(self, after_id: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.unfinished(after_id):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
        return True

    def meter(self, **more: Callable[[], list[int]]) -> CpuMeter:
        groups = {**more, "fake Refiner": lambda: [self.fake_pid]}
        if isinstance(self.backend, PostgresBackend):
            groups["database + broker"] = self.backend.service_pids
        return CpuMeter(groups)

    # Phase 1: throughput ------------------------------------------------------------------------

    def throughput(self, config: WorkerConfig, profiler: Profiler) -> Throughput:
        self.runs += 1
        label = f"{self.backend.kind}-{self.runs}"
        events = self.plan.events
        self.backend.purge_broker()
        before_id = self.last_delivery_id()
        sent_before = fake_refiner_counts(self.fake_port)["requests"]
        started = time.perf_counter()
        bench_role("seed", self.env, f"t{self.runs}", str(events))
        seed_seconds = time.perf_counter() - started
        wait_for_quiet()
        workers_started = datetime.now(UTC)
        started = time.perf_counter()
        groups = start_workers(config, self.env, self.work_dir, label)
        startup = time.perf_counter() - started
        try:
            profiler.start(label, [g.process.pid for g in groups])
            meter = self.meter(workers=lambda: [p for g in groups for p in g.pids()])
            complete = self.wait_finished(before_id, self.plan.throughput_timeout)
            cpu = meter.cores()
            cpu_ms = {k: v * meter.wall * 1000 / events for k, v in cpu.items()}
            profiler.finish()
        finally:
            for group in groups:
                group.stop()
        rows = self.finished(before_id)
        ends = sorted(f for _, _, f in rows)
        first, last = (ends[0], ends[-1]) if ends else (workers_started, workers_started)
        span = (last - first).total_seconds()
        after_first = sum(1 for f in ends if f > first)
        result = Throughput(
            config=config,
            events=events,
            delivered=delivered(rows),
            sent=fake_refiner_counts(self.fake_port)["requests"] - sent_before,
            seed_seconds=seed_seconds,
            startup_seconds=startup,
            span_seconds=span,
            total_seconds=(last - workers_started).total_seconds(),
            rate=after_first / span if span > 0 else 0.0,
            cpu=cpu,
            cpu_ms=cpu_ms,
            tasks=TaskStats.from_logs(groups),
            complete=complete,
        )
        print(
            f"1. {self.backend.kind} {config.spec}: {result.delivered:,}/{events:,} delivered, "
            f"{result.rate:,.0f} deliveries/s over {span:.1f} s (first to last; "
            f"{events / max(result.total_seconds, 1e-9):,.0f}/s from worker start, which took "
            f"{startup:.1f} s); seeding took {seed_seconds:.1f} s",
            flush=True,
        )
        print(
            f"   tasks {result.tasks.tasks} ({result.tasks.empty} claimed nothing), median "
            f"{result.tasks.median_ms:.0f} ms; fake Refiner got {result.sent:,}; cores busy: "
            f"{cpu_text(cpu)}; CPU per delivery: workers {cpu_ms['workers']:.2f} ms, database + "
            f"broker {cpu_ms.get('database + broker', 0.0):.2f} ms; "
            f"{'verified' if result.verified else 'NOT VERIFIED'}",
            flush=True,
        )
        return result

    # Phase 3: latency under load ----------------------------------------------------------------

    def latency(self, config: WorkerConfig, profiler: Profiler) -> Latency:
        port = free_port()
        server = start_server(
            self.env | {"LOG_LEVEL": "WARNING"},
            port,
            self.plan.web_workers,
            self.work_dir / f"server-{self.backend.kind}.log",
            "--no-worker",
        )
        groups: list[ProcessGroup] = []
        try:
            wait_for_quiet()
            self.backend.purge_broker()
            before_id = self.last_delivery_id()
            sent_before = fake_refiner_counts(self.fake_port)["requests"]
            groups = start_workers(config, self.env, self.work_dir, f"{self.backend.kind}-lat")
            profiler.start(f"{self.backend.kind}-lat", [g.process.pid for g in groups])
            meter = self.meter(
                workers=lambda: [p for g in groups for p in g.pids()], web=server.pids
            )
            rate, seconds = self.plan.rate, self.plan.latency_seconds
            tally = asyncio.run(open_loop(port, self.write_key, rate, seconds))
            complete = self.wait_finished(before_id, DRAIN_SECONDS)
            cpu = meter.cores()
            worker_seconds = cpu["workers"] * meter.wall
            profiler.finish()
        finally:
            for group in groups:
                group.stop()
            server.stop()
        rows = self.finished(before_id)
        # A delivery not finished DRAIN_SECONDS after the load stopped counts as infinitely late.
        seconds_each = [(f - r).total_seconds() for _, r, f in rows]
        seconds_each += [math.inf] * (tally.statuses.get(200, 0) - len(rows))
        result = Latency(
            rate=rate,
            seconds=seconds,
            config=config,
            requests=tally.requests,
            accepted=tally.statuses.get(200, 0),
            ingest_seconds=tally.latencies,
            delivered=delivered(rows),
            sent=fake_refiner_counts(self.fake_port)["requests"] - sent_before,
            seconds_each=seconds_each,
            cpu=cpu,
            worker_ms_per_task=0.0,
            tasks=TaskStats.from_logs(groups),
            complete=complete,
        )
        result.worker_ms_per_task = 1000 * worker_seconds / max(result.tasks.tasks, 1)
        print(
            f"3. {self.backend.kind} {config.spec}: /v1/track at {rate:g}/s for {seconds:g} s: "
            f"{result.accepted:,}/{result.requests:,} accepted {dict(tally.statuses)} (ingest p50 "
            f"{result.ingest_ms(0.5):.1f} ms, p99 {result.ingest_ms(0.99):.1f} ms); "
            f"{result.delivered:,} delivered; received -> delivered p50 "
            f"{result.shown(0.5)}, p95 {result.shown(0.95)}, p99 {result.shown(0.99)}, max "
            f"{result.shown(1)} (unfinished: not delivered {DRAIN_SECONDS} s after the load)",
            flush=True,
        )
        print(
            f"   tasks {result.tasks.tasks} ({result.tasks.empty} claimed nothing), workers' CPU "
            f"{result.worker_ms_per_task:.1f} ms per task; cores busy: "
            f"{cpu_text(cpu)}; {'verified' if result.verified else 'NOT VERIFIED'}",
            flush=True,
        )
        return result


# Phase 2: the ceiling -----------------------------------------------------------------------------


def measure_ceiling(
    shape: tuple[int, int], fake_port: int, fake_pid: int, seconds: float
) -> Ceiling:
    processes, threads = shape
    wait_for_quiet()
    start_at = time.time() + 1.5  # every process has imported requests and started its threads
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    children_ = [
        subprocess.Popen(
            [*SELF, "ceiling", str(fake_port), str(threads), repr(start_at), str(seconds)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    time.sleep(max(0.0, start_at - time.time()))
    meter = CpuMeter(
        {
            "clients": lambda: [c.pid for c in children_],
            "fake Refiner": lambda: [fake_pid],
        }
    )
    time.sleep(seconds)
    cpu = meter.cores()
    outputs = [json.loads(c.communicate(timeout=60)[0].strip().splitlines()[-1]) for c in children_]
    ceiling = Ceiling(
        shape=shape,
        requests=sum(o["requests"] for o in outputs),
        errors=sum(o["errors"] for o in outputs),
        seconds=seconds,
        cpu=cpu,
    )
    print(
        f"2. ceiling, requests.Session loop, {shape_text(shape)}: {ceiling.requests:,} requests "
        f"in {seconds:g} s = {ceiling.rate:,.0f}/s ({ceiling.errors} not 200); cores busy: "
        f"{cpu_text(cpu)}",
        flush=True,
    )
    return ceiling


# One backend, every phase -------------------------------------------------------------------------


def run_backend(
    backend: Backend,
    plan: Plan,
    fake: tuple[int, int],
    ceilings: dict[tuple[int, int], Ceiling],
    profiler: Profiler,
    work_dir: Path,
) -> BackendRun:
    print(f"\n=== {backend.title}", flush=True)
    bench = Bench(backend, *fake, work_dir, plan)
    try:
        bench.prepare()
        version = backend.version()
        throughputs = []
        for config in plan.configs:
            throughputs.append(bench.throughput(config, profiler))
            if config.shape not in ceilings:
                ceilings[config.shape] = measure_ceiling(config.shape, *fake, plan.ceiling_seconds)
            ceiling = ceilings[config.shape]
            print(f"   = {100 * throughputs[-1].rate / ceiling.rate:.0f}% of the ceiling")
        run = BackendRun(backend, version, throughputs, None)
        latency_config = plan.latency_config or run.best().config
        run.latency = bench.latency(latency_config, profiler) if plan.latency_seconds else None
        return run
    finally:
        backend.drop()
