"""Outbound webhook destinations in the dashboard: their form, Generate, the signing secret
shown once, Send test through the private-address guard, and the list of triggers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from destinations.delivery.services import destination_create
from destinations.models import Destination
from tests.helpers.pages import text_of
from tests.helpers.refiner_hooks import input_value
from tests.helpers.webhook_receiver import WebhookReceiver, serve_webhook_receiver

PRIVATE_REFUSAL = (
    "127.0.0.1 (127.0.0.1) is a private or loopback address: refused "
    "(SWITCHBOARD_ALLOW_PRIVATE_URLS=true allows it)"
)


# --- outbound webhooks ----------------------------------------------------------------------


@pytest.fixture
def local_receiver() -> Iterator[WebhookReceiver]:
    yield from serve_webhook_receiver(token="hook-token-123")


def new_webhook_form(client: Client) -> Any:
    return client.get(reverse("destination-new-kind", args=["webhook"]))


def webhook_fields(url: str, secret: str = "", **extra: str) -> dict[str, str]:
    return {
        "name": "Ops hook",
        "enabled": "on",
        "url": url,
        "trigger": "Survey Completed",
        "event_type": "",
        "event_name": "",
        "auth_token": "hook-token-123",
        "signing_secret": secret,
        **extra,
    }


def test_webhook_form_labels_choices_and_a_signing_secret_to_copy(
    staff_client: Client,
) -> None:
    page = new_webhook_form(staff_client)
    body = text_of(page)
    assert "New Webhook destination" in body
    labels = re.findall(r'<label for="id_\w+">([^<]+)</label>', body)
    assert labels == [
        "Name",
        "Destination URL",
        "Trigger Event",
        "Event type",
        "Event name",
        "Secret Auth-Token",
        "Rate limit (requests per minute)",
        "Signing secret",  # last, beside its Generate button
    ]
    triggers = re.search(r'<select name="trigger".*?</select>', body, re.S)
    assert triggers
    assert re.findall(r">([^<]+)</option>", triggers[0]) == [
        "Events received",
        "Survey completed",
        "User merged or deleted",
        "Delivery failed permanently",
        "User or account entered an audience",
        "User or account left an audience",
    ]
    assert ">Send test</button>" in body
    prefilled = re.search(r'name="signing_secret" value="(whsec_[^"]+)"', body)
    assert prefilled and 'type="text"' in body  # shown in clear while it is new
    assert 'name="auth_token" autocomplete="new-password"' in page.content.decode()

    generated = staff_client.get(
        reverse("destination-generate-secret", args=["webhook"]), headers={"HX-Request": "true"}
    )
    fragment = generated.content.decode().strip()
    assert fragment.startswith("<input") and 'id="id_signing_secret"' in fragment
    fresh = re.search(r'value="(whsec_[^"]+)"', fragment)
    assert fresh and fresh[1] != prefilled[1]
    # Without JavaScript the same link reloads the form with a new secret.
    link = re.search(r'<a class="button" href="([^"]+)" hx-get=', body)
    assert link and link[1] == reverse("destination-new-kind", args=["webhook"]) + "?generate=1"
    assert "Generate signing secret" in body


def test_signing_secret_is_shown_once_after_saving(staff_client: Client, settings: Any) -> None:
    prefilled = re.search(
        r'name="signing_secret" value="(whsec_[^"]+)"', text_of(new_webhook_form(staff_client))
    )
    assert prefilled
    secret = prefilled[1]
    saved = staff_client.post(
        reverse("destination-new-kind", args=["webhook"]),
        webhook_fields("https://hooks.example.com/in", secret),
    )
    assert saved.status_code == 200 and "no-store" in saved["Cache-Control"]
    assert input_value(saved, "new-secret") == secret
    assert "Destination 'Ops hook' created." in text_of(saved)
    destination = Destination.objects.get(name="Ops hook")
    assert destination.secrets == {"auth_token": "hook-token-123", "signing_secret": secret}
    assert destination.settings["trigger"] == "Survey Completed"

    for later in (
        reverse("destination-delivery", args=[destination.pk]),
        reverse("destination-edit", args=[destination.pk]),
        reverse("outbound-webhook-list"),
    ):
        assert secret not in staff_client.get(later).content.decode()
    listing = text_of(staff_client.get(reverse("outbound-webhook-list")))
    assert "Ops hook" in listing and "https://hooks.example.com/in" in listing
    assert "Survey completed" in listing

    # Saving again with the field blank keeps the secret and goes straight on.
    kept = staff_client.post(
        reverse("destination-edit", args=[destination.pk]),
        webhook_fields("https://hooks.example.com/in", auth_token=""),
    )
    assert kept.status_code == 302
    destination.refresh_from_db()
    assert destination.secrets["signing_secret"] == secret
    # Generate on the edit form without JavaScript, then save: the new one is shown once.
    regenerated = staff_client.get(
        reverse("destination-edit", args=[destination.pk]), {"generate": 1}
    )
    new = re.search(r'name="signing_secret" value="(whsec_[^"]+)"', text_of(regenerated))
    assert new and new[1] != secret
    assert 'value="https://hooks.example.com/in"' in regenerated.content.decode()
    resaved = staff_client.post(
        reverse("destination-edit", args=[destination.pk]),
        webhook_fields("https://hooks.example.com/in", new[1], auth_token=""),
    )
    assert input_value(resaved, "new-secret") == new[1]


def test_send_test_reaches_a_local_receiver_when_private_urls_are_allowed(
    staff_client: Client, settings: Any, local_receiver: WebhookReceiver
) -> None:
    settings.ALLOW_PRIVATE_URLS = True
    secret = re.search(
        r'name="signing_secret" value="(whsec_[^"]+)"', text_of(new_webhook_form(staff_client))
    )
    assert secret
    local_receiver.secret = secret[1]
    result = staff_client.post(
        reverse("destination-test-new", args=["webhook"]),
        webhook_fields(local_receiver.url, secret[1]),
        headers={"HX-Request": "true"},
    )
    assert re.search(r"✓ Test event accepted: HTTP 200 in \d+ ms", text_of(result))
    [verified] = local_receiver.wait_for_verified(1)
    assert verified["event"] == "Switchboard Test"
    assert verified["context"] == {"switchboard": {"test": True}}
    [call] = local_receiver.received
    assert call.header("Authorization") == "Bearer hook-token-123"
    assert call.header("webhook-id") == f"msg_{verified['messageId']}"
    assert not Destination.objects.exists()  # a test saves nothing


def test_send_test_is_refused_for_a_loopback_url_by_default(
    staff_client: Client, settings: Any, local_receiver: WebhookReceiver
) -> None:
    settings.ALLOW_PRIVATE_URLS = False
    result = staff_client.post(
        reverse("destination-test-new", args=["webhook"]), webhook_fields(local_receiver.url)
    )
    body = text_of(result)
    assert f"Could not reach {local_receiver.url}: {PRIVATE_REFUSAL}" in body
    assert 'class="message error"' in result.content.decode()
    assert local_receiver.received == []


def test_generate_needs_htmx_or_goes_to_the_form_and_only_for_a_generated_secret(
    staff_client: Client,
) -> None:
    plain = staff_client.get(reverse("destination-generate-secret", args=["webhook"]))
    assert plain["Location"] == reverse("destination-new-kind", args=["webhook"]) + "?generate=1"
    refiner = staff_client.get(
        reverse("destination-generate-secret", args=["refiner"]), headers={"HX-Request": "true"}
    )
    assert refiner.status_code == 404


def test_outbound_webhooks_list_says_what_each_is_triggered_by(staff_client: Client) -> None:
    for name, trigger, call_type, event_name in (
        ("Everything", "events", "", ""),
        ("Pages", "events", "page", ""),
        ("Signups", "events", "track", "Signed Up"),
        ("Alerts", "delivery_failed", "", ""),
    ):
        destination_create(
            kind="webhook",
            name=name,
            settings_values={
                "url": f"https://hooks.example.com/{name.lower()}",
                "trigger": trigger,
                "event_type": call_type,
                "event_name": event_name,
            },
            secret_values={},
        )
    page = text_of(staff_client.get(reverse("outbound-webhook-list")))
    rows = re.findall(r"<strong>(\w+)</strong></a></td>.*?<code class=\"url\">([^<]+)</code></td>"
                      r"\s*<td>([^<]+)(?:<small class=\"muted block\">([^<]+)</small>)?", page,
                      re.S)  # fmt: skip
    assert rows == [
        ("Alerts", "https://hooks.example.com/alerts", "Delivery failed permanently", ""),
        ("Everything", "https://hooks.example.com/everything", "Events received", ""),
        ("Pages", "https://hooks.example.com/pages", "Events received", "page calls only"),
        ("Signups", "https://hooks.example.com/signups", "Events received",
         "track named 'Signed Up'"),
    ]  # fmt: skip
