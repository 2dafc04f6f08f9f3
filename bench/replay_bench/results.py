"""What each phase measured, one backend's run, and the targets it is held to."""

from __future__ import annotations

import math
from dataclasses import dataclass

from deliver_bench.backends import Backend
from measure.stats import percentile

from replay_bench.config import TARGET_MEMORY_RATIO, TARGET_P95_SECONDS, TARGET_SHARE
from replay_bench.database import ReplayRows, Span


@dataclass
class History:
    """Phase 1: events stored through the ingest path while no destination exists."""

    events: int
    users: int
    stored: int
    seconds: float
    last_event_id: int
    deliveries: int  # rows planned meanwhile: none, with no destination

    @property
    def rate(self) -> float:
        return self.stored / self.seconds if self.seconds else 0.0

    @property
    def verified(self) -> bool:
        return self.stored == self.events and self.deliveries == 0


@dataclass
class Live:
    """Phase 2, the floor: live events stored with no worker running, then delivered by the
    delivery worker ``manage.py start`` runs."""

    events: int
    delivered: int
    sent: int  # requests the fake Refiner received
    span: Span
    startup_seconds: float  # from running `start` to the first delivery
    cpu: dict[str, float]
    cpu_ms: float  # the delivery worker's CPU per delivery
    complete: bool

    @property
    def verified(self) -> bool:
        return self.complete and self.delivered == self.events == self.sent


@dataclass
class MemorySample:
    seconds: float  # since the replay started
    progress: float  # delivered / total, from the job's counters
    rss_mb: float  # the replay worker's resident memory


@dataclass
class Replay:
    """Phase 3: the history replayed by the replay worker, the delivery worker running too."""

    events: int  # history events: each must be delivered once
    last_event_id: int  # the last history event
    total: int  # what the replay counted when it started
    status: str  # the job's, at the end
    rows: ReplayRows
    span: Span
    sent: int
    idle_rss_mb: float  # the replay worker before the replay started
    samples: list[MemorySample]
    cpu: dict[str, float]
    cpu_ms: float  # the replay worker's CPU per delivery
    complete: bool
    first_after_seconds: float  # from the job's start to its first delivery

    def rss_at(self, fraction: float) -> float:
        """The worker's RSS at the first sample that far into the replay (1.0: the last)."""
        if not self.samples:
            return math.nan
        if fraction >= 1.0:
            return self.samples[-1].rss_mb
        return next((s.rss_mb for s in self.samples if s.progress >= fraction), math.nan)

    @property
    def max_rss_mb(self) -> float:
        return max((s.rss_mb for s in self.samples), default=math.nan)

    @property
    def memory_ratio(self) -> float:
        return self.rss_at(1.0) / self.rss_at(0.1)

    @property
    def verified(self) -> bool:
        """Exactly one delivered row per history event, and one request each."""
        return (
            self.complete
            and self.status == "done"
            and self.total == self.events
            and self.rows.rows == self.rows.delivered == self.rows.events == self.events
            and self.rows.last_event <= self.last_event_id
            and self.sent == self.events
        )


@dataclass
class LiveLoad:
    """Single events offered at a fixed rate; received -> delivered of their deliveries."""

    rate: float
    seconds: float
    requests: int
    accepted: int
    ingest_seconds: list[float]  # each request's latency from its scheduled send time
    delivered: int
    seconds_each: list[float]  # received -> delivered, per delivery
    window_seconds: float  # from the load's start to its last answer
    cpu: dict[str, float]
    complete: bool

    def p(self, fraction: float) -> float:
        return percentile(self.seconds_each, fraction)

    def shown(self, fraction: float) -> str:
        value = self.p(fraction)
        return "unfinished" if math.isinf(value) else f"{value * 1000:,.0f} ms"

    def ingest_ms(self, fraction: float) -> float:
        return percentile(self.ingest_seconds, fraction) * 1000

    @property
    def taken_rate(self) -> float:
        """Requests/s the server answered: below the offered rate when it fell behind."""
        return self.accepted / self.window_seconds if self.window_seconds else 0.0

    @property
    def verified(self) -> bool:
        return self.complete and self.requests == self.accepted == self.delivered


@dataclass
class Latency:
    """Phase 4: the live load with no replay running (the control), then again while a replay
    runs at full speed."""

    control: LiveLoad
    control_sent: int  # requests the fake Refiner received meanwhile
    load: LiveLoad
    replay_total: int
    replay_in_window: int  # the replay's rows delivered within the load's window
    replay_running_at_end: bool  # the replay was still sending when the window ended
    replay_progress_at_end: float
    replay_delivered: int  # every row the replay delivered, until it was cancelled
    replay_stopped: bool  # the cancelled replay stopped (its rows no longer changing)
    sent: int  # requests the fake Refiner received from the replay's start: live and replay

    @property
    def replay_rate(self) -> float:
        window = self.load.window_seconds
        return self.replay_in_window / window if window else 0.0

    @property
    def valid(self) -> bool:
        """The replay ran for the whole window: otherwise live traffic was not measured
        under it."""
        return self.replay_running_at_end

    @property
    def verified(self) -> bool:
        return (
            self.control.verified
            and self.control_sent == self.control.delivered
            and self.load.verified
            and self.replay_stopped
            and self.sent == self.load.delivered + self.replay_delivered
        )


@dataclass
class BackendRun:
    backend: Backend
    version: str
    history: History
    live: Live
    replay: Replay
    latency: Latency | None
    analyzed: int = 0  # ANALYZE runs the bench made (autovacuum off on the server)

    @property
    def share(self) -> float:
        return self.replay.span.rate / self.live.span.rate if self.live.span.rate else 0.0

    def problems(self) -> list[str]:
        """What was not verified (the numbers of such a run are not to be trusted)."""
        found = []
        if not self.history.verified:
            found.append("history")
        if not self.live.verified:
            found.append("live throughput")
        if not self.replay.verified:
            found.append("replay throughput")
        if self.latency is not None and not self.latency.verified:
            found.append("latency")
        if self.latency is not None and not self.latency.valid:
            found.append("latency: the replay finished before the window ended")
        return found

    def targets(self) -> list[tuple[str, str, bool | None]]:
        """(target, measured, met); met is None for a phase not run."""
        replay = self.replay
        rows: list[tuple[str, str, bool | None]] = [
            (
                f"replay >= {100 * TARGET_SHARE:.0f}% of live deliveries/s (same run)",
                f"{replay.span.rate:,.0f} / {self.live.span.rate:,.0f} = {100 * self.share:.0f}%",
                self.share >= TARGET_SHARE,
            ),
            (
                f"memory flat: replay worker RSS at 100% / at 10% <= {TARGET_MEMORY_RATIO:g}",
                f"{replay.rss_at(1.0):,.0f} / {replay.rss_at(0.1):,.0f} MiB = "
                f"{replay.memory_ratio:.2f}",
                replay.memory_ratio <= TARGET_MEMORY_RATIO,
            ),
        ]
        latency = self.latency
        name = f"live p95 received -> delivered < {TARGET_P95_SECONDS:g} s while a replay runs"
        if latency is not None:
            name += f", {latency.load.rate:g} events/s"
        if latency is None:
            rows.append((name, "not run", None))
        else:
            load = latency.load
            value = f"{load.shown(0.95)} (without a replay: {latency.control.shown(0.95)})"
            if not latency.valid:
                value += " (the replay ended early)"
            rows.append((name, value, latency.valid and load.p(0.95) < TARGET_P95_SECONDS))
        return rows
