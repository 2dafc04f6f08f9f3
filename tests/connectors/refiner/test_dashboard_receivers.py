"""Refiner webhook receivers in the dashboard: the URL and token shown once, rotation, the
log of calls with paging, disabling, and pages whose queries do not grow."""

from __future__ import annotations

import html
import re
from typing import Any

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from destinations.connectors.refiner.receivers import token_hash
from destinations.models import (
    AuditAction,
    AuditEntry,
    CallOutcome,
    Event,
    RefinerCall,
    RefinerReceiver,
)
from destinations.standins.refiner import sample_webhook_payload
from tests.helpers.pages import text_of, words_of
from tests.helpers.refiner_hooks import hook, input_value

INSTRUCTIONS = "In Refiner: Integrations > Webhooks > add webhook; paste the URL and token"


def create_receiver(client: Client, name: str = "NPS", trigger: str = "Survey Completed") -> Any:
    return client.post(reverse("receiver-new"), {"name": name, "trigger": trigger})


# --- Refiner webhook receivers --------------------------------------------------------------


def test_new_receiver_shows_its_url_and_token_once(staff_client: Client) -> None:
    empty = staff_client.get(reverse("receiver-list"))
    assert "No Refiner webhooks yet." in text_of(empty)

    form = text_of(staff_client.get(reverse("receiver-new")))
    assert ">Webhook Name</label>" in form and ">Trigger Event</label>" in form
    choices = re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', form)
    assert choices == [
        ("Survey Completed", "Survey Completed"),
        ("Saw Survey", "Survey shown"),
        ("Dismissed Survey", "Survey dismissed"),
        ("Entered Segment", "User entered segment"),
        ("any", "Any event"),
    ]

    made = create_receiver(staff_client)
    assert made.status_code == 200
    assert "no-store" in made["Cache-Control"]
    receiver = RefinerReceiver.objects.get()
    url = input_value(made, "destination-url")
    token = input_value(made, "auth-token")
    assert url == f"http://testserver/hooks/refiner/{receiver.public_id}"
    assert token.startswith("rwh_") and len(token) > 40
    assert receiver.token_hash == token_hash(token) and receiver.token_hint == token[-4:]
    page = text_of(made)
    assert INSTRUCTIONS in words_of(made)
    assert "The token is shown only this once." in page
    assert page.count('data-copy-value="#') == 2  # a Copy button for the URL and the token

    # Every later visit shows the hint, never the token.
    detail = staff_client.get(reverse("receiver-detail", args=[receiver.pk]))
    assert token not in detail.content.decode()
    assert f"••••{token[-4:]}" in text_of(detail)
    assert input_value(detail, "destination-url") == url
    listing = staff_client.get(reverse("receiver-list"))
    assert token not in listing.content.decode()
    row = text_of(listing)
    assert "NPS" in row and "Survey Completed" in row and url in row and "never" in row

    again = create_receiver(staff_client)
    assert "A receiver named 'NPS' already exists." in text_of(again)
    assert RefinerReceiver.objects.count() == 1
    [entry] = AuditEntry.objects.filter(action=AuditAction.RECEIVER_CHANGED)
    assert entry.summary == "Created Refiner webhook receiver 'NPS' (Survey Completed)"
    assert entry.actor is not None and entry.actor.username == "op"


def test_rotating_the_token_stops_the_old_one(staff_client: Client) -> None:
    old = input_value(create_receiver(staff_client), "auth-token")
    receiver = RefinerReceiver.objects.get()
    payload = sample_webhook_payload()
    assert hook(staff_client, receiver, payload, old).status_code == 200

    rotated = staff_client.post(reverse("receiver-rotate", args=[receiver.pk]))
    assert rotated.status_code == 200 and "no-store" in rotated["Cache-Control"]
    new = input_value(rotated, "auth-token")
    assert new != old and new.startswith("rwh_")
    assert "The previous token no longer works" in text_of(rotated)

    second = sample_webhook_payload(response={**payload["response"], "uuid": "resp-2"})
    refused = hook(staff_client, receiver, second, old)
    assert (refused.status_code, refused.json()["error"]) == (401, "Wrong Secret Auth-Token")
    accepted = hook(staff_client, receiver, second, new)
    assert (accepted.status_code, accepted.json()["outcome"]) == (200, "accepted")

    detail = text_of(staff_client.get(reverse("receiver-detail", args=[receiver.pk])))
    assert f"••••{new[-4:]}" in detail and "shown once when rotated" in detail
    assert new not in detail


def test_receiver_log_lists_calls_newest_first_with_outcomes(staff_client: Client) -> None:
    token = input_value(create_receiver(staff_client), "auth-token")
    receiver = RefinerReceiver.objects.get()
    payload = sample_webhook_payload()
    hook(staff_client, receiver, payload, token)  # accepted
    hook(staff_client, receiver, payload, token)  # duplicate
    hook(staff_client, receiver, sample_webhook_payload(triggered_event="Saw Survey"), token)
    hook(staff_client, receiver, b"{not json", token)  # refused
    event = Event.objects.get(event="Survey Completed")

    page = staff_client.get(reverse("receiver-detail", args=[receiver.pk]))
    body = text_of(page)
    outcomes = re.findall(r'<span class="badge outcome-(\w+)">', page.content.decode())
    assert outcomes == ["refused", "ignored", "duplicate", "accepted"]
    assert "Invalid JSON: unexpected character" in body
    assert "this receiver listens for 'Survey Completed', not 'Saw Survey'" in body
    assert "stored as 'Survey Completed' for user-123" in body
    assert f'href="{reverse("event-detail", args=[event.pk])}"' in page.content.decode()
    assert '"nps": 9' in body  # the accepted call's payload, in its <details>
    assert "<pre>{not json</pre>" in body  # a refused body's start
    counts = {k: int(v) for k, v in re.findall(r'id="count-(\w+)">(\d+)<', body)}
    assert counts == {"accepted": 1, "duplicate": 1, "ignored": 1, "refused": 1}

    refused = staff_client.get(
        reverse("receiver-detail", args=[receiver.pk]), {"outcome": "refused"}
    )
    assert re.findall(r'badge outcome-(\w+)"', refused.content.decode()) == ["refused"]

    listing = staff_client.get(reverse("receiver-list"))
    assert re.search(r"<strong>4</strong>\s*<small class=\"call-split\">", text_of(listing))
    # The split adds up to the total: every outcome is counted.
    assert "4 1 accepted · 1 duplicate · 1 ignored · 1 refused" in words_of(listing)


def test_receiver_log_pages_back_by_id_and_htmx_gets_the_fragment(staff_client: Client) -> None:
    create_receiver(staff_client)
    receiver = RefinerReceiver.objects.get()
    RefinerCall.objects.bulk_create(
        RefinerCall(
            receiver=receiver, status_code=401, outcome=CallOutcome.REFUSED, detail=f"call {n}"
        )
        for n in range(1, 31)
    )
    url = reverse("receiver-detail", args=[receiver.pk])
    first = text_of(staff_client.get(url))
    shown = re.findall(r"call (\d+)</td>", first)
    assert shown == [str(n) for n in range(30, 5, -1)]  # newest 25
    older = re.search(r'href="([^"]+before=\d+)"', first)
    assert older
    fragment = staff_client.get(html.unescape(older[1]), headers={"HX-Request": "true"})
    assert "<html" not in fragment.content.decode()
    assert fragment.content.decode().lstrip().startswith('<div id="call-log">')
    assert re.findall(r"call (\d+)</td>", text_of(fragment)) == ["5", "4", "3", "2", "1"]
    assert ">Newest</a>" in text_of(fragment) and "Older →" not in text_of(fragment)


def test_disabling_a_receiver_turns_its_url_away(staff_client: Client) -> None:
    token = input_value(create_receiver(staff_client), "auth-token")
    receiver = RefinerReceiver.objects.get()
    url = reverse("receiver-detail", args=[receiver.pk])
    off = staff_client.post(reverse("receiver-toggle", args=[receiver.pk]), follow=True)
    assert "NPS disabled: Refiner's calls to it now get 404 and are not stored." in text_of(off)
    assert off.redirect_chain[-1][0] == url
    assert hook(staff_client, receiver, sample_webhook_payload(), token).status_code == 404
    on = staff_client.post(reverse("receiver-toggle", args=[receiver.pk]), follow=True)
    assert "NPS enabled" in text_of(on)
    assert hook(staff_client, receiver, sample_webhook_payload(), token).status_code == 200
    summaries = list(
        AuditEntry.objects.filter(action=AuditAction.RECEIVER_CHANGED)
        .order_by("id")
        .values_list("summary", flat=True)
    )
    assert summaries[1:] == [
        "Disabled Refiner webhook receiver 'NPS'",
        "Enabled Refiner webhook receiver 'NPS'",
    ]


def test_receiver_pages_cost_the_same_queries_with_more_receivers_and_calls(
    staff_client: Client,
) -> None:
    def queries(url: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert staff_client.get(url).status_code == 200
        return len(captured)

    token = input_value(create_receiver(staff_client, "First"), "auth-token")
    first = RefinerReceiver.objects.get()
    hook(staff_client, first, sample_webhook_payload(), token)
    few_list = queries(reverse("receiver-list"))
    few_detail = queries(reverse("receiver-detail", args=[first.pk]))
    for n in range(5):
        create_receiver(staff_client, f"More {n}")
    for _ in range(10):
        hook(staff_client, first, sample_webhook_payload(triggered_event="Saw Survey"), token)
    assert queries(reverse("receiver-list")) == few_list
    assert queries(reverse("receiver-detail", args=[first.pk])) == few_detail
