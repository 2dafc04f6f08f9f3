"""The stored history the audiences are computed over, written straight to the tables in bulk
(the ``seed`` role, in a child process with the backend's environment):
users with a plan and a country, then track events in the column order the app's ingest
writes them (``EVENT_COLUMNS``), COPY on PostgreSQL and ``executemany`` on SQLite."""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
from measure.load import LIBRARY, iso

from audiences_bench.config import (
    COUNTRIES,
    DAYS,
    EVENT_NAMES,
    FORMATS,
    PLANS,
    POWER_SHARE,
    POWER_USERS,
    SEED_SOURCE,
    SESSION,
    SESSION_DAYS,
)

ROWS_PER_TRANSACTION = 20_000


def user_id(number: int) -> str:
    return f"user-{number:06d}"


def seed_users(users: int) -> None:
    """``users`` live users, the nth with ``user_id(n)``, a plan and a country."""
    from django.utils import timezone

    from destinations.models import Profile

    rng = random.Random(users)
    plans = [name for name, weight in PLANS for _ in range(weight)]
    now = timezone.now()
    Profile.objects.bulk_create(
        (
            Profile(
                user_id=user_id(n),
                email=f"{user_id(n)}@example.com",
                name=f"User {n}",
                traits={
                    "plan": rng.choice(plans),
                    "country": rng.choice(COUNTRIES),
                    "seats": rng.randint(1, 50),
                },
                created_at=now - timedelta(days=DAYS + 1),
                first_seen_at=now - timedelta(days=DAYS + 1),
                last_seen_at=now,
            )
            for n in range(users)
        ),
        batch_size=5_000,
    )


def event_rows(
    users: int, start: int, count: int, source_id: int, profiles: Sequence[int], adapt: Any
) -> Iterator[tuple[Any, ...]]:
    """Events ``start`` to ``start + count``: event n < ``users`` is user n's "Session
    Started" within SESSION_DAYS; the others go to a power user POWER_SHARE of the time, else
    to anyone, with an event name drawn by weight, timestamps spread over DAYS days."""
    rng = random.Random(start)
    names = [name for name, weight in EVENT_NAMES for _ in range(weight)]
    power = max(1, int(users * POWER_USERS))
    end = datetime.now().astimezone() - timedelta(minutes=1)
    for n in range(start, start + count):
        if n < users:
            user, name, days = n, SESSION, SESSION_DAYS
        else:
            pool = power if rng.random() < POWER_SHARE else users
            user, name, days = rng.randrange(pool), rng.choice(names), DAYS
        at = end - timedelta(seconds=rng.random() * days * 86_400)
        message_id = f"seed-{n:08d}"
        payload = {
            "type": "track",
            "event": name,
            "userId": user_id(user),
            "messageId": message_id,
            "properties": {"format": rng.choice(FORMATS), "rows": rng.randint(1, 10_000),
                           "workspace": f"ws_{user % 997}"},
            "context": {"library": LIBRARY, "ip": f"203.0.113.{n % 250}"},
            "timestamp": iso(at),
            "receivedAt": iso(at),
        }  # fmt: skip
        stamp = adapt(at)
        yield (
            source_id, message_id, "track", user_id(user), None, name, None, None, None,
            stamp, None, stamp, stamp, profiles[user], orjson.dumps(payload).decode(),
        )  # fmt: skip


def seed_events(users: int, start: int, count: int) -> None:
    from django.db import connection, transaction

    from destinations.ingest.store import EVENT_COLUMNS
    from destinations.models import Event, Profile, Source

    source, _ = Source.objects.get_or_create(name=SEED_SOURCE)
    by_user = dict(Profile.objects.values_list("user_id", "pk"))
    profiles = [by_user[user_id(n)] for n in range(users)]
    table = connection.ops.quote_name(Event._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(c) for c in EVENT_COLUMNS)
    postgres = connection.vendor == "postgresql"
    adapt = (lambda at: at) if postgres else connection.ops.adapt_datetimefield_value
    rows = event_rows(users, start, count, source.pk, profiles, adapt)
    insert = f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(EVENT_COLUMNS))})"
    done = 0
    while done < count:
        size = min(ROWS_PER_TRANSACTION, count - done)
        with transaction.atomic(), connection.cursor() as cursor:
            if postgres:
                with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for _ in range(size):
                        copy.write_row(next(rows))
            else:
                cursor.executemany(insert, [next(rows) for _ in range(size)])
        done += size
        if done % 200_000 == 0 or done == count:
            print(f"   stored {start + done:,} events", file=sys.stderr, flush=True)


def analyze() -> None:
    """Statistics, as autovacuum gathers them on a live table soon after a bulk load."""
    from django.db import connection

    from destinations.models import Event, Profile

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for model in (Event, Profile):
                cursor.execute(f"VACUUM ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
        else:
            cursor.execute("ANALYZE")


def seed_role(params: dict[str, Any]) -> dict[str, Any]:
    """The users when ``start`` is 0, then events ``start`` to ``start + count``; the seconds
    each part took."""
    users, start, count = params["users"], params["start"], params["count"]
    seconds: dict[str, float] = {}
    began = time.perf_counter()
    if start == 0:
        seed_users(users)
        seconds["users"] = time.perf_counter() - began
    began = time.perf_counter()
    seed_events(users, start, count)
    seconds["events"] = time.perf_counter() - began
    began = time.perf_counter()
    analyze()
    seconds["analyze"] = time.perf_counter() - began
    return seconds
