"""Computed traits: each kind's value, windows, values going away, and the sync Refiner gets
end to end (a real worker, the Refiner stand-in)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from segment.analytics.client import Client as SegmentClient

from destinations.audiences.computed_traits import (
    clean_trait_definition,
    compute_trait,
    values_for,
)
from destinations.audiences.definition import InvalidDefinition
from destinations.audiences.services import InvalidAudience, audience_create
from destinations.audiences.trait_services import trait_create
from destinations.models import ComputedTrait, ComputedTraitValue, Destination, Job, JobStatus
from destinations.standins.refiner import FakeRefiner
from tests.audiences.conftest import MakeEvent, MakeUser
from tests.helpers.worker import Worker, wait_until


def definition(kind: str, **extra: Any) -> dict[str, Any]:
    return clean_trait_definition({"kind": kind, "event": "Plan Changed", **extra})


@pytest.mark.django_db
def test_each_kind_of_value(make_user: MakeUser, make_event: MakeEvent, now: datetime) -> None:
    ada, bob = make_user("ada"), make_user("bob")
    make_event(ada, "Plan Changed", days_ago=10, properties={"plan": "trial"})
    make_event(ada, "Plan Changed", days_ago=3, properties={"plan": "pro"})
    make_event(ada, "Plan Changed", days_ago=1, properties={"seats": 3})  # no plan
    make_event(bob, "Plan Changed", days_ago=40, properties={"plan": "free"})

    def values(kind: str, **extra: Any) -> dict[int, Any]:
        return values_for(definition(kind, **extra), within=None, now=now)

    assert values("count") == {ada.pk: 3, bob.pk: 1}
    assert values("count", within_days=7) == {ada.pk: 2}
    assert values("count", where=[{"path": "properties.plan", "op": "exists"}]) == {
        ada.pk: 2,
        bob.pk: 1,
    }
    assert values("first_value", property="properties.plan") == {ada.pk: "trial", bob.pk: "free"}
    assert values("last_value", property="properties.plan") == {ada.pk: "pro", bob.pk: "free"}
    first_seen = values("first_seen")
    assert first_seen[ada.pk] == (now - timedelta(days=10)).astimezone(UTC).isoformat()
    assert values("last_seen")[bob.pk] == (now - timedelta(days=40)).astimezone(UTC).isoformat()
    scoped = values_for(definition("count"), within=[bob.pk], now=now)
    assert scoped == {bob.pk: 1}


@pytest.mark.django_db
def test_a_value_that_goes_away_becomes_zero_or_null_and_unchanged_ones_stay(
    make_user: MakeUser, make_event: MakeEvent, now: datetime
) -> None:
    ada = make_user("ada")
    make_event(ada, "Plan Changed", days_ago=2, properties={"plan": "pro"})
    counted = ComputedTrait.objects.create(
        name="Plan changes", key="plan_changes", definition=definition("count", within_days=7)
    )
    plan = ComputedTrait.objects.create(
        name="Plan", key="plan", definition=definition("last_value", property="properties.plan",
                                                        within_days=7)
    )  # fmt: skip
    assert compute_trait(counted, now=now).changed == [ada.pk]
    assert compute_trait(counted, now=now).changed == []  # unchanged: nothing written
    compute_trait(plan, now=now)
    later = now + timedelta(days=6)
    assert compute_trait(counted, now=later).changed == [ada.pk]
    assert compute_trait(plan, now=later).changed == [ada.pk]
    assert ComputedTraitValue.objects.get(trait=counted).value == 0
    assert ComputedTraitValue.objects.get(trait=counted).version == 2
    assert ComputedTraitValue.objects.get(trait=plan).value is None


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"kind": "median", "event": "x"}, "kind must be one of"),
        ({"kind": "count", "event": ""}, "name the event"),
        ({"kind": "last_value", "event": "x"}, "name the property"),
        ({"kind": "count", "event": "x", "within_days": 0}, "within must be 1 to 3650 days"),
        ({"kind": "count", "event": "x", "where": [{"op": "equals"}]}, "where 1: path must"),
        ({"kind": ["count"], "event": "x"}, "kind must be one of"),
    ],
)
def test_a_bad_definition_is_refused_with_the_reason(bad: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidDefinition, match=re.escape(message)):
        clean_trait_definition(bad)


@pytest.mark.django_db
def test_a_key_is_unique_among_audiences_and_computed_traits() -> None:
    audience_create(
        name="Exporters",
        subject="users",
        definition={"match": "all", "conditions": [
            {"type": "event", "event": "Report Exported", "count": "at_least", "times": 1}]},
    )  # fmt: skip
    with pytest.raises(InvalidAudience, match="the key 'exporters' is taken"):
        trait_create(name="Exporters", definition={"kind": "count", "event": "Report Exported"})


def test_a_computed_trait_reaches_refiner_as_an_ordinary_trait(
    live_server: Any,
    source: Any,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    worker: Worker,
) -> None:
    trait, _ = trait_create(
        name="Reports exported",
        definition={"kind": "count", "event": "Report Exported", "within_days": 30},
        destination_ids=[refiner_destination.pk],
    )
    wait_until(
        lambda: Job.objects.filter(params__trait_id=trait.pk, status=JobStatus.DONE).exists(),
        30,
        worker.describe,
    )
    client = SegmentClient(source.write_key, host=live_server.url, sync_mode=True, max_retries=0)
    client.track("u-1", "Report Exported")

    def values() -> list[Any]:
        bodies = (r.body for r in fake_refiner.requests_to("/identify-user"))
        return [b["reports_exported"] for b in bodies if "reports_exported" in b]

    wait_until(lambda: values() == [1], 30, worker.describe)
    client.track("u-1", "Report Exported")
    wait_until(lambda: values() == [1, 2], 30, worker.describe)
    assert ComputedTraitValue.objects.get(trait=trait).value == 2
