"""End to end: a real SDK posts to ingest, a real worker re-evaluates the audience after the
commit and delivers its sync to the Refiner stand-in over HTTP."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from segment.analytics.client import Client as SegmentClient

from destinations.audiences.live import reevaluate
from destinations.audiences.services import audience_create
from destinations.audiences.windows import run_window_pass
from destinations.models import (
    Audience,
    AudienceState,
    Delivery,
    DeliveryStatus,
    Destination,
    Event,
    Job,
    JobStatus,
    Profile,
    Source,
)
from destinations.standins.refiner import FakeRefiner
from tests.helpers.worker import Worker, wait_until

EXPORTED_TWICE_THIS_WEEK = {
    "match": "all",
    "conditions": [
        {"type": "trait", "path": "traits.plan", "op": "equals", "value": "trial"},
        {"type": "event", "event": "Report Exported", "count": "at_least", "times": 2,
         "within_days": 7},
    ],
}  # fmt: skip


def sdk(source: Source, live_server: Any) -> SegmentClient:
    return SegmentClient(source.write_key, host=live_server.url, sync_mode=True, max_retries=0)


def flags(fake_refiner: FakeRefiner, key: str) -> list[tuple[str, Any]]:
    """(user, value) of every identify Refiner got that carries the audience's trait."""
    return [
        (r.body["id"], r.body[key])
        for r in fake_refiner.requests_to("/identify-user")
        if key in r.body
    ]


def computed(audience: Audience, worker: Worker) -> None:
    def done() -> bool:
        return Job.objects.filter(params__audience_id=audience.pk, status=JobStatus.DONE).exists()

    wait_until(done, 30, worker.describe)


def test_entering_staying_and_leaving_reach_refiner_once_each(
    live_server: Any,
    source: Source,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    worker: Worker,
) -> None:
    audience, _ = audience_create(
        name="Trial exporters",
        subject="users",
        definition=EXPORTED_TWICE_THIS_WEEK,
        destination_ids=[refiner_destination.pk],
    )
    computed(audience, worker)
    assert audience.key == "trial_exporters"

    client = sdk(source, live_server)
    client.identify("u-1", {"plan": "trial", "email": "ada@example.com"})
    client.identify("u-2", {"plan": "pro"})
    for user in ("u-1", "u-1", "u-2", "u-2"):
        client.track(user, "Report Exported", {"format": "csv"})

    wait_until(lambda: flags(fake_refiner, audience.key), 30, worker.describe)
    assert flags(fake_refiner, audience.key) == [("u-1", True)]
    [sync] = Event.objects.filter(message_id__startswith=f"audience-{audience.pk}-")
    assert sync.type == "identify"
    assert sync.payload["context"]["personas"]["computation_key"] == "trial_exporters"
    assert sync.profile == Profile.objects.get(user_id="u-1")
    assert list(sync.deliveries.values_list("destination_id", flat=True)) == [
        refiner_destination.pk
    ]

    # A third export changes nothing: re-evaluating sends nothing, however often it runs.
    client.track("u-1", "Report Exported")
    ada = Profile.objects.get(user_id="u-1")
    assert reevaluate([ada.pk]) == 0
    assert AudienceState.objects.get(audience=audience, profile=ada).version == 1

    # Eight days on, the exports are out of the window: u-1 leaves, and Refiner hears it once.
    later = timezone.now() + timedelta(days=8)
    assert run_window_pass(now=later) == 1
    assert run_window_pass(now=later) == 0
    wait_until(lambda: len(flags(fake_refiner, audience.key)) == 2, 30, worker.describe)
    assert flags(fake_refiner, audience.key) == [("u-1", True), ("u-1", False)]
    syncs = Event.objects.filter(message_id__startswith=f"audience-{audience.pk}-")
    assert sorted(syncs.values_list("message_id", flat=True)) == [
        f"audience-{audience.pk}-u{ada.pk}-v1",
        f"audience-{audience.pk}-u{ada.pk}-v2",
    ]

    # Refiner answers before the worker records the outcome: wait for the record.
    def statuses() -> set[str]:
        return set(Delivery.objects.filter(event__in=syncs).values_list("status", flat=True))

    wait_until(lambda: statuses() == {DeliveryStatus.DELIVERED}, 30, worker.describe)
    assert statuses() == {DeliveryStatus.DELIVERED}
    audience.refresh_from_db()
    assert audience.size == 0


def test_the_first_computation_tells_every_member_and_only_the_chosen_destination(
    source: Source,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    worker: Worker,
    live_server: Any,
) -> None:
    other = Destination.objects.create(
        kind="refiner", name="Other Refiner", settings={"base_url": fake_refiner.base_url}
    )
    client = sdk(source, live_server)
    for n in range(5):
        client.identify(f"u-{n}", {"plan": "trial" if n % 2 == 0 else "pro"})
    wait_until(lambda: Profile.objects.count() == 5, 10, worker.describe)

    audience, job = audience_create(
        name="Trials",
        subject="users",
        definition={"match": "all", "conditions": [
            {"type": "trait", "path": "traits.plan", "op": "equals", "value": "trial"}]},
        destination_ids=[refiner_destination.pk],
    )  # fmt: skip
    computed(audience, worker)
    job.refresh_from_db()
    assert job.counters["entered"] == 3
    assert job.done == 5
    wait_until(lambda: len(flags(fake_refiner, "trials")) == 3, 30, worker.describe)
    assert sorted(flags(fake_refiner, "trials")) == [("u-0", True), ("u-2", True), ("u-4", True)]
    syncs = Delivery.objects.filter(event__message_id__startswith=f"audience-{audience.pk}-")
    assert syncs.count() == 3
    assert not syncs.filter(destination=other).exists()
    audience.refresh_from_db()
    assert audience.size == 3


@pytest.mark.parametrize("tell", [True, False])
def test_deleting_an_audience_tells_its_members_they_left_when_asked(
    tell: bool,
    source: Source,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    worker: Worker,
    live_server: Any,
) -> None:
    from destinations.audiences.services import audience_delete

    sdk(source, live_server).identify("u-1", {"plan": "trial"})
    audience, _ = audience_create(
        name="Trials",
        subject="users",
        definition={"match": "all", "conditions": [
            {"type": "trait", "path": "traits.plan", "op": "equals", "value": "trial"}]},
        destination_ids=[refiner_destination.pk],
    )  # fmt: skip
    computed(audience, worker)
    wait_until(lambda: flags(fake_refiner, "trials"), 30, worker.describe)
    assert audience_delete(audience, tell_members=tell) == (1 if tell else 0)
    assert not Audience.objects.exists()
    if tell:
        wait_until(lambda: len(flags(fake_refiner, "trials")) == 2, 30, worker.describe)
        assert flags(fake_refiner, "trials") == [("u-1", True), ("u-1", False)]
    else:
        assert Event.objects.filter(message_id__endswith="-v2").count() == 0
