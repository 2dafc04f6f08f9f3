"""Each change is synced exactly once: a computation stopped half-way and run again stores no
sync twice, and a worker killed while syncs are in flight at Refiner delivers every change,
answered once (only what was in flight at the kill is repeated, as for any delivery)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from django.utils import timezone

from destinations.audiences.compute import Outcome, apply_chunk, compute
from destinations.audiences.services import audience_create
from destinations.models import (
    Audience,
    AudienceState,
    AudienceTarget,
    Delivery,
    DeliveryStatus,
    Destination,
    Event,
    Job,
    JobStatus,
    Profile,
)
from destinations.standins.refiner import FakeRefiner
from tests.helpers.worker import StartWorker, crash, wait_until

TRIALS = {"match": "all", "conditions": [
    {"type": "trait", "path": "traits.plan", "op": "equals", "value": "trial"}]}  # fmt: skip


def trial_users(count: int) -> list[int]:
    Profile.objects.bulk_create(
        Profile(user_id=f"u-{n:04}", traits={"plan": "trial"}) for n in range(count)
    )
    return list(Profile.objects.order_by("pk").values_list("pk", flat=True))


def syncs(audience: Audience) -> Any:
    return Event.objects.filter(message_id__startswith=f"audience-{audience.pk}-")


@pytest.mark.django_db(transaction=True)
def test_a_computation_stopped_half_way_and_run_again_syncs_each_change_once(
    refiner_destination: Destination,
) -> None:
    users = trial_users(1200)
    audience = Audience.objects.create(name="Trials", key="trials", definition=TRIALS)
    AudienceTarget.objects.create(audience=audience, destination=refiner_destination)
    now = timezone.now()
    # The first chunk is written and synced, then the worker "dies".
    apply_chunk(audience, users[:500], now, Outcome())
    assert syncs(audience).count() == 500
    outcome = compute(audience, now=now)  # run again, as the re-queued job does
    assert len(outcome.entered) == 700
    assert syncs(audience).count() == 1200
    assert syncs(audience).values("message_id").distinct().count() == 1200
    assert compute(audience, now=now).changed == []  # and again: nothing
    assert Delivery.objects.filter(event__in=syncs(audience)).count() == 1200


def test_a_worker_killed_with_syncs_in_flight_delivers_each_change_answered_once(
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    start_worker: StartWorker,
) -> None:
    users = trial_users(300)
    # Refiner answers nothing until the kill: what the worker has sent by then is in flight.
    fake_refiner.hang(300)
    first = start_worker(
        DELIVERY_TIMEOUT_SECONDS="30", DELIVERY_LEASE_SECONDS="4", JOB_STALE_SECONDS="3"
    )
    audience, _ = audience_create(
        name="Trials", subject="users", definition=TRIALS, destination_ids=[refiner_destination.pk]
    )
    fake_refiner.wait_for(16, timeout=30, path="/identify-user")
    crash(first)
    time.sleep(0.3)  # requests written just before the kill are still being read
    fake_refiner.clear_faults()
    in_flight = fake_refiner.requests_to("/identify-user")

    second = start_worker(JOB_STALE_SECONDS="3")
    job_done = Job.objects.filter(params__audience_id=audience.pk, status=JobStatus.DONE)
    wait_until(job_done.exists, 60, second.describe)
    delivered = Delivery.objects.filter(event__in=syncs(audience), status=DeliveryStatus.DELIVERED)
    wait_until(lambda: delivered.count() == len(users), 60, second.describe)

    assert syncs(audience).count() == len(users)  # one stored sync per member, however it ran
    assert AudienceState.objects.filter(audience=audience, member=True, version=1).count() == 300
    requests = fake_refiner.requests_to("/identify-user")
    answered = Counter(r.body["id"] for r in requests if r.status == 200)
    assert answered == Counter(f"u-{n:04}" for n in range(300))  # each answered once
    assert in_flight and all(r.fault == "hang" for r in in_flight)
    assert len(requests) == len(users) + len(in_flight)  # repeats: only what was in flight


@pytest.mark.django_db(transaction=True)
def test_a_destination_added_later_is_told_every_current_member_once(
    refiner_destination: Destination,
) -> None:
    from destinations.audiences.services import audience_update
    from destinations.delivery.services import destination_create

    trial_users(3)
    audience = Audience.objects.create(
        name="Trials", key="trials", definition=TRIALS, computed_at=timezone.now()
    )
    compute(audience)  # members known; no destination yet, so nothing stored
    assert syncs(audience).count() == 0
    audience_update(
        audience, name="Trials", definition=TRIALS, destination_ids=[refiner_destination.pk]
    )
    assert syncs(audience).count() == 3
    assert set(
        Delivery.objects.filter(event__in=syncs(audience)).values_list("destination_id", flat=True)
    ) == {refiner_destination.pk}
    assert set(AudienceState.objects.values_list("version", flat=True)) == {2}
    second = destination_create(
        kind="refiner", name="Second", settings_values={"base_url": "http://127.0.0.1:9"},
        secret_values={"api_key": "rk"},
    )  # fmt: skip
    audience_update(
        audience,
        name="Trials",
        definition=TRIALS,
        destination_ids=[refiner_destination.pk, second.pk],
    )
    # The second destination gets the members; the first is not told again.
    by_destination = Counter(
        Delivery.objects.filter(event__in=syncs(audience)).values_list("destination_id", flat=True)
    )
    assert by_destination == {refiner_destination.pk: 3, second.pk: 3}
