"""Overview and debugger benchmark: server time of the two pages over 1,000,000 stored events.

Run from the repository root::

    uv run python bench/dashboard_pages.py            # 1,000,000 events: about 5 minutes
    uv run python bench/dashboard_pages.py --quick    # 50,000 events: a smoke test
    uv run python bench/dashboard_pages.py --keep     # leave the database for a rerun ...
    uv run python bench/dashboard_pages.py --reuse    # ... which skips the setup

1. Setup, not part of the result: a fresh PostgreSQL database of this benchmark's own
   (``bench_pages`` unless ``--db``), migrated; one source; three destinations (Refiner, Kana,
   a webhook) pointing at the discard port (no worker runs: nothing is sent); N track events
   over the last 30 days, COPYed with the reprocessing benchmark's generator (~500-byte
   payloads, 20 event names, 20,000 users); for each event one delivery per destination, as the
   engine leaves them: 96% delivered, 1.5% failed (a few reasons), 2.5% skipped (for Kana,
   unmapped), and the last 10 minutes still pending; 20,000 users, some sharing an email or
   without a billing id; 2,000 messages refused on ingest. Then ``VACUUM ANALYZE``.
2. Timed: each page through Django's test ``Client`` in this process, logged in as an admin,
   so the time is the server's own (middleware, queries, templates; no network, no browser).
   After ``--warmup`` requests, ``--requests`` more; median and p95 (nearest rank). The
   Overview in each window (the landing page opens on 24 h), also with its cache of settled
   slots emptied before every request (as once a minute), its 5-second numbers refresh,
   the debugger's first page (100 rows, each with its pretty and raw views), its 1-second poll
   (nothing new: 204; and 20 new events), and searches by userId and by a common event name.
3. Per page, the queries one request makes and the slowest of them, from Django's own log.

Target: under 200 ms per page. The database is dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The reprocessing benchmark beside this file has the database helpers and the event generator.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import reprocess
from measure.postgres import pg_recreate
from measure.stats import percentile

DEFAULT_DB = "bench_pages"
DEFAULT_EVENTS = 1_000_000
QUICK_EVENTS = 50_000
GENERATE_CHUNK = 50_000
TARGET_MS = 200.0
USERS = 20_000
REFUSALS = 2_000
NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing listens, nothing is sent
FAILURE_REASONS = (
    "Refiner refused the API key (HTTP 401): API key missing",
    "HTTP 400 from Refiner: invalid email",
    "gave up after 9 attempts over the 4 h retry window: HTTP 503",
)


@dataclass(frozen=True)
class PageResult:
    label: str
    url: str
    status: int
    median_ms: float
    p95_ms: float
    min_ms: float
    max_ms: float
    queries: int
    slowest_query_ms: float
    slowest_query: str

    @property
    def met(self) -> bool:
        return self.median_ms < TARGET_MS and self.p95_ms < TARGET_MS


# Data ------------------------------------------------------------------------------------------


def generate(events: int, chunk: int) -> dict[str, float]:
    """Events, their deliveries to three destinations, users and refusals; seconds per step."""
    from destinations.connectors.kana.connector import UNMAPPED
    from destinations.delivery.services import destination_create
    from destinations.models import Delivery, Event, Source

    source = Source.objects.create(name="Bench app")
    destinations = [
        destination_create(
            kind="refiner",
            name="Refiner (bench)",
            settings_values={"base_url": f"{NOWHERE}/v1"},
            secret_values={"api_key": "rk_bench"},
        ),
        destination_create(
            kind="kana",
            name="Kana (bench)",
            settings_values={"api_url": f"{NOWHERE}/graphql"},
            secret_values={"api_key": "prv_bench"},
        ),
        destination_create(
            kind="webhook",
            name="Webhook (bench)",
            settings_values={"url": f"{NOWHERE}/hook", "trigger": "events"},
            secret_values={},
        ),
    ]
    _, retry_window = reprocess.delivery_intervals()
    # Outcomes spread by a hash of the id; the newest 10 minutes are still waiting.
    deliveries_sql = f"""
        INSERT INTO "{Delivery._meta.db_table}" (event_id, destination_id, status, attempts,
            created_at, received_at, next_attempt_at, retry_until, finished_at, last_status_code,
            last_error, reason, plan)
        SELECT id, %(destination)s, outcome, CASE WHEN outcome = 'pending' THEN 0 ELSE 1 END,
            received_at, received_at, received_at, received_at + {retry_window},
            CASE WHEN outcome = 'pending' THEN NULL
                 ELSE received_at + (bucket %% 900) * interval '1 millisecond' END,
            CASE outcome WHEN 'delivered' THEN 200 WHEN 'failed' THEN 401 END,
            CASE outcome WHEN 'failed' THEN (%(reasons)s::text[])[1 + bucket %% 3] ELSE '' END,
            CASE outcome WHEN 'failed' THEN (%(reasons)s::text[])[1 + bucket %% 3]
                         WHEN 'skipped' THEN %(skip_reason)s ELSE '' END,
            '{{}}'::jsonb
        FROM (
            SELECT id, received_at, (id * 7919 + %(destination)s * 104729) %% 1000 AS bucket,
                CASE WHEN received_at > now() - interval '10 minutes' THEN 'pending'
                     WHEN (id * 7919 + %(destination)s * 104729) %% 1000 < 15 THEN 'failed'
                     WHEN (id * 7919 + %(destination)s * 104729) %% 1000 < 40 THEN 'skipped'
                     ELSE 'delivered' END AS outcome
            FROM "{Event._meta.db_table}" WHERE source_id = %(source)s AND id > %(after)s
        ) AS e ORDER BY id
    """
    skip_reasons = {
        "refiner": "no userId or email: Refiner cannot identify this user",
        "kana": UNMAPPED,
        "webhook": "filtered out by the destination's event filters",
    }

    def deliveries(cursor: Any, after_id: int) -> int:
        inserted = 0
        for destination in destinations:
            cursor.execute(
                deliveries_sql,
                {
                    "destination": destination.pk,
                    "reasons": list(FAILURE_REASONS),
                    "skip_reason": skip_reasons[destination.kind],
                    "source": source.pk,
                    "after": after_id,
                },
            )
            inserted += cursor.rowcount
        return inserted

    rng = random.Random(20240601)
    expected: dict[str, int] = defaultdict(int)
    seconds = reprocess.store_events(events, chunk, source.pk, deliveries, rng, expected)
    began = time.perf_counter()
    people_and_refusals(source.pk, rng)
    seconds["users_and_refusals"] = time.perf_counter() - began
    began = time.perf_counter()
    reprocess.vacuum_analyze()
    reprocess.execute("VACUUM ANALYZE destinations_profile")
    seconds["vacuum_analyze"] = time.perf_counter() - began
    return seconds


def people_and_refusals(source_id: int, rng: random.Random) -> None:
    """Users as identify calls leave them (one in 50 shares an email, one in 10 has no billing
    id), and messages refused on ingest spread over the 30 days."""
    from datetime import UTC, datetime, timedelta

    from destinations.models import IngestFailure, Profile

    Profile.objects.bulk_create(
        (
            Profile(
                user_id=f"user_{n:06d}",
                email=f"person{n - n % 2 if n % 50 == 0 else n}@example.com",
                billing_id=None if n % 10 == 0 else f"cus_{n:010d}",
                name=f"Person {n}",
            )
            for n in range(USERS)
        ),
        batch_size=5000,
    )
    now = datetime.now(UTC)
    IngestFailure.objects.bulk_create(
        (
            IngestFailure(
                source_id=source_id,
                received_at=now - timedelta(days=30) * (1 - n / REFUSALS),
                endpoint="batch",
                batch_index=rng.randrange(100),
                reason="track call without event name",
                excerpt=f'{{"type": "track", "userId": "user_{rng.randrange(USERS):06d}"}}',
            )
            for n in range(REFUSALS)
        ),
        batch_size=5000,
    )


def stored_counts() -> dict[str, int]:
    from destinations.models import Delivery, Event

    return {"events": Event.objects.count(), "deliveries": Delivery.objects.count()}


# Measuring -------------------------------------------------------------------------------------


def measure(
    client: Any,
    label: str,
    url: str,
    *,
    warmup: int,
    requests: int,
    headers: dict[str, str] | None = None,
    before_each: Callable[[], None] | None = None,
) -> PageResult:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def get() -> Any:
        return client.get(url, headers=headers or {})

    for _ in range(warmup):
        if before_each:
            before_each()
        get()
    timings: list[float] = []
    status = 0
    for _ in range(requests):
        if before_each:
            before_each()
        began = time.perf_counter()
        response = get()
        timings.append((time.perf_counter() - began) * 1000)
        status = response.status_code
    if before_each:
        before_each()
    with CaptureQueriesContext(connection) as captured:
        get()
    slowest = max(captured.captured_queries, key=lambda q: float(q["time"]), default=None)
    timings.sort()
    result = PageResult(
        label=label,
        url=url,
        status=status,
        median_ms=statistics.median(timings),
        p95_ms=percentile(timings, 0.95),
        min_ms=timings[0],
        max_ms=timings[-1],
        queries=len(captured.captured_queries),
        slowest_query_ms=float(slowest["time"]) * 1000 if slowest else 0.0,
        slowest_query=(slowest["sql"][:160] + "…") if slowest else "",
    )
    print(
        f"  {label}: median {result.median_ms:.1f} ms, p95 {result.p95_ms:.1f} ms "
        f"(min {result.min_ms:.1f}, max {result.max_ms:.1f}), HTTP {status}, "
        f"{result.queries} queries, slowest {result.slowest_query_ms:.1f} ms",
        flush=True,
    )
    return result


def forget_settled_slots() -> None:
    from django.core.cache import cache

    cache.clear()


def run_pages(warmup: int, requests: int) -> list[PageResult]:
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.test.utils import setup_test_environment

    from destinations.models import Event, Source

    setup_test_environment()
    admin, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_superuser": True, "is_staff": True}
    )
    client = Client()
    client.force_login(admin)
    source = Source.objects.get(name="Bench app")
    debugger = f"/sources/{source.pk}/debugger/"
    newest = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    twenty_back = newest - 20
    hx_rows = {"HX-Request": "true", "HX-Target": "debugger-rows"}
    results = [
        measure(client, "Overview, 24 h (the landing page)", "/", warmup=warmup, requests=requests),
        measure(client, "Overview, 1 h", "/?window=1h", warmup=warmup, requests=requests),
        measure(client, "Overview, 7 d", "/?window=7d", warmup=warmup, requests=requests),
        # The first load after the settled slots' cache expired (once a minute at most).
        measure(
            client,
            "Overview, 24 h, settled slots not cached",
            "/",
            warmup=warmup,
            requests=requests,
            before_each=forget_settled_slots,
        ),
        measure(
            client,
            "Overview, 7 d, settled slots not cached",
            "/?window=7d",
            warmup=warmup,
            requests=requests,
            before_each=forget_settled_slots,
        ),
        measure(
            client,
            "Overview numbers refresh (htmx, 24 h)",
            "/",
            warmup=warmup,
            requests=requests,
            headers={"HX-Request": "true", "HX-Target": "overview-numbers"},
        ),
        measure(client, "Debugger, first page", debugger, warmup=warmup, requests=requests),
        measure(
            client,
            "Debugger poll, nothing new (204)",
            f"{debugger}?after={newest}&after_refused=999999999",
            warmup=warmup,
            requests=requests,
            headers=hx_rows,
        ),
        measure(
            client,
            "Debugger poll, 20 new events",
            f"{debugger}?after={twenty_back}&after_refused=999999999",
            warmup=warmup,
            requests=requests,
            headers=hx_rows,
        ),
        measure(
            client,
            "Debugger search, a userId",
            f"{debugger}?q=user_004242",
            warmup=warmup,
            requests=requests,
        ),
        measure(
            client,
            "Debugger search, an event name (5% of events)",
            f"{debugger}?q=Report+Exported",
            warmup=warmup,
            requests=requests,
        ),
    ]
    return results


def report(results: Sequence[PageResult], info: dict[str, str], setup: dict[str, float]) -> None:
    print("\nMachine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    if setup:
        print("Setup: " + ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in setup.items()))
    print("\n| Page | Median (ms) | p95 (ms) | Min / max (ms) | Queries | Slowest query (ms) |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.label} | {r.median_ms:.1f} | {r.p95_ms:.1f} | {r.min_ms:.1f} / {r.max_ms:.1f} "
            f"| {r.queries} | {r.slowest_query_ms:.1f} |"
        )
    print()
    for r in results:
        verdict = "met" if r.met else "MISSED"
        print(f"{r.label}: {verdict} the {TARGET_MS:.0f} ms target; slowest: {r.slowest_query}")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="stored events")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_EVENTS:,} events")
    parser.add_argument("--db", default=DEFAULT_DB, help="PostgreSQL database to create")
    parser.add_argument("--requests", type=int, default=20, help="timed requests per page")
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests per page first")
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    parser.add_argument("--reuse", action="store_true", help="use a kept database as it is")
    args = parser.parse_args(argv)
    if args.db in reprocess.FOREIGN_DBS:
        parser.error(f"{args.db!r} is not a bench database")
    events = QUICK_EVENTS if args.quick else args.events
    reuse = args.reuse and reprocess.database_exists(args.db)

    data_dir = Path(tempfile.mkdtemp(prefix="switchboard-pages-"))
    try:
        began = time.perf_counter()
        if not reuse:
            pg_recreate(args.db)
        reprocess.app_setup(args.db, data_dir)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        setup: dict[str, float] = {}
        if reuse:
            print(f"Reusing {args.db}: {stored_counts()}", flush=True)
        else:
            print(f"Storing {events:,} events, 3 deliveries each", flush=True)
            setup = {"migrate": time.perf_counter() - began, **generate(events, GENERATE_CHUNK)}
            print(f"Setup took {sum(setup.values()):.1f} s", flush=True)
        info = reprocess.machine()
        info["stored"] = ", ".join(f"{n:,} {what}" for what, n in stored_counts().items())
        load_before = os.getloadavg()
        results = run_pages(args.warmup, args.requests)
        load_after = os.getloadavg()
        info["load average (1/5/15 min) before"] = " ".join(f"{v:.2f}" for v in load_before)
        info["after"] = " ".join(f"{v:.2f}" for v in load_after)
        report(results, info, setup)
        return 0 if all(r.met for r in results) else 1
    finally:
        if not args.keep:
            with contextlib.suppress(Exception):
                reprocess.drop_database(args.db)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
