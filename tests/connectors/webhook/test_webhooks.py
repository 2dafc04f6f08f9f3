"""Refiner posting to us (receivers), and the webhook connector's signing, triggers and SSRF."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from django.test import Client
from standardwebhooks import Webhook

from destinations.connectors.refiner_api import RefinerApiError, confined_url
from destinations.connectors.webhook import (
    DELIVERY_FAILED,
    EVENTS,
    SURVEY_COMPLETED,
    new_signing_secret,
    triggered,
    webhook_request,
)
from destinations.delivery import engine
from destinations.delivery.services import destination_create
from destinations.models import (
    CallOutcome,
    Delivery,
    DeliveryStatus,
    Event,
    Profile,
    RefinerCall,
    RefinerTrigger,
)
from destinations.standins.refiner import sample_webhook_payload
from destinations.webhooks.receivers import receiver_create, receiver_rotate

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver() -> tuple[Any, str]:
    return receiver_create(name="NPS", trigger=RefinerTrigger.SURVEY_COMPLETED)


def post(client: Client, receiver: Any, body: Any, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(
        f"/hooks/refiner/{receiver.public_id}", data=data, content_type="application/json",
        headers=headers,
    )  # fmt: skip


def test_token_checks(client: Client, receiver: tuple[Any, str]) -> None:
    hook, token = receiver
    payload = sample_webhook_payload()
    assert post(client, hook, payload, None).status_code == 401
    wrong = post(client, hook, payload, "rwh_wrong")
    assert (wrong.status_code, wrong.json()["error"]) == (401, "Wrong Secret Auth-Token")
    assert post(client, hook, payload, token).status_code == 200
    new = receiver_rotate(hook)
    assert post(client, hook, {**payload, "response": {**payload["response"], "uuid": "r2"}},
                token).status_code == 401  # fmt: skip
    assert post(client, hook, payload, new).json()["outcome"] == CallOutcome.DUPLICATE
    outcomes = list(RefinerCall.objects.order_by("id").values_list("outcome", "status_code"))
    assert outcomes == [
        ("refused", 401), ("refused", 401), ("accepted", 200), ("refused", 401), ("duplicate", 200),
    ]  # fmt: skip
    assert token not in str(list(RefinerCall.objects.values_list("detail", "excerpt")))


def test_survey_completed_updates_the_user_and_becomes_an_event(client, receiver) -> None:
    hook, token = receiver
    payload = sample_webhook_payload()
    response = post(client, hook, payload, token)
    assert response.status_code == 200, response.content
    profile = Profile.objects.get(user_id=payload["remote_id"])
    assert profile.traits["nps"] == payload["attributes"]["nps"]
    assert profile.traits["refiner_answers"] == {
        payload["form"]["name"]: payload["response"]["data"]
    }
    event = Event.objects.get(event="Survey Completed")
    assert event.user_id == payload["remote_id"]
    assert event.profile_id == profile.pk
    assert event.payload["properties"]["score"] == payload["response"]["data"]["score"]
    assert event.payload["properties"]["form_name"] == payload["form"]["name"]
    assert event.payload["integrations"] == {"Refiner": False}
    call = RefinerCall.objects.get()
    assert (call.outcome, call.event_id) == (CallOutcome.ACCEPTED, event.pk)
    # Refiner sends it again: stored once.
    assert post(client, hook, payload, token).json()["outcome"] == "duplicate"
    assert Event.objects.filter(event="Survey Completed").count() == 1


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "Invalid JSON"),
        (b"[1]", 422, "Body must be a JSON object"),
        ({"remote_id": "u"}, 422, "triggered_event is missing"),
        ({"triggered_event": "Survey Completed"}, 422, "neither remote_id nor email"),
        ({"triggered_event": "Survey Completed", "remote_id": "u", "response": {}}, 422,
         "response.data (the answers) is missing"),
        ({"triggered_event": "Survey Completed", "remote_id": "u", "form": "NPS"}, 422,
         "form must be an object"),
    ],
)  # fmt: skip
def test_bad_payloads_get_a_clear_error(client, receiver, body, status, message) -> None:
    hook, token = receiver
    response = post(client, hook, body, token)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert RefinerCall.objects.get().outcome == CallOutcome.REFUSED
    assert not Event.objects.exists()


def test_other_triggers_are_ignored_by_a_survey_receiver(client, receiver) -> None:
    hook, token = receiver
    payload = sample_webhook_payload(triggered_event="Saw Survey")
    for _ in range(2):
        assert post(client, hook, payload, token).json()["outcome"] == "ignored"
    assert not Event.objects.exists()


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


def test_private_addresses_are_refused_at_connect_time(post_ingest, settings) -> None:
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


def test_console_cannot_leave_the_base_url(refiner_destination) -> None:
    base = refiner_destination.settings["base_url"]
    assert confined_url(refiner_destination, "/contacts", "page_length=5") == (
        f"{base}/contacts?page_length=5"
    )
    assert confined_url(refiner_destination, "contact?id=u1", "") == f"{base}/contact?id=u1"
    for bad in ("https://evil.example/x", "//evil.example/x", "/../admin", "/a/./b", "/a\\..\\b"):
        with pytest.raises(RefinerApiError):
            confined_url(refiner_destination, bad, "")


def test_delivery_failed_reaches_a_subscribed_webhook_only(
    post_ingest: Any, refiner_destination: Any, fake_refiner: Any, settings: Any
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
