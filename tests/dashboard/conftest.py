"""Fixtures of the dashboard tests: two users to merge, a day of deliveries to Refiner, history
stored before a Kana destination existed, and an operator signed in."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client

from destinations.models import Delivery, Destination, Profile, Source
from tests.dashboard.replay_support import history
from tests.helpers.delivery_rows import make_event, seed_attempt, seed_delivery
from tests.helpers.ingest import IngestPost, send
from tests.helpers.kana_rules import kana_with_rule


@pytest.fixture
def twins(post_ingest: IngestPost) -> tuple[Profile, Profile]:
    """Two users sharing an email; the newer one has the fuller name and a billing id."""
    send(
        post_ingest,
        [
            {"type": "identify", "userId": "u-old", "anonymousId": "anon-1",
             "traits": {"email": "ada@x.co", "name": "Ada L", "plan": "free"}},
            {"type": "group", "userId": "u-old", "groupId": "g-shared"},
            {"type": "track", "userId": "u-old", "event": "Old Thing"},
        ],
    )  # fmt: skip
    send(  # a later request: created after u-old
        post_ingest,
        [
            {"type": "identify", "userId": "u-new", "anonymousId": "anon-2",
             "traits": {"email": "ADA@x.co", "name": "Ada Lovelace", "billingId": "cus_9"}},
            {"type": "group", "userId": "u-new", "groupId": "g-new-only"},
            {"type": "track", "userId": "u-new", "event": "New Thing"},
        ],
    )  # fmt: skip
    return Profile.objects.get(user_id="u-old"), Profile.objects.get(user_id="u-new")


@pytest.fixture
def seeded(refiner_destination: Destination, source: Source) -> dict[str, Any]:
    """A day of deliveries with known outcomes and latencies, plus older rows."""
    counter = iter(range(1000))

    def add(status: str, **kwargs: Any) -> Delivery:
        return seed_delivery(
            refiner_destination, make_event(source, next(counter)), status, **kwargs
        )

    delivered = [
        add("delivered", latency=timedelta(seconds=s), age=timedelta(minutes=30))
        for s in range(1, 20)
    ]
    delivered.append(add("delivered", latency=timedelta(seconds=90), age=timedelta(hours=3)))
    rejected = "Refiner refused the API key (HTTP 404): API key not valid or does not exist"
    failed = [add("failed", reason=rejected, attempts=1, age=timedelta(minutes=m)) for m in (5, 6)]
    failed += [
        add("failed", reason=rejected, attempts=1, age=timedelta(hours=h)) for h in (2, 5, 6)
    ]
    gave_up = "gave up after 9 attempts over the 4 h retry window: HTTP 500 from Refiner"
    failed += [
        add("failed", reason=gave_up, attempts=9, age=timedelta(hours=1, minutes=m)) for m in (1, 2)
    ]
    skipped = add("skipped", reason="no userId or email: Refiner cannot identify this user")
    pending = [add("pending"), add("retrying", attempts=2), add("sending", attempts=1)]
    old = [
        add("delivered", age=timedelta(days=2)),
        add("failed", reason=rejected, age=timedelta(days=3)),
    ]
    for delivery in failed[:5]:
        seed_attempt(delivery, 1, status=404, body='{"message": "API key not valid"}')
    for delivery in failed[5:]:
        for number in range(1, 10):
            seed_attempt(delivery, number, status=500, body='{"message": "Server Error"}')
    return {
        "destination": refiner_destination,
        "delivered": delivered,
        "failed": failed,
        "skipped": skipped,
        "pending": pending,
        "old": old,
        "rejected": rejected,
        "gave_up": gave_up,
    }


@pytest.fixture
def operator(client: Client, make_member: Any) -> Client:
    """A client signed in as an operator (edits audiences, rules, merges; not settings)."""
    client.force_login(make_member(username="olga", role="operator"))
    return client


@pytest.fixture
def kana_history(post_ingest: IngestPost, fake_kana: Any) -> Destination:
    """History stored first (tests/dashboard/replay_support.py); then a Kana destination, made
    afterwards, with a mapping rule for "Report Exported": it has received none of it."""
    send(post_ingest, history())
    kana = kana_with_rule(fake_kana)
    return kana
