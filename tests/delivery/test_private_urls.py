"""One rule for every URL Switchboard calls (decision 23): private and loopback addresses are
refused unless SWITCHBOARD_ALLOW_PRIVATE_URLS=true, whether the URL is a webhook's, Refiner's
Base URL or Kana's API URL, and whether it is a delivery, Test connection or a Refiner page. The
form says so under each URL field."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from destinations.delivery import engine
from destinations.models import Delivery, DeliveryStatus, Destination
from destinations.standins.kana import FakeKana
from destinations.standins.refiner import FakeRefiner
from tests.helpers.ingest import IngestPost
from tests.helpers.pages import text_of
from tests.helpers.webhook_receiver import WebhookReceiver, serve_webhook_receiver

REFUSED = (
    "127.0.0.1 (127.0.0.1) is a private or loopback address: refused "
    "(SWITCHBOARD_ALLOW_PRIVATE_URLS=true allows it)"
)
RULE = (
    "Private and loopback addresses (10.x, 192.168.x, 127.0.0.1, localhost...) are {state}: "
    "SWITCHBOARD_ALLOW_PRIVATE_URLS=true allows them."
)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    yield from serve_webhook_receiver()


def test_connection_to_loopback_is_refused_alike_for_every_kind(
    staff_client: Client,
    settings: Any,
    fake_refiner: FakeRefiner,
    fake_kana: FakeKana,
    receiver: WebhookReceiver,
) -> None:
    settings.ALLOW_PRIVATE_URLS = False
    tried = {
        "refiner": ({"api_key": "rk_test", "base_url": fake_refiner.base_url}, "/"),
        "kana": ({"api_key": "prv_test", "api_url": fake_kana.base_url}, ""),
        "webhook": ({"url": receiver.url, "trigger": "events"}, ""),
    }
    for kind, (values, path) in tried.items():
        response = staff_client.post(
            reverse("destination-test-new", args=[kind]), values, headers={"HX-Request": "true"}
        )
        url = next(v for k, v in values.items() if k.endswith("url"))
        assert f"Could not reach {url}{path}: {REFUSED}" in text_of(response), kind
    assert fake_refiner.received == [] and fake_kana.received == [] and receiver.received == []

    settings.ALLOW_PRIVATE_URLS = True
    allowed = staff_client.post(
        reverse("destination-test-new", args=["refiner"]),
        tried["refiner"][0],
        headers={"HX-Request": "true"},
    )
    assert "Connected to Refiner project 'Switchboard tests'" in text_of(allowed)


def test_a_refiner_delivery_to_loopback_fails_at_once_like_a_webhook_s(
    post_ingest: IngestPost,
    settings: Any,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
) -> None:
    settings.ALLOW_PRIVATE_URLS = False
    assert post_ingest("track", {"userId": "u1", "event": "Signed Up"}).status_code == 200
    delivery = Delivery.objects.get()
    engine.deliver([delivery.pk])
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED  # permanent: retrying cannot help
    assert delivery.reason == f"address not allowed: {REFUSED}"
    assert fake_refiner.received == []


def test_refiner_pages_go_through_the_same_guard(
    staff_client: Client, settings: Any, refiner_destination: Destination, fake_refiner: FakeRefiner
) -> None:
    settings.ALLOW_PRIVATE_URLS = False
    page = staff_client.get(reverse("refiner-contacts"))
    assert page.status_code == 200
    assert f"Could not reach Refiner: {REFUSED}" in text_of(page)
    assert fake_refiner.received == []


@pytest.mark.parametrize(
    ("kind", "label"),
    [("refiner", "Base URL"), ("kana", "API URL"), ("webhook", "Destination URL")],
)
def test_every_url_field_states_the_rule(
    staff_client: Client, settings: Any, kind: str, label: str
) -> None:
    for allowed, state in ((False, "refused here"), (True, "allowed here")):
        settings.ALLOW_PRIVATE_URLS = allowed
        form = text_of(staff_client.get(reverse("destination-new-kind", args=[kind])))
        field = re.search(rf">{label}</label>.*?<small>(.*?)</small>", form, re.S)
        assert field, form
        assert field[1].endswith(RULE.format(state=state)), field[1]
