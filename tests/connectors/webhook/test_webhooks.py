"""The webhook connector: Standard Webhooks signatures, triggers, private addresses refused
at connect time, and Delivery Failed notices to subscribed webhooks only."""

from __future__ import annotations

from typing import Any

import pytest
from standardwebhooks import Webhook

from destinations.connectors.webhook.connector import (
    DELIVERY_FAILED,
    EVENTS,
    SURVEY_COMPLETED,
    new_signing_secret,
    triggered,
    webhook_request,
)
from destinations.delivery import engine
from destinations.delivery.services import destination_create
from destinations.models import Delivery, DeliveryStatus, Destination, Event
from destinations.standins.refiner import FakeRefiner
from tests.helpers.ingest import IngestPost

pytestmark = pytest.mark.django_db


def test_signature_verifies_with_the_standard_webhooks_package() -> None:
    secret = new_signing_secret()
    config = {"url": "https://hooks.example.com/in", "auth_token": "tok", "signing_secret": secret}
    request = webhook_request({"type": "track", "messageId": "m1", "event": "E"}, config)
    assert request.headers["Authorization"] == "Bearer tok"
    assert request.headers["webhook-id"] == "msg_m1"
    assert request.body is not None
    verified = Webhook(secret).verify(request.body, dict(request.headers))
    assert verified == {"type": "track", "messageId": "m1", "event": "E"}
    tampered = request.body.replace(b"E", b"F")
    with pytest.raises(Exception, match=r"(?i)signature"):
        Webhook(secret).verify(tampered, dict(request.headers))


def test_triggers() -> None:
    track = {"type": "track", "event": "Signed Up"}
    survey = {"type": "track", "event": "Survey Completed"}
    system = {
        "type": "track",
        "event": "Delivery Failed",
        "context": {"switchboard": {"system": True}},
    }
    assert triggered(track, {"trigger": EVENTS})
    assert triggered(track, {"trigger": EVENTS, "event_type": "track", "event_name": "Signed Up"})
    assert not triggered(track, {"trigger": EVENTS, "event_name": "Other"})
    assert not triggered({"type": "page"}, {"trigger": EVENTS, "event_type": "track"})
    assert triggered(survey, {"trigger": SURVEY_COMPLETED})
    assert not triggered(track, {"trigger": SURVEY_COMPLETED})
    assert triggered(system, {"trigger": DELIVERY_FAILED})
    assert not triggered(system, {"trigger": EVENTS})  # system events only where subscribed


def test_private_addresses_are_refused_at_connect_time(
    post_ingest: IngestPost, settings: Any
) -> None:
    settings.ALLOW_PRIVATE_URLS = False
    destination_create(
        kind="webhook",
        name="Internal",
        settings_values={"url": "http://127.0.0.1:9/hook", "trigger": EVENTS},
        secret_values={},
    )
    assert post_ingest("track", {"userId": "u1", "event": "E"}).status_code == 200
    delivery = Delivery.objects.get()
    engine.deliver([delivery.pk])
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED  # permanent: retrying cannot help
    assert delivery.reason.startswith("address not allowed: 127.0.0.1 (127.0.0.1) is a private")


def test_delivery_failed_reaches_a_subscribed_webhook_only(
    post_ingest: IngestPost,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    settings: Any,
) -> None:
    settings.ALLOW_PRIVATE_URLS = True
    watcher = destination_create(
        kind="webhook",
        name="Failures",
        settings_values={"url": "http://127.0.0.1:9/failures", "trigger": DELIVERY_FAILED},
        secret_values={},
    )
    fake_refiner.reject_key(404)
    assert post_ingest("track", {"userId": "u1", "event": "E"}).status_code == 200
    [refiner_delivery] = Delivery.objects.all()  # the watcher is not triggered by the event
    engine.deliver([refiner_delivery.pk])
    failed = Event.objects.get(event="Delivery Failed")
    assert failed.payload["properties"]["destination"] == "Refiner"
    assert "API key" in failed.payload["properties"]["reason"]
    [notice] = Delivery.objects.filter(event=failed)
    assert notice.destination_id == watcher.pk  # not to Refiner: webhooks only
    engine.deliver([notice.pk])  # its own failure does not produce another notice
    assert Event.objects.filter(event="Delivery Failed").count() == 1
