"""Conflicts page benchmark: the two boxes, search, paging, the merge page and the CSV export at
100,000 users of whom 25,000 share 10,000 emails.

Run from the repository root::

    uv run python bench/conflicts.py                          # SQLite file in a temp folder
    uv run python bench/conflicts.py --db postgres://postgres@127.0.0.1:5432/bench_conflicts
    uv run python bench/conflicts.py --users 20000 --groups 2000   # another size

Setup (not timed): a fresh database, migrated; N users bulk-inserted, ``groups`` emails held by
two to four users each (one in three of those users without a billing id), the rest unique,
one in four of them without a billing id. Timed: each page through Django's test client as a
logged-in admin, best of five, with its query count: the target is every page well under a
second, with the same number of queries at any size. A PostgreSQL database is dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--db", default="", help="a PostgreSQL URL; SQLite when absent")
    args = parser.parse_args()

    os.environ["SWITCHBOARD_DATA_DIR"] = tempfile.mkdtemp(prefix="bench-conflicts-")
    if args.db:
        recreate_postgres(args.db)
        os.environ["DATABASE_URL"] = args.db
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()
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
    from django.urls import NoReverseMatch, reverse

    settings.ALLOWED_HOSTS = ["*"]
    try:
        reverse("conflicts")
    except NoReverseMatch:  # until dashboard.urls includes the conflict pages
        settings.ROOT_URLCONF = "tests.urls_with_people"
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
    connection.close()
    if args.db:
        drop_postgres(args.db)


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


def recreate_postgres(url: str) -> None:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')


def drop_postgres(url: str) -> None:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
