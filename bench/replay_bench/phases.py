"""The four phases against one backend, in turn on one database: the history stored (1), live
throughput, the floor (2), the history replayed (3), live latency while a replay runs (4).

From phase 2 on, ``manage.py start`` runs as production runs it (``started``)."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from pathlib import Path

from deliver_bench.backends import Backend
from measure.app import manage
from measure.cpu import cpu_text, wait_for_quiet
from measure.profiler import Profiler

from replay_bench import database as db
from replay_bench.config import RAMP_SECONDS, Plan
from replay_bench.results import BackendRun, History, Latency, Live, MemorySample, Replay
from replay_bench.started import StartedApp, rss_mb, wait_until


class ReplayBench(StartedApp):
    """One backend's phases, sharing the fake Refiner and ``start``'s processes."""

    # Phase 1: the history -----------------------------------------------------------------------

    def history(self) -> History:
        self.backend.create()
        manage(self.env, "migrate", "--verbosity", "0")
        self.write_key = str(self.role("source")["write_key"])
        events, users = self.plan.events, self.plan.users
        started = time.perf_counter()
        made = self.role("history", events, users)
        seconds = time.perf_counter() - started
        # Nothing is to be delivered; whatever ingest queued (nothing, with no audience) goes.
        self.backend.purge_broker()
        result = History(
            events=events,
            users=users,
            stored=int(made["stored"]),
            seconds=seconds,
            last_event_id=int(made["last_event_id"]),
            deliveries=db.last_delivery_id(self.backend),
        )
        print(
            f"1. {self.backend.kind} history: {result.stored:,}/{events:,} events from "
            f"{users:,} users stored in {seconds:.1f} s ({result.rate:,.0f}/s), "
            f"{result.deliveries} deliveries planned; "
            f"{'verified' if result.verified else 'NOT VERIFIED'}",
            flush=True,
        )
        return result

    # Phase 2: live throughput, the floor --------------------------------------------------------

    def live(self) -> Live:
        self.destination_id = int(self.role("destination", self.fake_port)["destination_id"])
        events = self.plan.live
        before_id = db.last_delivery_id(self.backend)
        sent_before = self.sent()
        self.role("seed", "live", events)
        wait_for_quiet()
        launched = datetime.now(UTC)
        self.start()
        # CPU counts from the first delivery: not the workers' start.
        wait_until(lambda: db.live_open(self.backend, before_id) < events, 60, every=0.1)
        self.profiler.start(f"{self.backend.kind}-live", self.delivery_worker())
        meter = self.meter()
        complete = wait_until(lambda: db.live_open(self.backend, before_id) == 0, self.plan.timeout)
        cpu = meter.cores()
        self.profiler.finish()
        rows = db.live_rows(self.backend, before_id)
        delivered = [f for status, _, f in rows if status == db.delivered_status()]
        span = db.Span.of(delivered)
        worker_seconds = cpu["delivery worker"] * meter.wall
        result = Live(
            events=events,
            delivered=len(delivered),
            sent=self.sent() - sent_before,
            span=span,
            startup_seconds=((span.first or launched) - launched).total_seconds(),
            cpu=cpu,
            cpu_ms=1000 * worker_seconds / max(len(delivered), 1),
            complete=complete,
        )
        print(
            f"2. {self.backend.kind} live: {result.delivered:,}/{events:,} delivered, "
            f"{span.rate:,.0f} deliveries/s over {span.seconds:.1f} s (first to last; the "
            f"first {result.startup_seconds:.1f} s after start was run); fake Refiner got "
            f"{result.sent:,}; "
            f"delivery worker {result.cpu_ms:.2f} ms CPU per delivery; cores busy: "
            f"{cpu_text(cpu)}; {'verified' if result.verified else 'NOT VERIFIED'}",
            flush=True,
        )
        return result

    # Phase 3: the history replayed ------------------------------------------------------------

    def replay(self, history: History) -> Replay:
        wait_for_quiet()
        idle_rss = rss_mb(self.replay_worker())
        sent_before = self.sent()
        made = self.role("replay", self.destination_id, 0)
        replay_id, job_id = int(made["replay_id"]), int(made["job_id"])
        started = time.monotonic()
        self.profiler.start(f"{self.backend.kind}-replay", self.replay_worker())
        meter = self.meter()
        samples = []
        state = db.job_state(self.backend, job_id)
        deadline = started + self.plan.timeout
        while True:
            rss = rss_mb(self.replay_worker())
            state = db.job_state(self.backend, job_id)
            samples.append(MemorySample(time.monotonic() - started, state.progress, rss))
            if not state.running or time.monotonic() > deadline:
                break
            time.sleep(max(0.0, started + len(samples) - time.monotonic()))
        cpu = meter.cores()
        self.profiler.finish()
        # Every sample, for a closer look at the memory (kept with --keep).
        (self.work_dir / f"replay-rss-{self.backend.kind}.csv").write_text(
            "seconds,progress,rss_mb\n"
            + "".join(f"{s.seconds:.1f},{s.progress:.4f},{s.rss_mb:.1f}\n" for s in samples)
        )
        rows = db.replay_rows(self.backend, replay_id)
        span = db.replay_span(self.backend, replay_id)
        worker_seconds = cpu["replay worker"] * meter.wall
        result = Replay(
            events=history.stored,
            last_event_id=history.last_event_id,
            total=int(made["total"]),
            status=state.status,
            rows=rows,
            span=span,
            sent=self.sent() - sent_before,
            idle_rss_mb=idle_rss,
            samples=samples,
            cpu=cpu,
            cpu_ms=1000 * worker_seconds / max(rows.delivered, 1),
            complete=not state.running and rows.open == 0,
            first_after_seconds=(
                (span.first - state.started_at).total_seconds()
                if span.first and state.started_at
                else math.nan
            ),
        )
        print(
            f"3. {self.backend.kind} replay of {result.total:,} events: job {state.status}, "
            f"rows {rows.by_status} for {rows.events:,} events; {span.rate:,.0f} deliveries/s "
            f"over {span.seconds:.1f} s (first to last; the first "
            f"{result.first_after_seconds:.1f} s after the job started); fake Refiner got "
            f"{result.sent:,}; "
            f"replay worker {result.cpu_ms:.2f} ms CPU per delivery; cores busy: "
            f"{cpu_text(cpu)}; {'verified' if result.verified else 'NOT VERIFIED'}",
            flush=True,
        )
        print(
            f"   replay worker RSS: idle {idle_rss:,.0f} MiB, at 10% {result.rss_at(0.1):,.0f}, "
            f"50% {result.rss_at(0.5):,.0f}, 100% {result.rss_at(1.0):,.0f}, max "
            f"{result.max_rss_mb:,.0f} MiB ({len(samples)} samples); 100%/10% = "
            f"{result.memory_ratio:.2f}",
            flush=True,
        )
        return result

    # Phase 4: live latency while a replay runs ------------------------------------------------

    def latency(self) -> Latency:
        wait_for_quiet()
        sent_before = self.sent()
        tally, *window, meter, before_id = self.offer("control")
        control = self.collect(tally, (window[0], window[1]), meter, before_id)
        control_sent = self.sent() - sent_before
        self.print_load("without a replay", control, tally.statuses)

        wait_for_quiet()
        sent_before = self.sent()
        made = self.role("replay", self.destination_id, 1)
        replay_id, job_id = int(made["replay_id"]), int(made["job_id"])
        # At full speed: its lanes have sent their first pages.
        wait_until(lambda: db.job_state(self.backend, job_id).delivered > 0, 120)
        time.sleep(RAMP_SECONDS)
        self.profiler.start(
            f"{self.backend.kind}-latency", self.delivery_worker() + self.replay_worker()
        )
        tally, window_start, window_end, meter, before_id = self.offer("during")
        at_end = db.job_state(self.backend, job_id)
        self.profiler.finish()
        load = self.collect(tally, (window_start, window_end), meter, before_id)
        # The replay has been measured: the rest of it is not needed.
        cancel = self.role("cancel", replay_id)
        for error in cancel["errors"]:
            print(f"   WARNING: cancelling the replay failed, tried again: {error}", flush=True)
        stopped = self.wait_stopped(job_id, replay_id)
        finished = db.replay_finished(self.backend, replay_id)
        result = Latency(
            control=control,
            control_sent=control_sent,
            load=load,
            replay_total=int(made["total"]),
            replay_in_window=sum(1 for f in finished if window_start <= f <= window_end),
            replay_running_at_end=at_end.running and at_end.progress < 1.0,
            replay_progress_at_end=at_end.progress,
            replay_delivered=len(finished),
            replay_stopped=stopped,
            sent=self.sent() - sent_before,
        )
        self.print_load(f"while replaying {result.replay_total:,} events", load, tally.statuses)
        print(
            f"   the replay meanwhile: {result.replay_in_window:,} delivered in the "
            f"{load.window_seconds:.1f} s window = {result.replay_rate:,.0f}/s, "
            f"{100 * result.replay_progress_at_end:.0f}% done at its end "
            f"({'still running' if result.valid else 'FINISHED EARLY: phase invalid'}); "
            f"{result.replay_delivered:,} delivered before it was cancelled; fake Refiner got "
            f"{result.sent:,}; {'verified' if result.verified else 'NOT VERIFIED'}",
            flush=True,
        )
        return result


def run_backend(
    backend: Backend, plan: Plan, fake: tuple[int, int], profiler: Profiler, work_dir: Path
) -> BackendRun:
    print(f"\n=== {backend.title}", flush=True)
    bench = ReplayBench(backend, fake, work_dir, plan, profiler)
    analyzer = db.Analyzer(backend)
    try:
        history = bench.history()
        version = backend.version()
        # Between phases, and every minute: what autovacuum would have done by then.
        analyzer.analyze()
        analyzer.start()
        live = bench.live()
        analyzer.analyze()
        replay = bench.replay(history)
        analyzer.analyze()
        latency = bench.latency() if plan.latency_seconds else None
        if analyzer.runs:
            print(f"   ANALYZE run {analyzer.runs} times (autovacuum is off on this server)")
        return BackendRun(backend, version, history, live, replay, latency, analyzer.runs)
    finally:
        analyzer.close()
        bench.stop()
        backend.drop()
