"""A Refiner manual segment kept in step with an audience: a real worker computes the audience
and delivers each member's identify, then adds them to the segment (and, when the audience is
deleted with its members told, takes them out again). Another audience's syncs, and the
audience's syncs to a destination without a segment, leave segments alone."""

from __future__ import annotations

from typing import Any

from destinations.audiences.services import audience_create, audience_delete
from destinations.connectors.refiner.connector import CONNECTOR
from destinations.delivery.contract import DeliveryContext, Skip
from destinations.delivery.services import destination_create
from destinations.models import Delivery, DeliveryStatus, Destination, Job, JobStatus, Profile
from destinations.standins.refiner import FakeRefiner
from tests.helpers.worker import Worker, wait_until

TRIALS = {"match": "all", "conditions": [
    {"type": "trait", "path": "traits.plan", "op": "equals", "value": "trial"}]}  # fmt: skip


def segment_of(fake_refiner: FakeRefiner, user_id: str, segment: str) -> bool:
    contact = fake_refiner.contact(id=user_id)
    return contact is not None and segment in contact.segment_uuids


def all_delivered() -> bool:
    statuses = set(Delivery.objects.values_list("status", flat=True))
    return statuses <= {DeliveryStatus.DELIVERED}


def test_the_segment_follows_the_audience(
    refiner_destination: Destination, fake_refiner: FakeRefiner, worker: Worker, settings: Any
) -> None:
    segment = fake_refiner.add_segment("Trials (Switchboard)").uuid
    other = destination_create(
        kind="refiner",
        name="Other Refiner",
        settings_values={"base_url": fake_refiner.base_url},
        secret_values={"api_key": "rk_test"},
    )
    for user_id, plan in (("u-1", "trial"), ("u-2", "pro"), ("u-3", "trial")):
        Profile.objects.create(user_id=user_id, traits={"plan": plan})
    audience, job = audience_create(
        name="Trials",
        subject="users",
        definition=TRIALS,
        destination_ids=[refiner_destination.pk, other.pk],
        segments={refiner_destination.pk: segment},
    )
    wait_until(
        lambda: Job.objects.filter(pk=job.pk, status=JobStatus.DONE).exists(), 30, worker.describe
    )

    def members_in() -> bool:
        return segment_of(fake_refiner, "u-1", segment) and segment_of(fake_refiner, "u-3", segment)

    wait_until(members_in, 30, worker.describe)
    assert not segment_of(fake_refiner, "u-2", segment)
    calls = fake_refiner.requests_to("/sync-segment")
    assert sorted((c.method, c.body["id"], c.body["segment_uuid"]) for c in calls) == [
        ("POST", "u-1", segment),
        ("POST", "u-3", segment),
    ]  # the other destination keeps no segment: identify only
    wait_until(all_delivered, 30, worker.describe)
    planned = Delivery.objects.filter(event__message_id__startswith=f"audience-{audience.pk}-")
    assert sorted(planned.values_list("destination_id", "plan")) == sorted(
        [(refiner_destination.pk, {"segment": segment})] * 2 + [(other.pk, {})] * 2
    )

    audience_delete(audience, tell_members=True)

    def members_out() -> bool:
        return not any(segment_of(fake_refiner, user, segment) for user in ("u-1", "u-3"))

    wait_until(members_out, 30, worker.describe)
    removed = [c for c in fake_refiner.requests_to("/sync-segment") if c.method == "DELETE"]
    assert sorted(c.body["id"] for c in removed) == ["u-1", "u-3"]


def test_only_a_segment_chosen_for_the_audience_is_planned_and_only_users_join_it() -> None:
    left = {"type": "identify", "userId": "u-1", "traits": {"trials": False},
            "context": {"switchboard": {"audience": {"id": 7, "entered": False}}}}  # fmt: skip
    assert CONNECTOR.plan(left, {7: "seg-7"}) == {"segment": "seg-7"}
    assert CONNECTOR.plan(left, {8: "seg-8"}) == {}  # a message naming another audience
    forged = {**left, "context": {"switchboard": {"audience": {"id": "7"}}}}
    assert CONNECTOR.plan(forged, {7: "seg-7"}) == {}
    assert CONNECTOR.plan({"type": "track", "userId": "u-1", "event": "E"}, {7: "seg-7"}) == {}

    config = {"api_key": "rk", "base_url": "https://refiner.example/v1"}
    sent = CONNECTOR.translate(left, DeliveryContext(config=config, plan={"segment": "seg-7"}))
    assert not isinstance(sent, Skip)
    assert [(r.method, r.url, r.json) for r in sent] == [
        ("POST", "https://refiner.example/v1/identify-user", {"id": "u-1", "trials": False}),
        ("DELETE", "https://refiner.example/v1/sync-segment",
         {"id": "u-1", "segment_uuid": "seg-7"}),
    ]  # fmt: skip
    # An account audience's group call: Refiner's segments hold contacts, not accounts.
    group = {"type": "group", "userId": "u-1", "groupId": "g-1", "traits": {"big": True},
             "context": {"switchboard": {"audience": {"id": 7, "entered": True}}}}  # fmt: skip
    sent = CONNECTOR.translate(group, DeliveryContext(config=config, plan={"segment": "seg-7"}))
    assert not isinstance(sent, Skip)
    assert [r.url for r in sent] == ["https://refiner.example/v1/identify-user"]
