"""What the bench reads of the backend's tables: a replay's job and rows, and the live rows,
in plain SQL through the backend (the bench process's own Django points elsewhere; it gives
the app's status names)."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from deliver_bench.backends import Backend, PostgresBackend, moment


def delivered_status() -> str:
    from destinations.models import DeliveryStatus

    return str(DeliveryStatus.DELIVERED.value)


def open_statuses() -> list[str]:
    """A delivery's statuses before it is finished (waiting or being sent)."""
    from destinations.models import FINISHED, DeliveryStatus

    return [status.value for status in DeliveryStatus if status not in FINISHED]


def last_delivery_id(backend: Backend) -> int:
    return int(backend.query("SELECT COALESCE(MAX(id), 0) FROM destinations_delivery")[0][0])


@dataclass
class JobState:
    """A replay's job as its heartbeat (every second) leaves it."""

    status: str
    total: int
    delivered: int  # the lanes' counters, summed
    started_at: datetime | None

    @property
    def running(self) -> bool:
        from destinations.models import JobStatus

        return self.status in (JobStatus.QUEUED, JobStatus.RUNNING)

    @property
    def progress(self) -> float:
        return self.delivered / self.total if self.total else 1.0


def job_state(backend: Backend, job_id: int) -> JobState:
    p = backend.placeholder
    status, total, counters, started_at = backend.query(
        f"SELECT status, total, counters, started_at FROM destinations_job WHERE id = {p}",
        [job_id],
    )[0]
    if isinstance(counters, str):  # SQLite hands JSON back as text
        counters = json.loads(counters)
    delivered = int((counters or {}).get("delivered", 0))
    return JobState(str(status), int(total), delivered, moment(started_at) if started_at else None)


@dataclass
class Span:
    """Delivered rows and when they finished. Deliveries/s counts, as ``deliver.py`` does, the
    rows finished after the first one over the time from the first ``finished_at`` to the last."""

    delivered: int = 0
    first: datetime | None = None
    last: datetime | None = None
    after_first: int = 0

    @classmethod
    def of(cls, finished: Sequence[datetime]) -> Span:
        if not finished:
            return cls()
        first, last = min(finished), max(finished)
        return cls(len(finished), first, last, sum(1 for f in finished if f > first))

    @property
    def seconds(self) -> float:
        return (self.last - self.first).total_seconds() if self.first and self.last else 0.0

    @property
    def rate(self) -> float:
        return self.after_first / self.seconds if self.seconds > 0 else 0.0


def replay_span(backend: Backend, replay_id: int) -> Span:
    """The replay's delivered rows, counted in the database (there may be millions)."""
    p = backend.placeholder
    where = f"FROM destinations_delivery WHERE replay_id = {p} AND status = {p}"
    params: list[Any] = [replay_id, delivered_status()]
    count, first, last = backend.query(
        f"SELECT COUNT(*), MIN(finished_at), MAX(finished_at) {where}", params
    )[0]
    if not count:
        return Span()
    # The column's own value goes back in: SQLite compares its text form.
    after = backend.query(f"SELECT COUNT(*) {where} AND finished_at > {p}", [*params, first])
    return Span(int(count), moment(first), moment(last), int(after[0][0]))


@dataclass
class ReplayRows:
    """Every row a replay made: by status, and how many distinct events they are for."""

    by_status: dict[str, int] = field(default_factory=dict)
    events: int = 0
    first_event: int = 0
    last_event: int = 0

    @property
    def rows(self) -> int:
        return sum(self.by_status.values())

    @property
    def delivered(self) -> int:
        return self.by_status.get(delivered_status(), 0)

    @property
    def open(self) -> int:
        return sum(self.by_status.get(status, 0) for status in open_statuses())


def replay_rows(backend: Backend, replay_id: int) -> ReplayRows:
    p = backend.placeholder
    by_status = backend.query(
        f"SELECT status, COUNT(*) FROM destinations_delivery WHERE replay_id = {p} GROUP BY status",
        [replay_id],
    )
    events, first, last = backend.query(
        "SELECT COUNT(DISTINCT event_id), COALESCE(MIN(event_id), 0), COALESCE(MAX(event_id), 0) "
        f"FROM destinations_delivery WHERE replay_id = {p}",
        [replay_id],
    )[0]
    return ReplayRows({str(s): int(n) for s, n in by_status}, int(events), int(first), int(last))


def replay_finished(backend: Backend, replay_id: int) -> list[datetime]:
    """When each of the replay's delivered rows finished (for a replay cut short: thousands)."""
    p = backend.placeholder
    rows = backend.query(
        f"SELECT finished_at FROM destinations_delivery WHERE replay_id = {p} AND status = {p}",
        [replay_id, delivered_status()],
    )
    return [moment(finished) for (finished,) in rows]


def live_rows(backend: Backend, after_id: int) -> list[tuple[str, datetime, datetime]]:
    """Live rows (no replay) made after ``after_id`` and finished: status, received, finished."""
    p = backend.placeholder
    rows = backend.query(
        "SELECT status, received_at, finished_at FROM destinations_delivery "
        f"WHERE id > {p} AND replay_id IS NULL AND finished_at IS NOT NULL",
        [after_id],
    )
    return [(str(status), moment(r), moment(f)) for status, r, f in rows]


def live_open(backend: Backend, after_id: int) -> int:
    """Live rows made after ``after_id`` not finished yet."""
    p, statuses = backend.placeholder, open_statuses()
    rows = backend.query(
        f"SELECT COUNT(*) FROM destinations_delivery WHERE id > {p} AND replay_id IS NULL "
        f"AND status IN ({', '.join([p] * len(statuses))})",
        [after_id, *statuses],
    )
    return int(rows[0][0])


class Analyzer:
    """Autovacuum's ANALYZE where the server has autovacuum off (as this machine's has): the
    tables the bench fills, every minute (autovacuum's default naptime), so the planner sees
    their sizes as it would in production. Nothing where autovacuum is on, or on SQLite."""

    TABLES = ("destinations_event", "destinations_delivery", "destinations_profile")

    def __init__(self, backend: Backend, every: float = 60.0) -> None:
        self.backend = backend
        self.every = every
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.runs = 0

    @property
    def needed(self) -> bool:
        if not isinstance(self.backend, PostgresBackend):
            return False
        return str(self.backend.query("SHOW autovacuum")[0][0]) == "off"

    def analyze(self) -> None:
        if self.needed:
            self.backend.query(f"ANALYZE {', '.join(self.TABLES)}")
            self.runs += 1

    def start(self) -> None:
        if self.needed and self.thread is None:
            self.thread = threading.Thread(target=self.loop, name="analyzer", daemon=True)
            self.thread.start()

    def loop(self) -> None:
        while not self.stop.wait(self.every):
            self.analyze()

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
