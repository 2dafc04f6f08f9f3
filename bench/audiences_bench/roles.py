"""The roles that run inside Django, each in a child process with the backend's environment
(``audiences.py ROLE JSON``), printing their result as JSON on the last line: the setup, the
first computation, the window pass, the live audiences and the worker-side re-evaluation. The
timed work runs in the role's own process, as the worker would run it; its peak memory is
``VmHWM`` after a reset, so a role measures one computation and nothing before it."""

from __future__ import annotations

import cProfile
import gc
import json
import pstats
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from measure.app import NO_LIMIT, django_setup
from measure.proc import memory_mb, process_cpu_seconds, reset_peak_memory

from audiences_bench.config import (
    EXPORT_DAYS,
    EXPORT_TIMES,
    EXPORTED,
    FIRST_DEFINITION,
    FIRST_PLAN,
    INGEST_SOURCE,
    LIVE_AUDIENCES,
    REFINER_NAME,
    SESSION,
    WINDOW_DEFINITION,
)
from audiences_bench.data import seed_role


def log(text: str) -> None:
    print(f"   {text}", file=sys.stderr, flush=True)


@dataclass
class Timed:
    """One timed piece of work: wall and CPU seconds (this process, and the PostgreSQL backend
    serving it), RSS before it and at its peak."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0
    db_cpu_seconds: float = 0.0
    rss_before_mb: float = 0.0
    rss_peak_mb: float = 0.0


@contextmanager
def cprofiled(directory: Path | None, name: str, top: int = 15) -> Iterator[None]:
    """cProfile what runs inside into ``directory/name.pstats`` and print the heaviest
    functions by own time; nothing when ``directory`` is None."""
    if directory is None:
        yield
        return
    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"{name}.pstats"
        profile.dump_stats(target)
        print(f"   profile written to {target}; heaviest by own time:", file=sys.stderr)
        stats = pstats.Stats(str(target), stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(top)
        print("   heaviest by cumulative time:", file=sys.stderr)
        stats.sort_stats("cumulative").print_stats(top)


def backend_pid() -> int:
    from django.db import connection

    if connection.vendor != "postgresql":
        return 0  # SQLite runs inside this process: its CPU is in cpu_seconds
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


@contextmanager
def timed(profile: str | None, name: str) -> Iterator[Timed]:
    gc.collect()
    result = Timed(rss_before_mb=memory_mb())
    pid = backend_pid()
    db_before = process_cpu_seconds(pid) if pid else 0.0
    reset_peak_memory()
    cpu, began = time.process_time(), time.perf_counter()
    with cprofiled(Path(profile) if profile else None, name):
        yield result
    result.seconds = time.perf_counter() - began
    result.cpu_seconds = time.process_time() - cpu
    result.db_cpu_seconds = process_cpu_seconds(pid) - db_before if pid else 0.0
    result.rss_peak_mb = memory_mb("VmHWM")


def best_of(times: int, work: Callable[[], Any]) -> tuple[float, Any]:
    """The fastest of ``times`` runs (after one to warm the caches), and its result."""
    result = work()
    best = float("inf")
    for _ in range(times):
        began = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - began)
    return best, result


def raw(sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def counts_since(name: str, since: datetime) -> list[tuple[int, int]]:
    """The floor: events per user of one name since a moment, a plain GROUP BY."""
    from django.db import connection

    return raw(
        "SELECT profile_id, count(*) FROM destinations_event WHERE event = %s "
        "AND timestamp >= %s AND profile_id IS NOT NULL GROUP BY profile_id",
        [name, connection.ops.adapt_datetimefield_value(since)],
    )


def users_with_plan(plan: str) -> set[int]:
    """The oracle's trait test, on the stored JSON without the app's condition code."""
    rows = raw("SELECT id, traits FROM destinations_profile WHERE merged_into_id IS NULL")
    return {pk for pk, traits in rows if json_value(traits).get("plan") == plan}


def json_value(value: Any) -> dict[str, Any]:
    parsed = json.loads(value) if isinstance(value, str) else value
    return parsed if isinstance(parsed, dict) else {}


def sync_events(audience_id: int) -> int:
    """Sync messages stored for an audience (their messageIds start with its id)."""
    from destinations.models import Event

    return Event.objects.filter(message_id__startswith=f"audience-{audience_id}-").count()


def start_live(audience: Any) -> None:
    """What the job does before computing: the audience is live from then on."""
    from django.utils import timezone

    from destinations.audiences.live import forget_live
    from destinations.models import Audience

    Audience.objects.filter(pk=audience.pk).update(computed_at=timezone.now())
    forget_live()


def refiner_id() -> int:
    from destinations.models import Destination

    return int(Destination.objects.get(name=REFINER_NAME).pk)


# Roles --------------------------------------------------------------------------------------


def setup_role(params: dict[str, Any]) -> dict[str, Any]:
    """The ingest phase's source (no rate limit) and a Refiner destination at its default
    address: nothing reaches it, no worker runs."""
    from destinations.delivery.services import destination_create
    from destinations.sources import source_create

    source = source_create(name=INGEST_SOURCE, rate_limit_per_second=NO_LIMIT)
    destination = destination_create(
        kind="refiner", name=REFINER_NAME, settings_values={}, secret_values={"api_key": "rk_x"}
    )
    return {"write_key": source.write_key, "destination_id": destination.pk}


def compute_role(params: dict[str, Any]) -> dict[str, Any]:
    """The first computation of FIRST_DEFINITION as a new audience, with or without a Refiner
    target; its floor (the plain GROUP BY), best of 3, measured just before."""
    from django.utils import timezone

    from destinations.audiences.compute import compute
    from destinations.audiences.services import audience_create
    from destinations.models import Event, Profile

    targets = [refiner_id()] if params["target"] else []
    audience, _ = audience_create(
        name=f"Trial exporters {params['label']}",
        subject="users",
        definition=FIRST_DEFINITION,
        destination_ids=targets,
    )
    now = timezone.now()  # the oracle's moment and the computation's
    since = now - timedelta(days=EXPORT_DAYS)
    floor, rows = best_of(3, lambda: counts_since(EXPORTED, since))
    expected = {p for p, n in rows if n >= EXPORT_TIMES} & users_with_plan(FIRST_PLAN)
    start_live(audience)
    with timed(params.get("profile"), f"compute-{params['label']}") as result:
        outcome = compute(audience, now=now)
    problems = []
    if set(outcome.entered) != expected or outcome.left:
        problems.append(f"{len(outcome.entered)} entered, {len(outcome.left)} left; "
                        f"the oracle says {len(expected)} enter")  # fmt: skip
    stored = sync_events(audience.pk)
    want = len(expected) if targets else 0
    if outcome.synced != want or stored != want:
        problems.append(f"{outcome.synced} syncs reported, {stored} stored, expected {want}")
    return result.__dict__ | {
        "label": params["label"],
        "target": bool(targets),
        "events": Event.objects.exclude(message_id__startswith="audience-").count(),
        "users": Profile.objects.filter(merged_into__isnull=True).count(),
        "members": len(outcome.entered),
        "synced": outcome.synced,
        "floor_seconds": floor,
        "floor_rows": len(rows),
        "problems": problems,
    }


def window_role(params: dict[str, Any]) -> dict[str, Any]:
    """An audience every user is in ("Session Started" in the last 30 days), computed, then
    given a Refiner target; then the window pass at now (nothing changes) and at now + shift
    days (those without a recent session leave, each synced). The only live audience."""
    from django.utils import timezone

    from destinations.audiences.compute import compute
    from destinations.audiences.services import audience_create
    from destinations.audiences.windows import run_window_pass
    from destinations.models import Audience, AudienceState, AudienceTarget, Profile

    Audience.objects.all().delete()  # the earlier phases' audiences: no longer live
    audience, _ = audience_create(name="Active this month", subject="users",
                                  definition=WINDOW_DEFINITION)  # fmt: skip
    start_live(audience)
    began = time.perf_counter()
    initial = compute(audience)
    initial_seconds = time.perf_counter() - began
    users = Profile.objects.filter(merged_into__isnull=True).count()
    AudienceTarget.objects.create(audience=audience, destination_id=refiner_id())
    days = WINDOW_DEFINITION["conditions"][0]["within_days"]
    problems = [] if len(initial.entered) == users else [f"{len(initial.entered)} of {users} in"]
    passes = []
    first = timezone.now()
    for label, now in (("unchanged", first), ("shifted", first + timedelta(days=params["shift"]))):
        floor, rows = best_of(3, partial(counts_since, SESSION, now - timedelta(days=days)))
        with timed(params.get("profile"), f"window-{label}") as result:
            changed = run_window_pass(now=now)
        members = AudienceState.objects.filter(audience=audience, member=True).count()
        leaving = users - len(rows)
        if changed != (0 if label == "unchanged" else leaving) or members != len(rows):
            problems.append(f"{label}: {changed} changes, {members} members; the oracle says "
                            f"{len(rows)} stay")  # fmt: skip
        passes.append(
            result.__dict__
            | {"label": label, "changed": changed, "left": leaving, "members_before": users,
               "floor_seconds": floor}
        )  # fmt: skip
    stored = sync_events(audience.pk)
    if stored != passes[-1]["changed"]:
        problems.append(f"{stored} syncs stored for {passes[-1]['changed']} changes")
    return {"initial_seconds": initial_seconds, "members": len(initial.entered), "users": users,
            "passes": passes, "synced": stored, "problems": problems}  # fmt: skip


def live_role(params: dict[str, Any]) -> dict[str, Any]:
    """The ingest phase's 10 audiences, created and computed (no targets); the Refiner
    destination is disabled, so ingest plans no deliveries in either half of the phase."""
    from destinations.audiences.compute import compute
    from destinations.audiences.services import audience_create
    from destinations.models import Audience, Destination

    Audience.objects.all().delete()
    Destination.objects.filter(name=REFINER_NAME).update(enabled=False)
    made: list[Any] = []
    sizes, seconds = [], []
    for name, definition in LIVE_AUDIENCES:
        conditions = [
            c | {"audience": made[c["audience"] - 1].pk} if c["type"] == "audience" else c
            for c in definition["conditions"]
        ]
        audience, _ = audience_create(
            name=name, subject="users", definition=definition | {"conditions": conditions}
        )
        start_live(audience)
        began = time.perf_counter()
        sizes.append(len(compute(audience).entered))
        seconds.append(time.perf_counter() - began)
        made.append(audience)
        log(f"{name}: {sizes[-1]:,} members, computed in {seconds[-1]:.1f} s")
    return {"names": [a.name for a in made], "sizes": sizes, "seconds": seconds}


def reevaluate_role(params: dict[str, Any]) -> dict[str, Any]:
    """What a worker does with one task of the ingest phase: ``live.reevaluate`` of
    AUDIENCE_TASK_BATCH users who were sent events, against the 10 live audiences."""
    from django.conf import settings

    from destinations.audiences.live import reevaluate
    from destinations.models import Event

    sent = Event.objects.filter(source__name=INGEST_SOURCE, profile__isnull=False)
    touched = sorted(set(sent.values_list("profile_id", flat=True)))
    sample = random.Random(1).sample(touched, min(len(touched), settings.AUDIENCE_TASK_BATCH))
    with timed(params.get("profile"), "reevaluate") as result:
        changes = reevaluate(sample)
    return result.__dict__ | {"users": len(sample), "changes": changes}


ROLE_FUNCTIONS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "setup": setup_role,
    "seed": seed_role,
    "compute": compute_role,
    "window": window_role,
    "live": live_role,
    "reevaluate": reevaluate_role,
}


def django_role(name: str) -> Callable[[Sequence[str]], int]:
    """``audiences.py NAME JSON``: the role with Django set up; its result on the last line."""

    def run(argv: Sequence[str]) -> int:
        django_setup()
        result = ROLE_FUNCTIONS[name](json.loads(argv[0]) if argv else {})
        print(json.dumps(result, default=str))
        return 0

    return run
