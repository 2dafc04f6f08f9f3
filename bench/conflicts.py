"""Conflicts page benchmark: the two boxes, search, paging, the merge page and the CSV export at
100,000 users of whom 25,000 share 10,000 emails; then a merge of a user with 50,000 events (and
its undo) and an import of a 100,000-row Stripe customers CSV, both through the app's services.

Run from the repository root::

    uv run python bench/conflicts.py                          # SQLite file in a temp folder
    uv run python bench/conflicts.py --db postgres://postgres@127.0.0.1:5432/bench_conflicts
    uv run python bench/conflicts.py --users 20000 --groups 2000   # another size

Setup (not timed): a fresh database, migrated; N users bulk-inserted, ``groups`` emails held by
two to four users each (one in three of those users without a billing id), the rest unique,
one in four of them without a billing id; then ``VACUUM ANALYZE`` (``ANALYZE`` on SQLite), as
autovacuum would soon after such a load. Timed: each page through Django's test client as a
logged-in admin, best of five, with its query count: the target is every page well under a
second, with the same number of queries at any size (conflicts page: under 200 ms).

Merge (target under 2 s): two more users share an email; the absorbed one gets ``--events``
stored events (bulk-inserted, untimed; ~300-byte payloads, unique message ids). Timed: one
``profile_merge`` call, then one ``merge_undo`` call, wall clock; the events are checked to
have moved to the survivor and back.

Import (target under 30 s): a Stripe-style CSV (``id,Email,Name``) of ``--rows`` rows with
unique emails, a third of them held by existing single users (their billing id is replaced)
and the rest new. Timed: one ``imports.apply_all`` call, as the import job runs it.

A PostgreSQL database is dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from urllib.parse import urlsplit

from measure.app import django_setup
from measure.postgres import pg_drop, pg_recreate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=50_000, help="events of the merged user")
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the imported CSV")
    parser.add_argument("--db", default="", help="a PostgreSQL URL; SQLite when absent")
    args = parser.parse_args()

    os.environ["SWITCHBOARD_DATA_DIR"] = tempfile.mkdtemp(prefix="bench-conflicts-")
    if args.db:
        pg_recreate(*database_and_admin(args.db))
        os.environ["DATABASE_URL"] = args.db
    django_setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    seed(args.users, args.groups)
    print(f"{connection.vendor}: {args.users:,} users, {args.groups:,} shared emails "
          f"(setup {time.perf_counter() - started:.1f} s)")  # fmt: skip

    from django.contrib.auth import get_user_model
    from django.http import StreamingHttpResponse
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    settings.ALLOWED_HOSTS = ["*"]
    admin = get_user_model().objects.create_superuser("bench", "bench@example.com", "x" * 20)
    client = Client()
    client.force_login(admin)

    from destinations.models import Profile

    shared = Profile.objects.filter(email__startswith="shared").order_by("pk").first()
    assert shared is not None and shared.email
    email = shared.email
    pages = [
        ("conflicts page", "/conflicts/", {}),
        ("groups page 200", "/conflicts/?groups_page=200", {}),
        ("search emails (htmx box)", "/conflicts/?email_q=shared01",
         {"HX-Request": "true", "HX-Target": "duplicate-emails"}),
        ("search users (htmx box)", "/conflicts/?user_q=solo099",
         {"HX-Request": "true", "HX-Target": "missing-billing"}),
        ("merge page", f"/conflicts/merge/?email={email}", {}),
        ("merge all preview", "/conflicts/merge-all/", {}),
        ("user page", f"/users/{shared.pk}/", {}),
    ]  # fmt: skip
    print(f"{'page':<28}{'best ms':>10}{'median ms':>11}{'queries':>9}")
    for label, url, headers in pages:
        times = []
        for _ in range(5):
            with CaptureQueriesContext(connection) as queries:
                start = time.perf_counter()
                response = client.get(url, headers=headers)
                times.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        print(f"{label:<28}{min(times):>10.0f}{statistics.median(times):>11.0f}"
              f"{len(queries.captured_queries):>9}")  # fmt: skip
    start = time.perf_counter()
    export = client.get("/conflicts/export.csv")
    assert isinstance(export, StreamingHttpResponse)
    size = sum(len(bytes(chunk)) for chunk in export)
    print(f"{'export CSV':<28}{(time.perf_counter() - start) * 1000:>10.0f}"
          f"{'':>11}{'':>9}  {size / 1e6:.1f} MB")  # fmt: skip
    bench_merge(args.events)
    bench_import(args.rows)
    print("load average: " + " ".join(f"{n:.2f}" for n in os.getloadavg()))
    connection.close()
    if args.db:
        pg_drop(*database_and_admin(args.db))


def seed(users: int, groups: int) -> None:
    from django.utils import timezone

    from destinations.models import Profile

    now = timezone.now()
    rows: list[Profile] = []
    made = 0
    for group in range(groups):
        for member in range(2 + group % 3):
            rows.append(Profile(
                user_id=f"u-shared{group:05}-{member}", email=f"shared{group:05}@example.com",
                name=f"Shared {group} {member}",
                billing_id=None if member % 3 == 1 else f"cus_S{group}x{member}", created_at=now,
            ))  # fmt: skip
    made = len(rows)
    for n in range(max(0, users - made)):
        rows.append(Profile(
            user_id=f"u-solo{n:06}", email=f"solo{n:06}@example.com", name=f"Solo {n}",
            billing_id=None if n % 4 == 0 else f"cus_U{n}", created_at=now,
        ))  # fmt: skip
    Profile.objects.bulk_create(rows, batch_size=5000)
    analyze(Profile._meta.db_table)


def analyze(table: str) -> None:
    """Statistics, as autovacuum gathers them on a live table within a minute of a bulk load:
    without them PostgreSQL plans the pages' queries blind."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM ANALYZE {connection.ops.quote_name(table)}")
    else:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def bench_merge(events: int) -> None:
    import json
    from datetime import timedelta

    from django.utils import timezone

    from destinations.models import Event, EventType, Profile, Source
    from destinations.people.merge import merge_undo, profile_merge

    now = timezone.now()
    survivor = Profile.objects.create(
        user_id="u-merge-keep", email="merge-bench@example.com", name="Merge Keep", created_at=now
    )
    absorbed = Profile.objects.create(
        user_id="u-merge-gone", email="merge-bench@example.com", name="Merge Gone", created_at=now
    )
    source = Source.objects.create(name="Bench merge")
    started = time.perf_counter()
    batch: list[Event] = []
    for n in range(events):
        at = now - timedelta(seconds=events - n)
        message_id = f"merge-bench-{n:08}"
        payload = {
            "type": "track",
            "event": "Order Completed",
            "userId": "u-merge-gone",
            "messageId": message_id,
            "timestamp": at.isoformat(),
            "properties": {"order_id": f"ord_{n:08}", "total": 42.5, "currency": "EUR"},
            "context": {"library": {"name": "analytics.js", "version": "4.1.0"}, "ip": "1.2.3.4"},
        }
        batch.append(Event(
            source=source, message_id=message_id, type=EventType.TRACK,
            user_id="u-merge-gone", event="Order Completed", timestamp=at, received_at=at,
            profile=absorbed, payload=payload,
        ))  # fmt: skip
        if len(batch) == 5000:
            Event.objects.bulk_create(batch)
            batch = []
    Event.objects.bulk_create(batch)
    size = len(json.dumps(payload))
    print(f"merge setup: {events:,} events of ~{size} bytes payload "
          f"({time.perf_counter() - started:.1f} s)")  # fmt: skip

    start = time.perf_counter()
    entry = profile_merge(survivor=survivor, absorbed=[absorbed])
    merge_s = time.perf_counter() - start
    mine = Event.objects.filter(source=source)  # not the identify each merge and undo resends
    moved = mine.filter(profile=survivor, merged_from=absorbed).count()
    assert moved == events, (moved, events)
    assert not mine.filter(profile=absorbed).exists()

    start = time.perf_counter()
    merge_undo(entry)
    undo_s = time.perf_counter() - start
    back = mine.filter(profile=absorbed, merged_from__isnull=True).count()
    assert back == events, (back, events)
    assert not mine.filter(merged_from=absorbed).exists()
    print(f"merge {events:,} events: {merge_s:.2f} s (target < 2 s: "
          f"{'MET' if merge_s < 2 else 'MISSED'}); undo: {undo_s:.2f} s; verified")  # fmt: skip


def bench_import(count: int) -> None:
    from destinations.models import Profile
    from destinations.people import imports

    existing = list(
        Profile.objects.filter(email__startswith="solo")
        .order_by("pk")
        .values_list("email", flat=True)[: count // 3]
    )
    lines = ["id,Email,Name"]
    for n in range(count):
        email = existing[n] if n < len(existing) else f"import{n:07}@example.com"
        lines.append(f"cus_Imp{n:07},{email},Imported {n}")
    data = ("\n".join(lines) + "\n").encode()
    mapping = imports.guess_mapping(imports.header(data))
    before = Profile.objects.count()
    start = time.perf_counter()
    outcome = imports.apply_all(data, mapping, imports.Outcome())
    took = time.perf_counter() - start
    assert Profile.objects.count() == before + outcome.created
    print(f"import {count:,} rows ({len(data) / 1e6:.1f} MB, {len(existing):,} existing emails): "
          f"{took:.1f} s (target < 30 s: {'MET' if took < 30 else 'MISSED'}); "
          f"created {outcome.created:,}, updated {outcome.updated:,}, "
          f"unchanged {outcome.unchanged:,}, failed {len(outcome.failed):,}")  # fmt: skip


def database_and_admin(url: str) -> tuple[str, str]:
    """The database a PostgreSQL URL names, and the URL of that server's ``postgres`` database."""
    return urlsplit(url).path.lstrip("/"), url.rsplit("/", 1)[0] + "/postgres"


if __name__ == "__main__":
    main()
