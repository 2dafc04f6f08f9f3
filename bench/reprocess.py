"""Reprocessing benchmark: how long a new Kana mapping rule takes to reach stored unmapped events.

Run from the repository root::

    uv run python bench/reprocess.py                   # 1,000,000 events: 2 to 4 minutes
    uv run python bench/reprocess.py --events 250000   # another size, to compare memory
    uv run python bench/reprocess.py --quick           # 50,000 events: a smoke test
    uv run python bench/reprocess.py --keep            # leave the database for a rerun ...
    uv run python bench/reprocess.py --reuse --keep    # ... which skips the setup
    uv run python bench/reprocess.py --profile /tmp/reprocess   # cProfile each timed job

Saving a rule starts a reprocessing job (``destinations.connectors.kana.reprocess``) that
applies it to the stored events Kana got no feature for, each at most once. The target is
1,000,000 unmapped events in under 60 s on a 2-core machine with PostgreSQL, memory flat.

1. Setup, timed but not part of the result: a fresh PostgreSQL database (``bench_reprocess``
   unless ``--db``), migrated; a source and a Kana destination whose API URL is
   ``127.0.0.1:9`` (nothing is delivered: no worker runs, and the Celery broker is the
   file-system one in a temporary ``SWITCHBOARD_DATA_DIR`` nobody consumes); N track events
   COPYed into the events table in chunks, with realistic payloads (~500 bytes: one of 20
   event names, ``properties.object.name``, ``plan``, ``rows``, sometimes ``delta``), and their
   Kana deliveries inserted as ingest leaves them with no rule: ``skipped`` with the unmapped
   reason. Then ``VACUUM ANALYZE``, as autovacuum would have done on a table that old.
2. Timed, per rule: ``rule_save`` (which creates the job and counts its scope), then
   ``run_job`` in this process, as the worker runs it, until the job is DONE. Rule ``name``
   has an event name matching 5% of the events plus a nested property condition; rule
   ``props`` has property conditions only, so the job reads every unmapped row: the worst
   case. The job's two passes are timed apart from the fixed wait between them.
3. Memory: this process's RSS (``VmRSS``) sampled every 0.2 s during each timed job.
4. Verification: the job is DONE; the rows moved are exactly the events the rule matches
   (counted while generating, without the app's condition code), each pending with the rule's
   feature, id and delta; nothing else moved; every moved row was enqueued for delivery exactly
   once; a second job for the same rule moves nothing. Then the rows are put back as they were
   (not timed), so each rule starts from N unmapped events.

The database is dropped at the end unless ``--keep``. Numbers depend on what else runs on the
machine: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import cProfile
import gc
import json
import os
import platform
import pstats
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from measure.app import django_setup
from measure.load import LIBRARY, iso
from measure.machine import cpu_model
from measure.postgres import PG_ADMIN_DSN, pg_drop, pg_query, pg_recreate
from measure.proc import process_cpu_seconds

DEFAULT_DB = "bench_reprocess"
FOREIGN_DBS = {"postgres", "template0", "template1", "test", "test_test"}
DEFAULT_EVENTS = 1_000_000
QUICK_EVENTS = 50_000
GENERATE_CHUNK = 50_000
TARGET_SECONDS = 60.0
FLAT_MB = 100.0  # peak RSS minus start RSS during a job
SAMPLE_SECONDS = 0.2
KANA_URL = "http://127.0.0.1:9/graphql"  # discard port: nothing listens, nothing is sent

EVENT_NAMES = (
    "Report Exported",
    "Dashboard Viewed",
    "Chart Created",
    "Chart Shared",
    "Notebook Opened",
    "Query Run",
    "Alert Triggered",
    "Alert Created",
    "Member Invited",
    "Member Removed",
    "Plan Upgraded",
    "Plan Downgraded",
    "File Uploaded",
    "File Deleted",
    "Comment Added",
    "Search Performed",
    "Integration Connected",
    "API Key Created",
    "Workspace Created",
    "Session Started",
)
OBJECT_NAMES = ("dashboard", "report", "chart", "notebook")
PLANS = ("free", "starter", "pro", "enterprise")
USERS = 20_000


@dataclass(frozen=True)
class RuleSpec:
    """A rule the benchmark saves, and the same test written plainly, as the oracle."""

    key: str
    label: str
    event_name: str
    conditions: tuple[dict[str, Any], ...]
    feature_id: str
    oracle: Callable[[str, str, str, int], bool]  # (event name, object name, plan, rows)


RULES = (
    RuleSpec(
        key="name",
        label="event name + nested property",
        event_name="Report Exported",
        conditions=({"path": "properties.object.name", "op": "equals", "value": "dashboard"},),
        feature_id="dashboard-exports",
        oracle=lambda name, obj, plan, rows: name == "Report Exported" and obj == "dashboard",
    ),
    RuleSpec(
        key="props",
        label="property conditions only (full scan)",
        event_name="",
        conditions=(
            {"path": "properties.plan", "op": "equals", "value": "enterprise"},
            {"path": "properties.rows", "op": "gt", "value": 900},
        ),
        feature_id="enterprise-big-tables",
        oracle=lambda name, obj, plan, rows: plan == "enterprise" and rows > 900,
    ),
)


@dataclass
class Setup:
    destination_id: int
    source_id: int
    events: int
    expected: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class RunResult:
    rule: str
    label: str
    events: int
    seconds: float
    save_seconds: float
    pass_seconds: list[float]
    wait_seconds: float
    scanned: int
    matched: int
    rss_start_mb: float
    rss_peak_mb: float
    rss_end_mb: float
    cpu_seconds: float  # this process: Python, the ORM, psycopg
    db_cpu_seconds: float  # the PostgreSQL backend serving it (parallel workers not counted)
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    rerun_seconds: float = 0.0
    rerun_matched: int = -1
    tasks: int = 0

    @property
    def rows_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def rss_growth_mb(self) -> float:
        return self.rss_peak_mb - self.rss_start_mb


# Database and Django ---------------------------------------------------------------------------


def database_exists(name: str) -> bool:
    return bool(pg_query(PG_ADMIN_DSN, "SELECT 1 FROM pg_database WHERE datname = %s", (name,)))


def drop_database(name: str) -> None:
    from django.db import connections

    connections.close_all()
    pg_drop(name)


def app_setup(db_name: str, data_dir: Path) -> None:
    """Settings read the environment once: point them at the bench database and a private
    data folder (its file-system broker is where the job's tasks go; no worker reads it)."""
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{db_name}"
    os.environ["SWITCHBOARD_DATA_DIR"] = str(data_dir)
    os.environ["CELERY_BROKER_URL"] = "filesystem://"
    for name in ("CACHE_URL", "DJANGO_DEBUG", "SWITCHBOARD_PRODUCTION"):
        os.environ.pop(name, None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "dashboard.project.settings"
    django_setup()


def execute(sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall()) if cursor.description else []


def vacuum_analyze() -> None:
    from destinations.models import Delivery, Event

    for model in (Event, Delivery):
        execute(f'VACUUM ANALYZE "{model._meta.db_table}"')


# Data ------------------------------------------------------------------------------------------


def count_expected(expected: dict[str, int], name: str, obj: str, plan: str, rows: int) -> None:
    """The oracle: per rule, the events in its scope and the events it matches."""
    for spec in RULES:
        expected[f"scope:{spec.key}"] += not spec.event_name or name == spec.event_name
        expected[spec.key] += spec.oracle(name, obj, plan, rows)


def event_rows(
    start: int, count: int, total: int, source_id: int, rng: random.Random, expected: dict[str, int]
) -> Iterator[tuple[Any, ...]]:
    """Rows for the events table, in ``EVENT_COLUMNS`` order, as ingest would store them."""
    end = datetime.now(UTC) - timedelta(minutes=5)
    span = timedelta(days=30)
    for i in range(start, start + count):
        received = end - span + span * (i / total)
        sent = received - timedelta(milliseconds=rng.randrange(20, 400))
        name = EVENT_NAMES[rng.randrange(len(EVENT_NAMES))]
        obj = OBJECT_NAMES[rng.randrange(len(OBJECT_NAMES))]
        plan = PLANS[rng.randrange(len(PLANS))]
        rows = rng.randint(1, 1000)
        user_id = f"user_{rng.randrange(USERS):06d}"
        anonymous_id = f"{rng.getrandbits(128):032x}"
        anonymous_id = "-".join(
            (anonymous_id[:8], anonymous_id[8:12], anonymous_id[12:16], anonymous_id[16:20])
        )
        message_id = f"bench-{i:09d}"
        properties: dict[str, Any] = {
            "object": {"name": obj, "id": f"obj_{rng.randrange(1_000_000):06d}"},
            "plan": plan,
            "rows": rows,
        }
        if rng.random() < 0.3:
            properties["delta"] = rng.randint(1, 5)
        count_expected(expected, name, obj, plan, rows)
        payload = {
            "type": "track",
            "event": name,
            "userId": user_id,
            "anonymousId": anonymous_id,
            "messageId": message_id,
            "properties": properties,
            "context": {"library": LIBRARY, "ip": f"203.0.113.{i % 250}"},
            "timestamp": iso(sent),
            "sentAt": iso(sent),
            "receivedAt": iso(received),
        }
        yield (
            source_id,
            message_id,
            "track",
            user_id,
            anonymous_id,
            name,
            None,
            None,
            None,
            sent,
            None,
            sent,
            received,
            None,
            orjson.dumps(payload).decode(),
        )


def delivery_intervals() -> tuple[str, str]:
    """SQL intervals from the app's settings: how long routing lets a new delivery wait for its
    wake-up before the sweeper takes it, and the retry window."""
    from django.conf import settings

    return (
        f"interval '{settings.DELIVERY_REQUEUE_AFTER_SECONDS} seconds'",
        f"interval '{settings.DELIVERY_RETRY_WINDOW_SECONDS} seconds'",
    )


def store_events(
    events: int,
    chunk: int,
    source_id: int,
    deliveries: Callable[[Any, int], int],
    rng: random.Random,
    expected: dict[str, int],
) -> dict[str, float]:
    """COPY ``events`` generated events into the events table a chunk at a time; after each
    chunk, ``deliveries(cursor, after_id)`` inserts the deliveries of the events stored after
    that id and returns how many. Seconds spent on each, by name."""
    from django.db import connection

    from destinations.ingest.store import EVENT_COLUMNS
    from destinations.models import Event

    event_table = Event._meta.db_table
    columns = ", ".join(f'"{c}"' for c in EVENT_COLUMNS)
    seconds = {"copy_events": 0.0, "insert_deliveries": 0.0}
    last_id = inserted = 0
    for start in range(0, events, chunk):
        count = min(chunk, events - start)
        began = time.perf_counter()
        with connection.cursor() as cursor:
            raw = cursor.cursor  # psycopg's own cursor, for COPY
            with raw.copy(f'COPY "{event_table}" ({columns}) FROM STDIN') as copy:
                for row in event_rows(start, count, events, source_id, rng, expected):
                    copy.write_row(row)
            copied = time.perf_counter()
            inserted += deliveries(cursor, last_id)
            cursor.execute(f'SELECT max(id) FROM "{event_table}"')
            last_id = cursor.fetchone()[0]
        seconds["copy_events"] += copied - began
        seconds["insert_deliveries"] += time.perf_counter() - copied
        done = start + count
        if done % (chunk * 4) == 0 or done == events:
            print(f"  stored {done:,} events and {inserted:,} deliveries", flush=True)
    return seconds


def generate(events: int, chunk: int) -> Setup:
    """Store ``events`` track events and their unmapped Kana deliveries, a chunk at a time."""
    from destinations.connectors.kana.connector import UNMAPPED
    from destinations.delivery.services import destination_create
    from destinations.models import Delivery, Event, Source

    source = Source.objects.create(name="Bench app")
    destination = destination_create(
        kind="kana",
        name="Kana (bench)",
        settings_values={"api_url": KANA_URL},
        secret_values={"api_key": "bench-key"},
    )
    first_attempt, retry_window = delivery_intervals()
    # As routing leaves a track event no rule matched (routing.apply_plan with a Skip).
    deliveries_sql = f"""
        INSERT INTO "{Delivery._meta.db_table}" (event_id, destination_id, status, attempts,
            created_at, received_at, next_attempt_at, retry_until, finished_at, last_error,
            reason, plan)
        SELECT id, %s, 'skipped', 0, received_at, received_at,
            received_at + {first_attempt}, received_at + {retry_window},
            received_at, '', %s, '{{}}'::jsonb
        FROM "{Event._meta.db_table}" WHERE source_id = %s AND id > %s ORDER BY id
    """

    def deliveries(cursor: Any, after_id: int) -> int:
        cursor.execute(deliveries_sql, (destination.pk, UNMAPPED, source.pk, after_id))
        return int(cursor.rowcount)

    expected: dict[str, int] = defaultdict(int)
    rng = random.Random(20240601)
    setup = Setup(destination.pk, source.pk, events, expected)
    setup.seconds = store_events(events, chunk, source.pk, deliveries, rng, expected)
    began = time.perf_counter()
    vacuum_analyze()
    setup.seconds["vacuum_analyze"] = time.perf_counter() - began
    return setup


def existing_setup() -> Setup:
    """The data a kept database already holds (``--reuse``), recounted from the payloads."""
    from destinations.models import Delivery, Destination, Event, MappingRule, Source

    destination = Destination.objects.get(name="Kana (bench)")
    source = Source.objects.get(name="Bench app")
    for rule in MappingRule.objects.filter(destination=destination):
        restore(rule.pk)
        rule.delete()
    expected: dict[str, int] = defaultdict(int)
    fields = ("event", "payload__properties__object__name", "payload__properties__plan")
    rows = Event.objects.filter(source=source).values_list(*fields, "payload__properties__rows")
    for name, obj, plan, count in rows.iterator(chunk_size=20_000):
        count_expected(expected, name, obj, plan, count)
    events = Delivery.objects.filter(destination=destination).count()
    return Setup(destination.pk, source.pk, events, expected)


def restore(rule_id: int) -> int:
    """Put the rows a rule moved back to how ingest left them, as if the rule never existed."""
    from django.db import connection

    from destinations.connectors.kana.connector import UNMAPPED
    from destinations.models import Delivery

    table = Delivery._meta.db_table
    first_attempt, retry_window = delivery_intervals()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE "{table}" SET status = 'skipped', reason = %s, plan = '{{}}'::jsonb,
                mapping_rule_id = NULL, finished_at = received_at, last_error = '',
                next_attempt_at = received_at + {first_attempt},
                retry_until = received_at + {retry_window}
            WHERE mapping_rule_id = %s""",
            (UNMAPPED, rule_id),
        )
        return int(cursor.rowcount)


# Measuring -------------------------------------------------------------------------------------


def backend_pid() -> int:
    [(pid,)] = execute("SELECT pg_backend_pid()")
    return int(pid)


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    """This process's resident memory every ``SAMPLE_SECONDS``, in a thread."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(rss_mb())
            self._stop.wait(SAMPLE_SECONDS)

    def __enter__(self) -> RssSampler:
        self.samples.append(rss_mb())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(rss_mb())


@contextlib.contextmanager
def timed_passes(durations: list[float]) -> Iterator[None]:
    """Time each pass of the job by wrapping ``run_pass`` where ``reprocess`` looks it up."""
    from destinations.connectors.kana import reprocess as module

    original = module.run_pass

    def wrapper(*args: Any, **kwargs: Any) -> None:
        began = time.perf_counter()
        try:
            original(*args, **kwargs)
        finally:
            durations.append(time.perf_counter() - began)

    module.run_pass = wrapper
    try:
        yield
    finally:
        module.run_pass = original


def profiled(path: Path | None, name: str) -> contextlib.AbstractContextManager[Any]:
    if path is None:
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def run() -> Iterator[None]:
        profile = cProfile.Profile()
        profile.enable()
        try:
            yield
        finally:
            profile.disable()
            path.mkdir(parents=True, exist_ok=True)
            target = path / f"{name}.pstats"
            profile.dump_stats(target)
            print(f"  profile written to {target}; heaviest functions (own time):")
            pstats.Stats(str(target)).sort_stats("tottime").print_stats(14)

    return run()


def queued_deliveries(broker: Path) -> list[int]:
    """Delivery ids in the ``destinations.deliver`` tasks waiting in the file-system broker."""
    ids: list[int] = []
    for message in sorted(broker.glob("*.msg")):
        envelope = json.loads(message.read_bytes())
        if envelope.get("headers", {}).get("task") != "destinations.deliver":
            continue
        body = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args, _, _ = json.loads(body)
        ids.extend(args[0])
    return ids


def clear_broker(broker: Path) -> None:
    for message in broker.glob("*.msg"):
        message.unlink()


# The benchmark ---------------------------------------------------------------------------------


def run_rule(spec: RuleSpec, setup: Setup, broker: Path, profile: Path | None) -> RunResult:
    from destinations.connectors.kana.rules import rule_save
    from destinations.delivery.routing import DESTINATION_CACHE_SECONDS
    from destinations.jobs import run_job
    from destinations.models import Destination, Job, JobStatus

    destination = Destination.objects.get(pk=setup.destination_id)
    clear_broker(broker)
    gc.collect()
    passes: list[float] = []
    backend = backend_pid()
    load_before = os.getloadavg()
    cpu_before, db_before = time.process_time(), process_cpu_seconds(backend)
    with RssSampler() as rss, timed_passes(passes), profiled(profile, f"job-{spec.key}"):
        began = time.perf_counter()
        rule, job = rule_save(
            destination=destination,
            event_name=spec.event_name,
            conditions=list(spec.conditions),
            feature_id=spec.feature_id,
        )
        saved = time.perf_counter()
        assert job is not None
        run_job(job.pk)
        seconds = time.perf_counter() - began
    cpu, db_cpu = time.process_time() - cpu_before, process_cpu_seconds(backend) - db_before
    load_after = os.getloadavg()
    job.refresh_from_db()
    if job.status != JobStatus.DONE:
        raise AssertionError(f"job {job.pk} ended {job.status}: {job.error}")
    result = RunResult(
        rule=spec.key,
        label=spec.label,
        events=setup.events,
        seconds=seconds,
        save_seconds=saved - began,
        pass_seconds=passes,
        wait_seconds=seconds - (saved - began) - sum(passes),
        scanned=job.counters["scanned"],
        matched=job.counters["matched"],
        rss_start_mb=rss.samples[0],
        rss_peak_mb=max(rss.samples),
        rss_end_mb=rss.samples[-1],
        cpu_seconds=cpu,
        db_cpu_seconds=db_cpu,
        load_before=load_before,
        load_after=load_after,
    )
    print(
        f"  {spec.key}: {seconds:.1f} s (save and count {result.save_seconds:.1f} s, passes "
        + " + ".join(f"{p:.1f}" for p in passes)
        + f" s, wait {result.wait_seconds:.1f} s, of which {DESTINATION_CACHE_SECONDS + 0.5} s "
        f"is the fixed sleep), scanned {result.scanned:,}, matched {result.matched:,}, "
        f"RSS {result.rss_start_mb:.0f}/{result.rss_peak_mb:.0f}/{result.rss_end_mb:.0f} MB, "
        f"CPU {cpu:.1f} s here + {db_cpu:.1f} s in PostgreSQL, "
        f"load {load_before[0]:.1f} -> {load_after[0]:.1f}",
        flush=True,
    )
    verify(spec, setup, rule.pk, result, broker)

    # At most once: the same job again finds nothing left to move.
    began = time.perf_counter()
    again = Job.objects.create(kind=job.kind, params=dict(job.params))
    run_job(again.pk)
    result.rerun_seconds = time.perf_counter() - began
    again.refresh_from_db()
    result.rerun_matched = again.counters.get("matched", -1)
    if again.status != JobStatus.DONE or result.rerun_matched != 0:
        raise AssertionError(f"second run: {again.status}, matched {result.rerun_matched}")
    print(
        f"  {spec.key}: second job for the same rule matched 0 "
        f"(scanned {again.counters['scanned']:,} in {result.rerun_seconds:.1f} s)",
        flush=True,
    )

    began = time.perf_counter()
    restored = restore(rule.pk)
    rule.delete()
    vacuum_analyze()
    clear_broker(broker)
    print(f"  restored {restored:,} rows in {time.perf_counter() - began:.1f} s", flush=True)
    return result


def verify(spec: RuleSpec, setup: Setup, rule_id: int, result: RunResult, broker: Path) -> None:
    from django.db.models import Count

    from destinations.connectors.kana.connector import UNMAPPED
    from destinations.models import Delivery, DeliveryStatus

    expected = setup.expected[spec.key]
    problems: list[str] = []
    scope = setup.expected[f"scope:{spec.key}"]
    if result.scanned != scope:
        problems.append(f"scanned {result.scanned:,}, expected the {scope:,} rows in scope")
    if result.matched != expected:
        problems.append(f"job matched {result.matched:,}, the oracle {expected:,}")
    table = Delivery._meta.db_table
    [(good,)] = execute(
        f"""SELECT count(*) FROM "{table}" d JOIN destinations_event e ON e.id = d.event_id
        WHERE d.destination_id = %s AND d.status = 'pending' AND d.reason = ''
          AND d.mapping_rule_id = %s AND d.finished_at IS NULL
          AND d.plan->>'featureId' = %s AND (d.plan->>'ruleId')::bigint = %s
          AND d.plan->'delta' = coalesce(e.payload->'properties'->'delta', '1'::jsonb)""",
        (setup.destination_id, rule_id, spec.feature_id, rule_id),
    )
    if good != expected:
        problems.append(f"{good:,} rows pending with the rule's plan, expected {expected:,}")
    by_status = dict(
        Delivery.objects.filter(destination_id=setup.destination_id)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    still = Delivery.objects.filter(
        destination_id=setup.destination_id, status=DeliveryStatus.SKIPPED, reason=UNMAPPED
    ).count()
    if by_status.get(DeliveryStatus.PENDING, 0) != expected or still != setup.events - expected:
        problems.append(f"statuses {by_status}, {still:,} still unmapped")
    queued = queued_deliveries(broker)
    result.tasks = len(list(broker.glob("*.msg")))
    moved = set(
        Delivery.objects.filter(mapping_rule_id=rule_id).values_list("id", flat=True).iterator()
    )
    if len(queued) != len(set(queued)) or set(queued) != moved:
        problems.append(f"{len(queued):,} ids enqueued ({len(set(queued)):,} distinct)")
    if problems:
        raise AssertionError(f"rule {spec.key}: " + "; ".join(problems))
    print(
        f"  {spec.key}: verified: {expected:,} rows pending with the rule's plan, "
        f"each enqueued once ({result.tasks} deliver tasks), the rest still unmapped",
        flush=True,
    )


def machine() -> dict[str, str]:
    info = {"nproc": str(os.cpu_count()), "python": platform.python_version()}
    with open("/proc/meminfo") as meminfo:
        total_kb = int(meminfo.readline().split()[1])
    info["memory"] = f"{total_kb / 1024 / 1024:.1f} GiB"
    info["cpu"] = cpu_model()
    [(version,)] = execute("SHOW server_version")
    info["postgresql"] = str(version)
    return info


def report(results: Sequence[RunResult], info: dict[str, str], setup: Setup) -> None:
    print("\nMachine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    if setup.seconds:
        print(
            "Setup: "
            + ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in setup.seconds.items())
        )
    print(
        "\n| N | Rule | Seconds | Rows/s | Passes (s) | Fixed wait (s) | Matched "
        "| CPU job / PostgreSQL (s) | RSS start / peak / end (MB) "
        "| Load avg (1 min) before / after |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        passes = " + ".join(f"{p:.1f}" for p in r.pass_seconds)
        print(
            f"| {r.events:,} | {r.label} | {r.seconds:.1f} | {r.rows_per_second:,.0f} "
            f"| {r.save_seconds:.1f} save + {passes} | {r.wait_seconds:.1f} | {r.matched:,} "
            f"| {r.cpu_seconds:.1f} / {r.db_cpu_seconds:.1f} "
            f"| {r.rss_start_mb:.0f} / {r.rss_peak_mb:.0f} / {r.rss_end_mb:.0f} "
            f"| {r.load_before[0]:.1f} / {r.load_after[0]:.1f} |"
        )
    print()
    for r in results:
        fast = r.seconds < TARGET_SECONDS
        flat = r.rss_growth_mb < FLAT_MB
        print(
            f"{r.rule}: {'met' if fast else 'MISSED'} the {TARGET_SECONDS:.0f} s target "
            f"({r.seconds:.1f} s); RSS grew {r.rss_growth_mb:.0f} MB "
            f"({'flat' if flat else 'NOT flat'}: bound {FLAT_MB:.0f} MB)"
        )
    summary = [{**r.__dict__, "rows_per_second": r.rows_per_second} for r in results]
    print("\nJSON: " + json.dumps({"machine": info, "setup": setup.seconds, "runs": summary}))


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="stored events")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_EVENTS:,} events")
    parser.add_argument("--db", default=DEFAULT_DB, help="PostgreSQL database to create")
    parser.add_argument("--chunk", type=int, default=GENERATE_CHUNK, help="events per COPY")
    parser.add_argument(
        "--rules", default=",".join(s.key for s in RULES), help="which rules, comma-separated"
    )
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    parser.add_argument("--reuse", action="store_true", help="use a kept database as it is")
    parser.add_argument("--profile", type=Path, help="cProfile each timed job into this folder")
    args = parser.parse_args(argv)
    if args.db in FOREIGN_DBS:
        parser.error(f"{args.db!r} is not a bench database")
    events = QUICK_EVENTS if args.quick else args.events
    specs = [s for s in RULES if s.key in args.rules.split(",")]
    reuse = args.reuse and database_exists(args.db)

    data_dir = Path(tempfile.mkdtemp(prefix="switchboard-reprocess-"))
    try:
        began = time.perf_counter()
        if not reuse:
            pg_recreate(args.db)
        app_setup(args.db, data_dir)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        migrated = time.perf_counter() - began
        print(f"Database {args.db} ready in {migrated:.1f} s", flush=True)
        if reuse:
            setup = existing_setup()
            print(f"Reusing {setup.events:,} stored events", flush=True)
        else:
            print(f"Storing {events:,} events with unmapped Kana deliveries", flush=True)
            setup = generate(events, args.chunk)
            setup.seconds = {"migrate": migrated, **setup.seconds}
            print(f"Setup took {sum(setup.seconds.values()):.1f} s", flush=True)
        info = machine()
        [(size,)] = execute("SELECT avg(pg_column_size(payload))::int FROM destinations_event")
        [(text,)] = execute(
            "SELECT avg(octet_length(payload::text))::int FROM "
            "(SELECT payload FROM destinations_event LIMIT 10000) s"
        )
        info["payload"] = f"{text} bytes as JSON text, {size} stored"
        broker = data_dir / "broker"
        results = [run_rule(spec, setup, broker, args.profile) for spec in specs]
        report(results, info, setup)
        ok = all(r.seconds < TARGET_SECONDS and r.rss_growth_mb < FLAT_MB for r in results)
        return 0 if ok else 1
    finally:
        if not args.keep:
            with contextlib.suppress(Exception):
                drop_database(args.db)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
