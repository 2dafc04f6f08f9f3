"""The app as the replay benchmark runs it: its environment and Django roles, ``manage.py
start`` (the web server, the delivery worker and the replay worker, all its children in one
session, as production runs them: the kernel shares the CPU fairly between sessions, so the
replay worker's lower priority counts against the others' only within one), a CPU meter over
them, and the live load offered to the web server."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deliver_bench.backends import Backend, PostgresBackend
from deliver_bench.load import Tally, open_loop
from deliver_bench.refiner import fake_refiner_counts
from deliver_bench.workers import bench_role
from measure.app import clean_env
from measure.cpu import CpuMeter, cpu_text
from measure.proc import children, memory_mb, pids_named
from measure.profiler import Profiler
from measure.servers import ProcessGroup, free_port, start_server, web_server_pids

from replay_bench import database as db
from replay_bench.config import DRAIN_SECONDS, SELF, SERVICES, STILL_SECONDS, Plan
from replay_bench.results import LiveLoad


def process_niceness(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2 :].split()[16])
    return None


def rss_mb(pids: list[int]) -> float:
    return sum(memory_mb(pid=pid) for pid in pids)


def worker_of(server: ProcessGroup, queue: str) -> list[int]:
    """The Celery worker ``start`` runs for ``queue``: its pid, or none."""
    for pid in children(server.process.pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"celery" in argv and queue.encode() in argv:
            return [pid]
    return []


def service_pids() -> list[int]:
    """PostgreSQL's processes (the postmaster counts its exited backends: Django's connections
    come and go) and Redis; the whole servers, whoever they serve."""
    return pids_named("postgres") + pids_named("redis-server")


def wait_until(done: Callable[[], bool], timeout: float, every: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


class StartedApp:
    """One backend's app for the bench: its environment and roles, ``manage.py start``'s
    processes, a CPU meter over them, and the live load offered to its web server."""

    def __init__(
        self,
        backend: Backend,
        fake: tuple[int, int],
        work_dir: Path,
        plan: Plan,
        profiler: Profiler,
    ) -> None:
        from dashboard.project.queues import replay_queue

        self.backend = backend
        self.fake_port, self.fake_pid = fake
        self.work_dir = work_dir
        self.plan = plan
        self.profiler = profiler
        self.env = clean_env() | backend.env() | {"SWITCHBOARD_QUEUE": backend.queue}
        self.env |= {"PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO"} | dict(plan.app_env)
        self.replay_queue = replay_queue(backend.queue)
        self.write_key = ""
        self.destination_id = 0
        self.port = 0
        self.server: ProcessGroup | None = None

    def role(self, name: str, *args: object) -> dict[str, Any]:
        return bench_role(name, self.env, *(str(a) for a in args), script=SELF)

    def sent(self) -> int:
        return int(fake_refiner_counts(self.fake_port)["requests"])

    def delivery_worker(self) -> list[int]:
        return worker_of(self.server, self.backend.queue) if self.server else []

    def replay_worker(self) -> list[int]:
        return worker_of(self.server, self.replay_queue) if self.server else []

    def web(self) -> list[int]:
        return web_server_pids(self.server) if self.server else []

    def meter(self) -> CpuMeter:
        groups: dict[str, Callable[[], list[int]]] = {
            "web": self.web,
            "delivery worker": self.delivery_worker,
            "replay worker": self.replay_worker,
            "fake Refiner": lambda: [self.fake_pid],
        }
        if isinstance(self.backend, PostgresBackend):
            groups[SERVICES] = service_pids
        return CpuMeter(groups, reaped={SERVICES})

    def start(self) -> None:
        """``manage.py start``: migrations (done), the web server, both workers."""
        self.port = free_port()
        self.server = start_server(
            self.env | {"LOG_LEVEL": "WARNING"},
            self.port,
            self.plan.web_workers,
            self.work_dir / f"start-{self.backend.kind}.log",
        )
        if not wait_until(lambda: bool(self.delivery_worker() and self.replay_worker()), 30):
            raise RuntimeError(f"manage.py start runs no worker:\n{self.server.text()[-4000:]}")
        for name, pids in (("delivery", self.delivery_worker()), ("replay", self.replay_worker())):
            argv = Path(f"/proc/{pids[0]}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            print(f"   {name} worker, nice {process_niceness(pids[0])}: {argv.strip()}")

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def offer(self, prefix: str) -> tuple[Tally, datetime, datetime, CpuMeter, int]:
        """The live load: its tally, its window, the meter that ran over it, and the last
        delivery id before it."""
        before_id = db.last_delivery_id(self.backend)
        meter = self.meter()
        rate, seconds = self.plan.rate, self.plan.latency_seconds
        window_start = datetime.now(UTC)
        tally = asyncio.run(open_loop(self.port, self.write_key, rate, seconds, prefix))
        return tally, window_start, datetime.now(UTC), meter, before_id

    def collect(
        self, tally: Tally, window: tuple[datetime, datetime], meter: CpuMeter, before_id: int
    ) -> LiveLoad:
        """Once the load's deliveries are done (or DRAIN_SECONDS have passed): what it
        measured. Call it as soon as the load ends: the meter stops here."""
        cpu = meter.cores()
        complete = wait_until(lambda: db.live_open(self.backend, before_id) == 0, DRAIN_SECONDS)
        rows = db.live_rows(self.backend, before_id)
        accepted = tally.statuses.get(200, 0)
        # A delivery not finished DRAIN_SECONDS after the load stopped counts as infinitely late.
        seconds_each = [(f - r).total_seconds() for _, r, f in rows]
        seconds_each += [math.inf] * (accepted - len(rows))
        return LiveLoad(
            rate=self.plan.rate,
            seconds=self.plan.latency_seconds,
            requests=tally.requests,
            accepted=accepted,
            ingest_seconds=tally.latencies,
            delivered=sum(1 for status, _, _ in rows if status == db.delivered_status()),
            seconds_each=seconds_each,
            window_seconds=(window[1] - window[0]).total_seconds(),
            cpu=cpu,
            complete=complete,
        )

    def print_load(self, what: str, load: LiveLoad, statuses: Counter[int | str]) -> None:
        print(
            f"4. {self.backend.kind} {what}: /v1/track at {load.rate:g}/s for {load.seconds:g} "
            f"s: {load.accepted:,}/{load.requests:,} accepted {dict(statuses)}, taken at "
            f"{load.taken_rate:,.0f}/s (ingest p50 {load.ingest_ms(0.5):.1f} ms, p99 "
            f"{load.ingest_ms(0.99):.1f} ms); {load.delivered:,} delivered; received -> "
            f"delivered p50 {load.shown(0.5)}, p95 {load.shown(0.95)}, p99 {load.shown(0.99)}, "
            f"max {load.shown(1)}; cores busy: {cpu_text(load.cpu)}",
            flush=True,
        )

    def wait_stopped(self, job_id: int, replay_id: int, timeout: float = 120) -> bool:
        """Until a cancelled replay has stopped: its job no longer running, none of its rows
        open and their count unchanged for STILL_SECONDS (lanes learn of a cancel only at
        the replay's next heartbeat: they may plan and send another page meanwhile)."""
        deadline = time.monotonic() + timeout
        last, still_since = None, time.monotonic()
        while time.monotonic() < deadline:
            rows = db.replay_rows(self.backend, replay_id)
            if rows.by_status != last or rows.open or db.job_state(self.backend, job_id).running:
                last, still_since = rows.by_status, time.monotonic()
            elif time.monotonic() - still_since >= STILL_SECONDS:
                return True
            time.sleep(0.5)
        return False
