"""The Refiner pages and webhooks in the dashboard: receivers (the token shown once, rotation,
the log of calls), Refiner's contacts, segments, forms and responses read over real HTTP from the
fake Refiner, the API console (confined, audit-logged), and outbound webhook destinations (their
form, Generate, the signing secret shown once, Send test through the SSRF guard)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from destinations.delivery.services import destination_create
from destinations.models import (
    AuditAction,
    AuditEntry,
    CallOutcome,
    Destination,
    Event,
    Profile,
    RefinerCall,
    RefinerReceiver,
)
from destinations.standins.refiner import FakeRefiner, sample_webhook_payload
from destinations.webhooks.receivers import token_hash
from tests.helpers.webhook_receiver import WebhookReceiver, serve_webhook_receiver

INSTRUCTIONS = "In Refiner: Integrations > Webhooks > add webhook; paste the URL and token"
RELATIVE_ONLY = "URL must be relative to the Refiner API, e.g. /contacts"
PRIVATE_REFUSAL = (
    "127.0.0.1 (127.0.0.1) is a private or loopback address: refused "
    "(SWITCHBOARD_ALLOW_PRIVATE_URLS=true allows it)"
)


@pytest.fixture
def staff_client(client: Client, transactional_db: None) -> Client:
    user = get_user_model().objects.create_superuser(
        username="op", email="op@example.com", password="correct horse battery"
    )
    client.force_login(user)
    return client


def text_of(response: Any) -> str:
    """The response body as a reader sees it: entities decoded."""
    return html.unescape(response.content.decode())


def words_of(response: Any) -> str:
    """The text a reader sees, tags dropped and whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", text_of(response)).split()).replace(" ;", ";")


def input_value(response: Any, element_id: str) -> str:
    match = re.search(rf'<input id="{element_id}"[^>]*\bvalue="([^"]*)"', response.content.decode())
    assert match, f"no input #{element_id}"
    return html.unescape(match[1])


def hook(client: Client, receiver: RefinerReceiver, payload: Any, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return client.post(
        reverse("refiner-webhook", args=[receiver.public_id]),
        data=body,
        content_type="application/json",
        headers=headers,
    )


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


# --- Refiner's data -------------------------------------------------------------------------


@pytest.fixture
def seeded(fake_refiner: FakeRefiner) -> dict[str, Any]:
    """Seven contacts an hour apart; user-2 and user-4 in "Power users"; user-1 and user-3
    answered "NPS" (user-3 last); a late visitor first seen before everyone, seen last."""
    contacts = fake_refiner.seed_contacts(7)
    power = fake_refiner.add_segment("Power users")
    fake_refiner.add_segment("Churn risk", is_manual=False)
    nps = fake_refiner.add_form("NPS")
    fake_refiner.add_form("Onboarding", status="draft")
    for number in (2, 4):
        contacts[number - 1].segment_uuids.append(power.uuid)
    start = datetime(2024, 2, 1, tzinfo=UTC)
    first = fake_refiner.add_response(
        form=nps, contact=contacts[0], data={"score": 6, "why": "slow"}, completed_at=start
    )
    last = fake_refiner.add_response(
        form=nps,
        contact=contacts[2],
        data={"score": 10, "why": "fast"},
        completed_at=start + timedelta(days=1),
    )
    late = fake_refiner.add_contact(
        remote_id="late-visitor",
        email="late@example.com",
        first_seen_at="2023-06-01T00:00:00Z",
        last_seen_at="2024-06-01T00:00:00Z",
    )
    return {
        "contacts": contacts,
        "power": power,
        "nps": nps,
        "responses": [first, last],
        "late": late,
    }


def listed_ids(response: Any) -> list[str]:
    """The User id column of the contacts table, in order."""
    row = r'<tr>\s*<td><a href="/refiner/contacts/[^"]+"><strong>[^<]*</strong></a>.*?</td>'
    return re.findall(row + r"\s*<td>(?:<a [^>]*>)?([^<]+)", response.content.decode(), re.S)


def test_contacts_filters_and_cursor_paging(
    staff_client: Client, refiner_destination: Destination, fake_refiner: FakeRefiner, seeded: Any
) -> None:
    url = reverse("refiner-contacts")
    default = staff_client.get(url)
    assert listed_ids(default) == [f"user-{n}" for n in range(7, 0, -1)] + ["late-visitor"]
    assert "<strong>8</strong> contacts" in text_of(default)
    for label in ("Order by", "Form UUID", "Segment UUID", "Limit"):
        assert f"{label} <" in text_of(default)

    page1 = staff_client.get(url, {"order_by": "first_seen_at", "limit": "3"})
    assert listed_ids(page1) == ["user-7", "user-6", "user-5"]
    sent = fake_refiner.requests_to("/contacts")[-1]
    assert sent.query == {"order_by": "first_seen_at", "page_length": "3"}
    assert sent.header("Authorization") == "Bearer rk_test"
    next2 = re.search(r'href="(/refiner/contacts/\?[^"]*cursor=[^"]+)"', page1.content.decode())
    assert next2 and "First page" not in text_of(page1)
    page2 = staff_client.get(html.unescape(next2[1]))
    assert listed_ids(page2) == ["user-4", "user-3", "user-2"]
    assert fake_refiner.requests_to("/contacts")[-1].query["page_cursor"]
    assert "First page" in text_of(page2)
    next3 = re.search(
        r'href="(/refiner/contacts/\?[^"]*cursor=[^"]+)"[^>]*>Next', page2.content.decode()
    )
    assert next3
    page3 = staff_client.get(html.unescape(next3[1]), headers={"HX-Request": "true"})
    assert page3.content.decode().lstrip().startswith('<div id="contact-results">')
    assert listed_ids(page3) == ["user-1", "late-visitor"]
    assert "Next →" not in text_of(page3) and "First page" in text_of(page3)

    by_last_seen = staff_client.get(url, {"order_by": "last_seen_at", "limit": "2"})
    assert listed_ids(by_last_seen) == ["late-visitor", "user-7"]
    by_survey = staff_client.get(url, {"order_by": "last_form_submission_at", "limit": "3"})
    assert listed_ids(by_survey) == ["user-3", "user-1", "late-visitor"]  # then the rest
    in_form = staff_client.get(url, {"form_uuid": seeded["nps"].uuid})
    assert listed_ids(in_form) == ["user-3", "user-1"]
    in_segment = staff_client.get(url, {"segment_uuid": seeded["power"].uuid})
    assert listed_ids(in_segment) == ["user-4", "user-2"]
    assert "<strong>2</strong> contacts" in text_of(in_segment)
    searched = staff_client.get(url, {"search": "late@"})
    assert listed_ids(searched) == ["late-visitor"]


def test_contacts_link_to_our_users_and_refuse_bad_input_without_asking(
    staff_client: Client, refiner_destination: Destination, fake_refiner: FakeRefiner, seeded: Any
) -> None:
    profile = Profile.objects.create(user_id="user-3", email="user3@example.com")
    page = staff_client.get(reverse("refiner-contacts"), {"limit": "5"})
    assert f'<a href="/users/{profile.pk}/" title="This user in Switchboard">user-3</a>' in (
        page.content.decode()
    )
    asked = len(fake_refiner.requests_to("/contacts"))
    bad = staff_client.get(reverse("refiner-contacts"), {"limit": "5000"})
    assert "Ensure this value is less than or equal to 1000." in text_of(bad)
    assert len(fake_refiner.requests_to("/contacts")) == asked  # nothing sent


def test_refiner_errors_are_shown_not_raised(
    staff_client: Client, refiner_destination: Destination, fake_refiner: FakeRefiner
) -> None:
    fake_refiner.reject_key(404, times=1)
    refused = staff_client.get(reverse("refiner-contacts"))
    assert refused.status_code == 200
    assert "Refiner answered HTTP 404: API key not valid or does not exist" in text_of(refused)
    fake_refiner.server_error(times=1, path="/segments")
    assert "Refiner answered HTTP 500: Server Error" in text_of(
        staff_client.get(reverse("refiner-segments"))
    )
    bad_cursor = staff_client.get(reverse("refiner-contacts"), {"cursor": "garbage"})
    assert "Refiner answered HTTP 422: The page cursor is invalid." in text_of(bad_cursor)
    fake_refiner.refuse_connections()
    try:
        down = staff_client.get(reverse("refiner-responses"))
    finally:
        fake_refiner.accept_connections()
    assert down.status_code == 200 and "Could not reach Refiner:" in text_of(down)


def test_contact_detail_shows_attributes_segments_and_account(
    staff_client: Client, refiner_destination: Destination, fake_refiner: FakeRefiner
) -> None:
    power = fake_refiner.add_segment("Power users")
    contact = fake_refiner.add_contact(
        remote_id="u-ada",
        email="ada@example.com",
        attributes={"name": "Ada Lovelace", "plan": "pro", "seats": 12},
        account={"id": "acct-7", "name": "Initech", "domain": "initech.com"},
        segments=[power],
    )
    page = staff_client.get(reverse("refiner-contact", args=[contact.uuid]))
    body = text_of(page)
    assert "Ada Lovelace" in body and "ada@example.com" in body and "u-ada" in body
    attributes = re.findall(r"<tr><td><code>(\w+)</code></td><td>([^<]*)</td></tr>", body)
    assert attributes == [("name", "Ada Lovelace"), ("plan", "pro"), ("seats", "12")]
    assert f"?segment_uuid={power.uuid}" in body and ">Power users</a>" in body
    assert "Initech" in body and "acct-7" in body and "initech.com" in body
    assert fake_refiner.requests_to("/contact")[-1].query == {"uuid": contact.uuid}

    missing = staff_client.get(reverse("refiner-contact", args=["no-such-uuid"]))
    assert missing.status_code == 200
    assert "Refiner answered HTTP 404: Contact not found" in text_of(missing)


def test_segments_forms_and_responses(
    staff_client: Client, refiner_destination: Destination, fake_refiner: FakeRefiner, seeded: Any
) -> None:
    segments = text_of(staff_client.get(reverse("refiner-segments")))
    assert re.findall(r"<td><strong>([^<]+)</strong></td>", segments) == [
        "Churn risk",
        "Power users",
    ]
    assert seeded["power"].uuid in segments and "automatic" in segments

    forms = text_of(staff_client.get(reverse("refiner-forms")))
    assert re.findall(r"<td><strong>([^<]+)</strong></td>", forms) == ["Onboarding", "NPS"]
    drafts = text_of(staff_client.get(reverse("refiner-forms"), {"which": "drafts"}))
    assert re.findall(r"<td><strong>([^<]+)</strong></td>", drafts) == ["Onboarding"]
    assert fake_refiner.requests_to("/forms")[-1].query["list"] == "drafts"

    url = reverse("refiner-responses")
    responses = staff_client.get(url, {"form_uuid": seeded["nps"].uuid, "limit": "1"})
    body = text_of(responses)
    assert "<strong>2</strong> responses" in body
    assert "<dt>score</dt><dd>10</dd>" in body and "<dt>why</dt><dd>fast</dd>" in body
    assert "<dd>slow</dd>" not in body
    following = re.search(r'href="(/refiner/responses/\?[^"]*cursor=[^"]+)"', body)
    assert following
    older = text_of(staff_client.get(following[1]))
    assert "<dt>score</dt><dd>6</dd>" in older and "First page" in older
    in_segment = text_of(staff_client.get(url, {"segment_uuid": seeded["power"].uuid}))
    assert "No responses match." in in_segment


def test_pages_explain_what_to_do_without_a_refiner_destination(staff_client: Client) -> None:
    for name in ("refiner-contacts", "refiner-segments", "refiner-forms", "refiner-console"):
        page = staff_client.get(reverse(name))
        assert page.status_code == 200
        assert "No Refiner destination yet." in text_of(page)
        assert reverse("destination-new-kind", args=["refiner"]) in page.content.decode()
    assert staff_client.get(reverse("refiner-home"))["Location"] == reverse("refiner-contacts")


def test_several_refiner_destinations_get_a_picker_that_links_keep(
    staff_client: Client, refiner_destination: Destination, fake_refiner: FakeRefiner
) -> None:
    other = destination_create(
        kind="refiner",
        name="Refiner EU",
        settings_values={"base_url": fake_refiner.base_url},
        secret_values={"api_key": "rk_not_valid_here"},
    )
    first = text_of(staff_client.get(reverse("refiner-contacts")))
    assert 'name="destination"' in first and "Refiner EU</option>" in first
    assert '<span class="badge">Refiner</span>' in first  # the first by name is read
    picked = text_of(staff_client.get(reverse("refiner-contacts"), {"destination": other.pk}))
    assert "API key not valid or does not exist" in picked
    assert f"/refiner/segments/?destination={other.pk}" in picked


# --- the API console ------------------------------------------------------------------------


def console(client: Client, **fields: str) -> Any:
    data = {"method": "GET", "url": "/contacts", "query": "", "headers": "", "body": ""}
    return client.post(reverse("refiner-console"), {**data, **fields})


def test_console_calls_refiner_and_audits_the_call(
    staff_client: Client, refiner_destination: Destination, fake_refiner: FakeRefiner
) -> None:
    fake_refiner.seed_contacts(3)
    form = text_of(staff_client.get(reverse("refiner-console"), {"url": "/segments"}))
    for label in ("URL", "Method", "Headers", "Query String", "Body"):
        assert f">{label}</label>" in form
    assert 'value="/segments"' in form

    answer = console(staff_client, query="page_length=2", headers="X-Trace-Id: abc-123")
    body = text_of(answer)
    assert "HTTP 200" in body and f"GET {fake_refiner.base_url}/contacts?page_length=2" in body
    assert '"remote_id": "user-3"' in body and '"remote_id": "user-1"' not in body
    assert re.search(r"\d+ ms", body)
    sent = fake_refiner.requests_to("/contacts")[-1]
    assert sent.header("X-Trace-Id") == "abc-123"
    assert sent.header("Authorization") == "Bearer rk_test"
    entry = AuditEntry.objects.get(action=AuditAction.REFINER_API_CALL)
    # Parameter names only: values may be people's emails or ids.
    assert entry.summary == "GET /v1/contacts (parameters: page_length) on Refiner: HTTP 200"
    assert entry.actor is not None and entry.actor.username == "op"
    audit_url = reverse("audit-list")
    assert f'{audit_url}?action=refiner_api_call"' in answer.content.decode()

    made = console(
        staff_client,
        method="POST",
        url="/identify-user",
        body='{"id": "u-new", "email": "new@example.com", "plan": "pro"}',
    )
    assert '"message": "ok"' in text_of(made)
    assert fake_refiner.contact(id="u-new") is not None

    # Refiner's own errors are answers: shown with their status, like any other.
    missing = text_of(console(staff_client, url="/contact", query="id=nobody"))
    assert "HTTP 404" in missing and '"message": "Contact not found"' in missing

    fragment = staff_client.post(
        reverse("refiner-console"),
        {"method": "GET", "url": "/", "query": "", "headers": "", "body": ""},
        headers={"HX-Request": "true"},
    )
    assert fragment.content.decode().lstrip().startswith('<div id="console-panel"')
    assert "Switchboard tests" in text_of(fragment)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"url": "https://evil.example/x"}, RELATIVE_ONLY),
        ({"url": "//evil.example/x"}, RELATIVE_ONLY),
        ({"url": "/../admin"}, "URL must not contain . or .. segments"),
        ({"method": "POST", "url": "/identify-user", "body": "{not json"},
         "Body is not valid JSON: Expecting property name enclosed in double quotes"),
        ({"headers": "just words"}, "Headers line 1 must look like Name: value"),
        ({"headers": "Accept: application/json\nAuthorization: Bearer x"},
         "Authorization is set by Switchboard"),
    ],
)  # fmt: skip
def test_console_refuses_before_sending(
    staff_client: Client,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    fields: dict[str, str],
    message: str,
) -> None:
    answer = console(staff_client, **fields)
    assert answer.status_code == 200
    body = text_of(answer)
    assert "Not sent" in body and message in body
    assert fake_refiner.received == []
    assert not AuditEntry.objects.filter(action=AuditAction.REFINER_API_CALL).exists()


def test_console_refuses_encoded_dot_segments_the_service_would_let_through(
    staff_client: Client, refiner_destination: Destination, fake_refiner: FakeRefiner
) -> None:
    for path in ("/%2e%2e/admin", "/.%2E/admin", "/contacts%2F..%2Fadmin", "/a%5c..%5cb"):
        body = text_of(console(staff_client, url=path))
        assert "The URL must not contain an encoded dot, slash or backslash" in body, path
    assert fake_refiner.received == []
    assert not AuditEntry.objects.filter(action=AuditAction.REFINER_API_CALL).exists()


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


def test_an_unreadable_api_key_is_explained(
    staff_client: Client, refiner_destination: Destination, settings: Any
) -> None:
    settings.ENCRYPTION_KEY = Fernet.generate_key().decode()
    expected = "The Refiner API Key cannot be decrypted: SWITCHBOARD_ENCRYPTION_KEY has changed."
    assert expected in text_of(staff_client.get(reverse("refiner-contacts")))
    assert expected in text_of(console(staff_client))
    assert not AuditEntry.objects.filter(action=AuditAction.REFINER_API_CALL).exists()


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
