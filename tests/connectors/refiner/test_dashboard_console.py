"""The Refiner API console: calls confined to the Refiner API's base URL and audit-logged,
refusals before sending, and an API key that can no longer be decrypted."""

from __future__ import annotations

import re
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.test import Client
from django.urls import reverse

from destinations.connectors.refiner.api import RefinerApiError, confined_url
from destinations.models import AuditAction, AuditEntry, Destination
from destinations.standins.refiner import FakeRefiner
from tests.helpers.pages import text_of

RELATIVE_ONLY = "URL must be relative to the Refiner API, e.g. /contacts"


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


def test_an_unreadable_api_key_is_explained(
    staff_client: Client, refiner_destination: Destination, settings: Any
) -> None:
    settings.ENCRYPTION_KEY = Fernet.generate_key().decode()
    expected = "The Refiner API Key cannot be decrypted: SWITCHBOARD_ENCRYPTION_KEY has changed."
    assert expected in text_of(staff_client.get(reverse("refiner-contacts")))
    assert expected in text_of(console(staff_client))
    assert not AuditEntry.objects.filter(action=AuditAction.REFINER_API_CALL).exists()


def test_console_cannot_leave_the_base_url(refiner_destination: Destination) -> None:
    base = refiner_destination.settings["base_url"]
    assert confined_url(refiner_destination, "/contacts", "page_length=5") == (
        f"{base}/contacts?page_length=5"
    )
    assert confined_url(refiner_destination, "contact?id=u1", "") == f"{base}/contact?id=u1"
    for bad in ("https://evil.example/x", "//evil.example/x", "/../admin", "/a/./b", "/a\\..\\b"):
        with pytest.raises(RefinerApiError):
            confined_url(refiner_destination, bad, "")
