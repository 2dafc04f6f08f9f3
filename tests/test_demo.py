"""Demo mode's data: seeded against the stand-ins, marked, and removed without touching the rest."""

from __future__ import annotations

from typing import Any

import pytest

from destinations.demo import DEMO_KANA_KEY, DEMO_REFINER_KEY, demo_loaded, remove_demo, seed_demo
from destinations.identity.conflicts import conflict_counts
from destinations.models import Account, Delivery, Destination, Event, MappingRule, Profile, Source

pytestmark = pytest.mark.django_db


def test_seed_then_remove_leaves_other_data_alone(post_ingest: Any, source: Source) -> None:
    assert (
        post_ingest("identify", {"userId": "real-1", "traits": {"email": "r@x.co"}}).status_code
        == 200
    )
    seeded = seed_demo(refiner_url="http://127.0.0.1:9/v1", kana_url="http://127.0.0.1:9/graphql")
    assert demo_loaded()
    assert seeded["events"] > 100
    demo_destinations = Destination.objects.filter(demo=True)
    assert sorted(d.name for d in demo_destinations) == [
        "Kana (demo)",
        "Refiner (demo)",
        "Refiner, wrong key (demo)",
    ]
    keys = {d.name: d.secrets["api_key"] for d in demo_destinations}
    assert keys["Refiner (demo)"] == DEMO_REFINER_KEY and keys["Kana (demo)"] == DEMO_KANA_KEY
    assert MappingRule.objects.get().feature_id == "exports"
    # Conflicts to resolve: two shared emails, users without billing ids.
    counts = conflict_counts()
    assert counts["duplicate_emails"] == 2 and counts["without_billing_id"] >= 4
    assert Delivery.objects.filter(destination__demo=True).exists()
    # Seeded over the last day and a half: each account was first seen before it was last seen.
    for account in Account.objects.all():
        assert account.first_seen_at is not None and account.last_seen_at is not None
        assert account.first_seen_at < account.last_seen_at, account.group_id
    # Seeding again only re-points the destinations.
    assert seed_demo(
        refiner_url="http://127.0.0.1:8/v1", kana_url="http://127.0.0.1:8/graphql"
    ) == {"events": 0}
    assert (
        Destination.objects.get(name="Refiner (demo)").settings["base_url"]
        == "http://127.0.0.1:8/v1"
    )

    removed = remove_demo()
    assert removed["events"] == seeded["events"]
    assert not demo_loaded()
    assert not Destination.objects.exists()
    assert list(Profile.objects.values_list("user_id", flat=True)) == ["real-1"]
    assert not Account.objects.exists()
    assert Event.objects.filter(source=source).count() == 1
