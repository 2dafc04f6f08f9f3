"""The ingest phase: what live audiences cost the web server per event, measured in one run.

The web server runs as production runs it without its worker (``manage.py start
--no-worker``). Rounds alternate A (no live audience: every audience's ``computed_at`` cleared)
and B (the 10 live audiences), so that whatever else the machine does falls on both. A round
posts single-event ``/v1/track`` requests, then ``/v1/batch`` requests, each part metered apart:
the web processes' CPU from /proc, the database's, what other processes used. In B the only
extra work in the web processes is the ``events_stored`` receiver and the coalescer sending
``destinations.reevaluate_audiences`` tasks; no worker runs, so the tasks wait in the broker,
where they are counted: none in A, every touched user in B."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ingest_bench.client import Tally, closed_loop
from ingest_bench.config import MakeRequest
from measure.cpu import CpuMeter, wait_for_quiet
from measure.load import LIBRARY, http_post, iso
from measure.proc import process_cpu_seconds
from measure.servers import ProcessGroup, web_server_pids

from audiences_bench.backends import Backend
from audiences_bench.config import BATCH_SIZE, EXPORTED, FORMATS, Plan
from audiences_bench.data import user_id

QUIET_SECONDS = 10  # before a part, how long to wait at most for the machine to go quiet
WARM_UP_ATTEMPTS = 5
WARM_UP_CPU_SECONDS = 0.5  # each web process's CPU in the warm-up, at least
MODES = {"A": "no live audience", "B": "10 live audiences"}


@dataclass
class Part:
    """One part of a round: what was sent, the CPU seconds used, what the broker got."""

    mode: str  # A or B
    kind: str  # single or batch
    round: int
    tally: Tally
    seconds: float
    cpu: dict[str, float]  # CPU seconds by group: web, database, load generator, other
    rows: int
    users: int  # distinct users sent events
    tasks: int  # reevaluate tasks waiting in the broker afterwards
    task_ids: int  # distinct user ids they carry

    def cpu_ms_per_event(self, group: str = "web") -> float:
        return 1000 * self.cpu[group] / max(self.tally.events, 1)

    @property
    def verified(self) -> bool:
        tally = self.tally
        stored = tally.statuses.get("200", 0) == tally.requests and self.rows == tally.events
        heard = self.task_ids == (self.users if self.mode == "B" else 0)
        return stored and heard


def request_maker(
    prefix: str, authorization: str, users: int, batch: bool, seen: set[int]
) -> MakeRequest:
    """Request n of a part: one track call ("Report Exported" by a known user), or a batch of
    BATCH_SIZE; ``seen`` collects the users sent."""
    rng = random.Random(prefix)

    def event(number: str) -> dict[str, Any]:
        user = rng.randrange(users)
        seen.add(user)
        return {"type": "track", "messageId": f"{prefix}-{number}", "userId": user_id(user),
                "event": EXPORTED, "properties": {"format": rng.choice(FORMATS),
                                                  "rows": rng.randint(1, 10_000)},
                "timestamp": iso()}  # fmt: skip

    def make(number: int) -> tuple[bytes, int]:
        if not batch:
            document = event(str(number)) | {"context": {"library": LIBRARY}}
            return http_post("/v1/track", document, authorization), 1
        items = [event(f"{number}-{j}") for j in range(BATCH_SIZE)]
        document = {"batch": items, "context": {"library": LIBRARY}, "sentAt": iso()}
        return http_post("/v1/batch", document, authorization), BATCH_SIZE

    return make


def set_mode(backend: Backend, mode: str) -> None:
    """A: no audience is live; B: every audience is. The web processes see it once their cached
    answer expires (``live.LIVE_CACHE_SECONDS``)."""
    from destinations.audiences.live import LIVE_CACHE_SECONDS

    value = "NULL" if mode == "A" else "created_at"
    backend.query(f"UPDATE destinations_audience SET computed_at = {value}")
    time.sleep(LIVE_CACHE_SECONDS + 0.5)


def count_rows(backend: Backend, prefix: str) -> int:
    p = backend.placeholder
    rows = backend.query(
        f"SELECT count(*) FROM destinations_event WHERE message_id LIKE {p}", [f"{prefix}-%"]
    )
    return int(rows[0][0])


def run_part(
    backend: Backend, server: ProcessGroup, port: int, auth: str, plan: Plan, part: Part
) -> Part:
    from django.conf import settings

    from destinations.dispatch import REEVALUATE_AUDIENCES

    prefix = f"{part.mode}{part.round}{part.kind[0]}"
    seen: set[int] = set()
    batch = part.kind == "batch"
    make = request_maker(prefix, auth, plan.users, batch, seen)
    count, connections = (plan.batches, 2) if batch else (plan.singles, plan.connections)
    backend.purge()
    wait_for_quiet(server.pids, timeout=QUIET_SECONDS)
    web: Callable[[], list[int]] = lambda: web_server_pids(server)  # noqa: E731
    meter = CpuMeter({"web": web, "database": backend.database_pids}, own="load generator")
    by_process = meter.first["web"]
    began = time.perf_counter()
    part.tally = asyncio.run(closed_loop(port, connections, 3600, make, limit=count))
    part.seconds = time.perf_counter() - began
    # The coalescer sends what it gathered this long after the first id: counted in.
    time.sleep(settings.AUDIENCE_COALESCE_SECONDS + 0.5)
    part.cpu = meter.seconds()
    split = " + ".join(f"{process_cpu_seconds(p) - v:.2f}" for p, v in by_process.items())
    part.rows = count_rows(backend, prefix)
    part.users = len(seen)
    sent = [args for name, args in backend.waiting_tasks() if name == REEVALUATE_AUDIENCES]
    part.tasks = len(sent)
    part.task_ids = len({pk for args in sent for pk in args[0]})
    print(
        f"   {part.mode} ({MODES[part.mode]}) round {part.round} {part.kind}: "
        f"{part.tally.events:,} events in {part.seconds:.1f} s; web CPU "
        f"{part.cpu_ms_per_event():.3f} ms/event ({split} s), database "
        f"{part.cpu_ms_per_event('database'):.3f} ms/event, other {part.cpu['other']:.1f} s; "
        f"{part.tasks} reevaluate tasks for {part.task_ids:,} of {part.users:,} users; "
        f"{'verified' if part.verified else 'NOT VERIFIED'}",
        flush=True,
    )
    return part


def warm_up(server: ProcessGroup, port: int, auth: str, plan: Plan) -> None:
    """Untimed, audiences live: each web process's first requests (connections, caches) and
    first task sent (the broker connection: a quarter of a second of CPU on Redis) are not part
    of any round. The processes share one listening socket, so which one accepts a connection
    is a race: the warm-up goes on until each has worked."""
    from django.conf import settings

    pids = web_server_pids(server)
    first = {pid: process_cpu_seconds(pid) for pid in pids}
    for attempt in range(1, WARM_UP_ATTEMPTS + 1):
        for kind, count in (("single", plan.singles // 2), ("batch", plan.batches // 2)):
            batch = kind == "batch"
            make = request_maker(f"warm{attempt}{kind[0]}", auth, plan.users, batch, set())
            asyncio.run(closed_loop(port, plan.connections, 3600, make, limit=count))
        time.sleep(settings.AUDIENCE_COALESCE_SECONDS + 0.5)
        used = {pid: process_cpu_seconds(pid) - first[pid] for pid in pids}
        if min(used.values()) >= WARM_UP_CPU_SECONDS:
            break
    print(
        "   warm-up: web processes used "
        + ", ".join(f"{v:.2f}" for v in used.values())
        + f" s of CPU ({attempt} attempts)",
        flush=True,
    )


def run_rounds(
    backend: Backend, server: ProcessGroup, port: int, auth: str, plan: Plan
) -> list[Part]:
    """A, B, A, B...: ``plan.rounds`` of each, single-event requests then batches, after a
    warm-up with the audiences live."""
    warm_up(server, port, auth, plan)
    parts = []
    for number in range(1, plan.rounds + 1):
        for mode in "AB":
            set_mode(backend, mode)
            for kind in ("single", "batch"):
                part = Part(mode, kind, number, Tally(), 0.0, {}, 0, 0, 0, 0)
                parts.append(run_part(backend, server, port, auth, plan, part))
    set_mode(backend, "B")
    return parts


@dataclass(frozen=True)
class Comparison:
    """One kind of request: CPU per event in A and in B over all rounds, and their ratio."""

    kind: str
    events: dict[str, int]
    web_ms: dict[str, float]
    database_ms: dict[str, float]
    round_ratios: list[float]

    @property
    def ratio(self) -> float:
        return self.web_ms["B"] / self.web_ms["A"]


def compare(parts: list[Part], kind: str) -> Comparison:
    events: dict[str, int] = {}
    web_ms: dict[str, float] = {}
    database_ms: dict[str, float] = {}
    for mode in "AB":
        mine = [p for p in parts if p.kind == kind and p.mode == mode]
        events[mode] = sum(p.tally.events for p in mine)
        web_ms[mode] = 1000 * sum(p.cpu["web"] for p in mine) / max(events[mode], 1)
        database_ms[mode] = 1000 * sum(p.cpu["database"] for p in mine) / max(events[mode], 1)
    by_round = {(p.mode, p.round): p.cpu_ms_per_event() for p in parts if p.kind == kind}
    rounds = sorted({r for _, r in by_round})
    ratios = [by_round["B", r] / by_round["A", r] for r in rounds]
    return Comparison(kind, events, web_ms, database_ms, ratios)
