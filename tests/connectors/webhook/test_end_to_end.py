"""End to end with a real Celery worker: Refiner posts a completed survey to a receiver made in
the dashboard; the user is updated, a "Survey Completed" event is stored once, and it reaches
Kana (as usage, through a mapping rule) and outbound webhooks whose receivers check the bearer
token and the Standard Webhooks signature themselves, one of them failing first."""

from __future__ import annotations

import html
import re
from typing import Any

from django.test import Client
from django.urls import reverse

from destinations.connectors.kana.rules import rule_save
from destinations.connectors.webhook.connector import SURVEY_COMPLETED, new_signing_secret
from destinations.delivery.services import destination_create
from destinations.models import (
    AttemptOutcome,
    CallOutcome,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Destination,
    Event,
    Profile,
    RefinerCall,
)
from destinations.standins.kana import FakeKana
from destinations.standins.refiner import sample_webhook_payload, send_webhook
from tests.helpers.webhook_receiver import WebhookReceiver
from tests.helpers.worker import Worker, wait_until

DELIVERY_TIMEOUT = 20.0
FEATURE = "nps-responses"


def make_receiver(client: Client, live_server: Any) -> tuple[str, str]:
    """A receiver made in the dashboard: (the URL on the live server, the token shown once)."""
    page = client.post(reverse("receiver-new"), {"name": "NPS", "trigger": "Survey Completed"})
    content = page.content.decode()
    url = re.search(r'id="destination-url"[^>]*value="([^"]+)"', content)
    token = re.search(r'id="auth-token"[^>]*value="([^"]+)"', content)
    assert url and token, content
    path = html.unescape(url[1]).removeprefix("http://testserver")
    return live_server.url + path, html.unescape(token[1])


def webhook_destination(name: str, receiver: WebhookReceiver) -> Destination:
    assert receiver.token and receiver.secret
    return destination_create(
        kind="webhook",
        name=name,
        settings_values={"url": receiver.url, "trigger": SURVEY_COMPLETED},
        secret_values={"auth_token": receiver.token, "signing_secret": receiver.secret},
    )


def deliveries_finished(*destinations: Destination) -> bool:
    rows = Delivery.objects.filter(destination__in=destinations)
    return rows.exists() and not rows.exclude(status=DeliveryStatus.DELIVERED).exists()


def explain(worker: Worker) -> Any:
    def describe() -> str:
        rows = Delivery.objects.select_related("destination").order_by("id")
        states = [(d.destination.name, d.status, d.attempts, d.reason) for d in rows]
        return f"deliveries: {states}\n{worker.describe()}"

    return describe


def test_survey_completion_reaches_user_event_kana_and_a_signed_webhook(
    live_server: Any,
    worker: Worker,
    staff_client: Client,
    fake_kana: FakeKana,
) -> None:
    fake_kana.add_feature(FEATURE, "NPS responses")
    kana = destination_create(
        kind="kana",
        name="Kana",
        settings_values={"api_url": fake_kana.base_url},
        secret_values={"api_key": "prv_test"},
    )
    rule_save(destination=kana, event_name="Survey Completed", conditions=[], feature_id=FEATURE)
    with WebhookReceiver(token="ops-token", secret=new_signing_secret()) as receiver:
        outbound = webhook_destination("Ops", receiver)
        url, token = make_receiver(staff_client, live_server)
        payload = sample_webhook_payload()

        answer = send_webhook(url, payload, token=token)
        assert answer.status == 200, answer.body
        assert answer.json()["outcome"] == "accepted"

        profile = Profile.objects.get(user_id="user-123")
        assert profile.email == "jane@example.com"
        assert profile.traits["nps"] == 9 and profile.traits["plan"] == "pro"
        assert profile.traits["refiner_answers"] == {"NPS": {"score": 9, "why": "fast"}}
        assert profile.traits["refiner_segments"] == ["Power users"]
        event = Event.objects.get(event="Survey Completed")
        assert (event.user_id, event.profile_id) == ("user-123", profile.pk)

        [verified] = receiver.wait_for_verified(1, timeout=DELIVERY_TIMEOUT)
        assert verified["event"] == "Survey Completed" and verified["userId"] == "user-123"
        assert verified["properties"]["score"] == 9
        assert verified["properties"]["form_name"] == "NPS"
        assert verified["properties"]["response_uuid"] == payload["response"]["uuid"]
        [call] = receiver.received
        assert call.header("Authorization") == "Bearer ops-token"
        assert call.header("webhook-id") == f"msg_{event.message_id}"

        wait_until(
            lambda: fake_kana.usage("user-123", FEATURE) == 1, DELIVERY_TIMEOUT, explain(worker)
        )
        wait_until(lambda: deliveries_finished(kana, outbound), DELIVERY_TIMEOUT, explain(worker))
        kana_delivery = Delivery.objects.get(destination=kana, event=event)
        assert kana_delivery.plan["featureId"] == FEATURE

        # Refiner sends the same call again: it is kept once, and nothing is sent twice.
        again = send_webhook(url, payload, token=token)
        assert (again.status, again.json()["outcome"]) == (200, "duplicate")
        assert Event.objects.filter(event="Survey Completed").count() == 1
        assert Delivery.objects.filter(destination=outbound).count() == 1
        outcomes = list(RefinerCall.objects.order_by("id").values_list("outcome", flat=True))
        assert outcomes == [CallOutcome.ACCEPTED, CallOutcome.DUPLICATE]
        assert len(receiver.verified) == 1
        assert fake_kana.usage("user-123", FEATURE) == 1


def test_a_failing_webhook_is_retried_and_delivered_with_the_same_id(
    live_server: Any, worker: Worker, staff_client: Client
) -> None:
    with WebhookReceiver(token="flaky-token", secret=new_signing_secret()) as receiver:
        receiver.fail(500, times=1)
        flaky = webhook_destination("Flaky", receiver)
        url, token = make_receiver(staff_client, live_server)
        assert send_webhook(url, sample_webhook_payload(), token=token).status == 200

        [verified] = receiver.wait_for_verified(1, timeout=DELIVERY_TIMEOUT)
        assert verified["event"] == "Survey Completed"
        wait_until(lambda: deliveries_finished(flaky), DELIVERY_TIMEOUT, explain(worker))
        delivery = Delivery.objects.get(destination=flaky)
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 2)
        outcomes = list(
            DeliveryAttempt.objects.filter(delivery=delivery)
            .order_by("id")
            .values_list("outcome", "status_code")
        )
        assert outcomes == [(AttemptOutcome.RETRY, 500), (AttemptOutcome.DELIVERED, 200)]
        first, second = receiver.received
        assert (first.status, second.status) == (500, 200)
        # Standard Webhooks: a retry carries the same webhook-id, so receivers can dedupe.
        assert first.header("webhook-id") == second.header("webhook-id")
