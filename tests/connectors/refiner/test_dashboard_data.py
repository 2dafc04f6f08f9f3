"""Refiner's contacts, segments, forms and responses in the dashboard, read over real HTTP
from the fake Refiner: filters, cursor paging, errors shown not raised, several destinations."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from destinations.delivery.services import destination_create
from destinations.models import Destination, Profile
from destinations.standins.refiner import FakeRefiner
from tests.helpers.pages import text_of

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
