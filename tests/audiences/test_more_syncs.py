"""Audience syncs beyond a user's trait: an account audience on the account object, webhooks
told of entries and exits, merges, and audiences of audiences. A real worker delivers each to a
stand-in over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from segment.analytics.client import Client as SegmentClient

from destinations.audiences.services import audience_create
from destinations.audiences.windows import run_window_pass
from destinations.connectors.webhook.connector import new_signing_secret
from destinations.delivery.services import destination_create
from destinations.models import Audience, AudienceState, Destination, Job, JobStatus, Profile
from destinations.people.merge import profile_merge
from destinations.standins.refiner import FakeRefiner
from destinations.system_events import AUDIENCE_ENTERED
from tests.helpers.webhook_receiver import WebhookReceiver, serve_webhook_receiver
from tests.helpers.worker import Worker, wait_until

TRIAL = {"type": "trait", "path": "traits.plan", "op": "equals", "value": "trial"}


def sdk(source: Any, live_server: Any) -> SegmentClient:
    return SegmentClient(source.write_key, host=live_server.url, sync_mode=True, max_retries=0)


def computed(audience: Audience, worker: Worker) -> None:
    def done() -> bool:
        return Job.objects.filter(params__audience_id=audience.pk, status=JobStatus.DONE).exists()

    wait_until(done, 30, worker.describe)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    yield from serve_webhook_receiver(token="hook-token", secret=new_signing_secret())


def test_an_account_audience_reaches_refiner_on_the_account_object(
    live_server: Any,
    source: Any,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    worker: Worker,
) -> None:
    audience, _ = audience_create(
        name="Busy accounts",
        subject="accounts",
        definition={"match": "all", "conditions": [
            {"type": "event", "event": "Report Exported", "count": "at_least", "times": 2,
             "within_days": 7}]},
        destination_ids=[refiner_destination.pk],
    )  # fmt: skip
    computed(audience, worker)
    client = sdk(source, live_server)
    for user in ("u-1", "u-2"):
        client.group(user, "acct-1", {"name": "Initech"})
        client.track(user, "Report Exported")

    def synced() -> list[Any]:
        return [
            r.body
            for r in fake_refiner.requests_to("/identify-user")
            if "busy_accounts" in r.body.get("account", {})
        ]

    wait_until(synced, 30, worker.describe)
    [body] = synced()
    assert body["account"] == {"id": "acct-1", "busy_accounts": True}
    assert body["id"] in ("u-1", "u-2")  # sent as one of the account's users


def test_webhooks_hear_audience_entered(
    live_server: Any, source: Any, receiver: WebhookReceiver, worker: Worker
) -> None:
    destination_create(
        kind="webhook",
        name="Audience hook",
        settings_values={"url": receiver.url, "trigger": AUDIENCE_ENTERED},
        secret_values={"auth_token": receiver.token or "", "signing_secret": receiver.secret or ""},
    )
    audience, _ = audience_create(
        name="Trials", subject="users", definition={"match": "all", "conditions": [TRIAL]}
    )
    computed(audience, worker)
    sdk(source, live_server).identify("u-1", {"plan": "trial"})
    [body] = receiver.wait_for_verified(1, timeout=30)
    assert body["event"] == "Audience Entered"
    assert body["userId"] == "u-1"
    assert body["properties"]["audience_key"] == "trials"


def test_a_merged_away_users_membership_moves_to_the_survivor(
    live_server: Any,
    source: Any,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    worker: Worker,
) -> None:
    audience, _ = audience_create(
        name="Exporters",
        subject="users",
        definition={"match": "all", "conditions": [
            {"type": "event", "event": "Report Exported", "count": "at_least", "times": 1}]},
        destination_ids=[refiner_destination.pk],
    )  # fmt: skip
    computed(audience, worker)
    client = sdk(source, live_server)
    client.identify("old", {"email": "ada@example.com"})
    client.track("old", "Report Exported")
    client.identify("new", {"email": "ada@example.com"})
    old = Profile.objects.get(user_id="old")
    wait_until(
        lambda: AudienceState.objects.filter(profile=old, member=True).exists(),
        30,
        worker.describe,
    )
    new = Profile.objects.get(user_id="new")
    profile_merge(survivor=new, absorbed=[old])
    assert not AudienceState.objects.filter(profile=old).exists()  # left without a sync
    wait_until(
        lambda: AudienceState.objects.filter(profile=new, member=True).exists(),
        30,
        worker.describe,
    )

    def flags() -> list[tuple[str, bool]]:
        bodies = (r.body for r in fake_refiner.requests_to("/identify-user"))
        return [(b["id"], b["exporters"]) for b in bodies if "exporters" in b]

    wait_until(lambda: ("new", True) in flags(), 30, worker.describe)
    assert flags() == [("old", True), ("new", True)]


def test_an_audience_of_audiences_follows_the_one_it_uses(
    live_server: Any, source: Any, worker: Worker
) -> None:
    trials, _ = audience_create(
        name="Trials", subject="users", definition={"match": "all", "conditions": [TRIAL]}
    )
    computed(trials, worker)
    exporting_trials, _ = audience_create(
        name="Exporting trials",
        subject="users",
        definition={"match": "all", "conditions": [
            {"type": "audience", "audience": trials.pk, "in": True},
            {"type": "event", "event": "Report Exported", "count": "at_least", "times": 1,
             "within_days": 1}]},
    )  # fmt: skip
    computed(exporting_trials, worker)
    client = sdk(source, live_server)
    client.identify("u-1", {"plan": "trial"})
    client.track("u-1", "Report Exported")
    ada_in = AudienceState.objects.filter(
        audience=exporting_trials, profile__user_id="u-1", member=True
    )
    wait_until(ada_in.exists, 30, worker.describe)
    # Two days on the export is out of the window; the window pass takes u-1 out.
    assert run_window_pass(now=timezone.now() + timedelta(days=2)) == 1
    assert not ada_in.exists()
    assert AudienceState.objects.get(audience=trials, profile__user_id="u-1").member
