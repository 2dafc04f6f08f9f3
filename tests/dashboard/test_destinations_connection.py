"""Test connection over real HTTP to the fake Refiner, said in words with the raw error
behind details; the destinations list with health and backlog; disable, enable, resume."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.test import Client
from django.urls import reverse
from django.utils import timezone

from destinations.delivery.services import destination_create
from destinations.models import Delivery, Destination, Source
from destinations.standins.refiner import FakeRefiner
from tests.helpers.delivery_rows import make_event, seed_delivery
from tests.helpers.pages import text_of

# --- Test connection, over HTTP to the fake Refiner ------------------------------------------


def test_connection_with_typed_values_succeeds(
    staff_client: Client, fake_refiner: FakeRefiner
) -> None:
    response = staff_client.post(
        reverse("destination-test-new", args=["refiner"]),
        {"name": "", "api_key": "rk_test", "base_url": fake_refiner.base_url},
        headers={"HX-Request": "true"},
    )
    body = text_of(response)
    assert body.lstrip().startswith('<div id="test-result"')
    assert "<html" not in body
    assert "Connected to Refiner project 'Switchboard tests'" in body
    [call] = fake_refiner.requests_to("/")
    assert call.header("Authorization") == "Bearer rk_test"
    assert "HX-Request" in response["Vary"]


def test_connection_failure_shows_the_exact_error(
    staff_client: Client, fake_refiner: FakeRefiner
) -> None:
    url = reverse("destination-test-new", args=["refiner"])
    values = {"api_key": "rk_unknown", "base_url": fake_refiner.base_url}
    wrong_key = staff_client.post(url, values, headers={"HX-Request": "true"})
    assert "Refiner answered HTTP 404: API key not valid or does not exist" in text_of(wrong_key)
    assert 'class="message error"' in wrong_key.content.decode()

    fake_refiner.server_error(times=1)
    values["api_key"] = "rk_test"
    down = staff_client.post(url, values, headers={"HX-Request": "true"})
    assert "Refiner answered HTTP 500: Server Error" in text_of(down)

    fake_refiner.refuse_connections()
    refused = staff_client.post(url, values, headers={"HX-Request": "true"})
    port = fake_refiner.base_url.split(":")[2].split("/")[0]
    assert headline_of(refused) == (
        f"Could not reach {fake_refiner.base_url}/: connection refused by 127.0.0.1:{port} "
        "(nothing is listening there)"
    )

    no_key = staff_client.post(
        url, {"base_url": fake_refiner.base_url}, headers={"HX-Request": "true"}
    )
    assert "API Key: This field is required." in text_of(no_key)


def headline_of(response: Any) -> str:
    """What a failed Test connection says first, outside its Details toggle."""
    match = re.search(r'<div class="message error"><p>(.*?)</p>', text_of(response), re.S)
    assert match, text_of(response)
    return match[1]


def details_of(response: Any) -> str:
    match = re.search(
        r"<details><summary>Details</summary><pre[^>]*>(.*?)</pre>", text_of(response), re.S
    )
    assert match, text_of(response)
    return match[1]


def test_connection_failures_are_said_in_words_with_the_raw_error_behind_details(
    staff_client: Client, fake_refiner: FakeRefiner, settings: Any
) -> None:
    url = reverse("destination-test-new", args=["refiner"])

    def tried(base_url: str) -> Any:
        values = {"api_key": "rk_test", "base_url": base_url}
        return staff_client.post(url, values, headers={"HX-Request": "true"})

    unknown_host = tried("http://api.refiner.invalid/v1")
    assert headline_of(unknown_host) == (
        "Could not reach http://api.refiner.invalid/v1/: could not resolve the host "
        "api.refiner.invalid"
    )
    assert "NameResolutionError" in details_of(unknown_host)
    assert "ConnectionPool" not in headline_of(unknown_host)

    # https:// to a server that speaks plain HTTP: the TLS handshake fails.
    port = fake_refiner.base_url.split(":")[2].split("/")[0]
    tls = tried(f"https://127.0.0.1:{port}/v1")
    assert headline_of(tls) == (
        f"Could not reach https://127.0.0.1:{port}/v1/: TLS problem with 127.0.0.1: wrong "
        "version number (is it an http:// address?)"
    )
    assert "SSLError" in details_of(tls)

    settings.DELIVERY_TIMEOUT_SECONDS = 1
    fake_refiner.hang(seconds=3, times=1)
    slow = tried(fake_refiner.base_url)
    assert headline_of(slow) == (
        f"Could not reach {fake_refiner.base_url}/: timed out waiting for 127.0.0.1 to answer"
    )
    assert "Read timed out" in details_of(slow)


def test_connection_on_a_saved_destination_uses_the_stored_key_when_left_blank(
    staff_client: Client, refiner_destination: Destination, fake_refiner: FakeRefiner
) -> None:
    url = reverse("destination-test", args=[refiner_destination.pk])
    # Without htmx the whole form comes back, with the result and the typed values.
    response = staff_client.post(
        url, {"name": "Refiner", "api_key": "", "base_url": fake_refiner.base_url}
    )
    body = text_of(response)
    assert "<html" in body
    assert "Connected to Refiner project 'Switchboard tests'" in body
    assert f'value="{fake_refiner.base_url}"' in body
    assert "rk_test" not in body
    [call] = fake_refiner.requests_to("/")
    assert call.header("Authorization") == "Bearer rk_test"

    fake_refiner.reject_key(404)
    rejected = staff_client.post(url, {"api_key": "", "base_url": fake_refiner.base_url})
    assert "Refiner answered HTTP 404: API key not valid or does not exist" in text_of(rejected)


# --- list, enable/disable, resume --------------------------------------------------------


def test_list_shows_health_and_backlog_without_a_query_per_row(
    staff_client: Client,
    refiner_destination: Destination,
    source: Source,
    django_assert_max_num_queries: Any,
) -> None:
    for i in range(8):
        destination_create(
            kind="refiner",
            name=f"Refiner {i}",
            settings_values={},
            secret_values={"api_key": f"rk_{i}"},
        )
    statuses = ["pending", "retrying", "sending", "delivered", "failed", "skipped", "pending"]
    for n, status in enumerate(statuses):
        seed_delivery(refiner_destination, make_event(source, n), status)
    now = timezone.now()
    Destination.objects.filter(pk=refiner_destination.pk).update(
        last_success_at=now - timedelta(minutes=5),
        last_error_at=now - timedelta(minutes=1),
        last_error="HTTP 500 from Refiner: Server Error",
        paused_at=now,
        paused_reason="Paused after 50+ failures in a row",
    )
    # The page's own few queries plus the frame's (session, user, role, demo banner, the
    # conflict counts in the navigation): constant, whatever the number of destinations.
    with django_assert_max_num_queries(7):
        response = staff_client.get(reverse("destination-list"))
    listed = {d.name: d for d in response.context["destinations"]}
    assert listed["Refiner"].backlog == 4
    assert listed["Refiner 0"].backlog == 0
    body = text_of(response)
    assert "HTTP 500 from Refiner: Server Error" in body
    assert "Paused after 50+ failures in a row" in body
    assert body.count(">Resume</button>") == 1
    assert body.count(">Disable</button>") == 9


def test_disable_and_enable(staff_client: Client, refiner_destination: Destination) -> None:
    url = reverse("destination-toggle", args=[refiner_destination.pk])
    response = staff_client.post(url, {"next": reverse("destination-list")}, follow=True)
    refiner_destination.refresh_from_db()
    assert refiner_destination.enabled is False
    assert refiner_destination.secrets == {"api_key": "rk_test"}
    assert "Refiner disabled: new events are not routed to it" in text_of(response)
    assert response.redirect_chain[-1][0] == reverse("destination-list")
    staff_client.post(url, {"next": "https://evil.example/"})
    refiner_destination.refresh_from_db()
    assert refiner_destination.enabled is True


def test_resume_clears_the_pause_and_wakes_waiting_deliveries(
    staff_client: Client, refiner_destination: Destination, source: Source
) -> None:
    waiting = seed_delivery(
        refiner_destination, make_event(source, 1), "retrying", age=timedelta(hours=5)
    )
    Delivery.objects.filter(pk=waiting.pk).update(
        retry_until=timezone.now() - timedelta(minutes=1),
        next_attempt_at=timezone.now() + timedelta(hours=1),
    )
    Destination.objects.filter(pk=refiner_destination.pk).update(
        paused_at=timezone.now(), paused_reason="Paused by the breaker", consecutive_failures=60
    )
    page = staff_client.get(reverse("destination-delivery", args=[refiner_destination.pk]))
    assert "Paused by the breaker" in text_of(page)
    # Nothing moves while paused: the page does not poll, though a delivery is waiting.
    assert page.context["report"].counts.pending == 1
    assert 'hx-trigger="job-done from:body">' in page.content.decode()
    assert reverse("destination-resume", args=[refiner_destination.pk]) in text_of(page)

    response = staff_client.post(
        reverse("destination-resume", args=[refiner_destination.pk]), follow=True
    )
    refiner_destination.refresh_from_db()
    assert refiner_destination.paused_at is None
    assert refiner_destination.paused_reason == ""
    assert refiner_destination.consecutive_failures == 0
    assert "Refiner resumed: 1 waiting deliveries will be sent now." in text_of(response)
    assert "Paused by the breaker" not in text_of(response)
    waiting.refresh_from_db()
    assert waiting.retry_until > timezone.now() + timedelta(hours=3)
