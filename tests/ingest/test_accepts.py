"""What the Segment HTTP Tracking API accepts, and what gets stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from destinations.models import Account, Event, Membership, Profile, Source
from tests.helpers.ingest import IngestPost

pytestmark = pytest.mark.django_db


def test_each_call_type_is_stored_with_its_columns(post_ingest: IngestPost, source: Source) -> None:
    calls: dict[str, dict[str, object]] = {
        "identify": {"userId": "u1", "traits": {"email": "a@x.io"}},
        "track": {"userId": "u1", "event": "Signed Up", "properties": {"plan": "pro"}},
        "page": {"anonymousId": "anon-1", "name": "Pricing"},
        "screen": {"userId": "u1", "name": "Home"},
        "group": {"userId": "u1", "groupId": "acct-1", "traits": {"name": "Initech"}},
        "alias": {"userId": "u1", "previousId": "old-1"},
    }
    for call, payload in calls.items():
        response = post_ingest(call, {**payload, "messageId": f"m-{call}"})
        assert response.status_code == 200, response.content
        assert response.json()["success"] is True

    stored = {e.type: e for e in Event.objects.filter(source=source)}
    assert set(stored) == set(calls)
    assert stored["track"].event == "Signed Up"
    assert stored["track"].payload["properties"] == {"plan": "pro"}
    assert stored["page"].name == "Pricing"
    assert stored["group"].group_id == "acct-1"
    assert stored["alias"].previous_id == "old-1"
    assert stored["identify"].payload["receivedAt"]


def test_write_key_in_body_and_text_plain_from_browsers(
    post_ingest: IngestPost, source: Source
) -> None:
    response = post_ingest(
        "track",
        {"writeKey": source.write_key, "anonymousId": "a", "event": "Clicked"},
        auth=False,
        content_type="text/plain",
    )
    assert response.status_code == 200, response.content
    event = Event.objects.get()
    assert "writeKey" not in event.payload


def test_gzip_body(post_ingest: IngestPost) -> None:
    response = post_ingest("track", {"userId": "u", "event": "Zipped"}, gzip_body=True)
    assert response.status_code == 200, response.content
    assert Event.objects.get().event == "Zipped"


def test_retried_message_is_stored_once(post_ingest: IngestPost) -> None:
    payload = {"userId": "u", "event": "Once", "messageId": "retry-me"}
    first = post_ingest("track", payload)
    second = post_ingest("track", payload)
    assert first.json()["stored"] == 1
    assert second.status_code == 200
    assert second.json() == {"success": True, "stored": 0, "duplicates": 1}
    assert Event.objects.filter(message_id="retry-me").count() == 1


def test_batch_envelope_context_and_integrations_merge_into_items(post_ingest: IngestPost) -> None:
    response = post_ingest(
        "batch",
        {
            "batch": [
                {"type": "track", "userId": "u", "event": "A", "messageId": "1"},
                {
                    "type": "track",
                    "userId": "u",
                    "event": "B",
                    "messageId": "2",
                    "context": {"ip": "10.0.0.9"},
                    "integrations": {"Kana": False},
                },
            ],
            "context": {"ip": "1.2.3.4", "library": {"name": "analytics-python"}},
            "integrations": {"All": True, "Kana": True},
        },
    )
    assert response.status_code == 200
    first = Event.objects.get(message_id="1")
    second = Event.objects.get(message_id="2")
    assert first.payload["context"] == {"ip": "1.2.3.4", "library": {"name": "analytics-python"}}
    assert first.payload["integrations"] == {"All": True, "Kana": True}
    assert second.payload["context"]["ip"] == "10.0.0.9"
    assert second.payload["context"]["library"] == {"name": "analytics-python"}
    assert second.payload["integrations"] == {"All": True, "Kana": False}


def test_clock_skew_is_corrected_from_sent_at(post_ingest: IngestPost) -> None:
    # The device clock runs 1 hour fast: it stamped the event 10 s before it sent it.
    device_now = datetime.now(UTC) + timedelta(hours=1)
    response = post_ingest(
        "track",
        {
            "userId": "u",
            "event": "Skewed",
            "timestamp": (device_now - timedelta(seconds=10)).isoformat(),
            "sentAt": device_now.isoformat(),
        },
    )
    assert response.status_code == 200
    event = Event.objects.get()
    assert abs((event.received_at - event.timestamp) - timedelta(seconds=10)) < timedelta(
        milliseconds=5
    )
    assert event.original_timestamp is not None
    assert event.original_timestamp > event.received_at + timedelta(minutes=59)


def test_numeric_user_id_is_kept_as_a_string(post_ingest: IngestPost) -> None:
    assert post_ingest("track", {"userId": 42, "event": "N"}).status_code == 200
    assert Event.objects.get().user_id == "42"


def test_missing_message_id_gets_one(post_ingest: IngestPost) -> None:
    assert post_ingest("track", {"userId": "u", "event": "E"}).status_code == 200
    assert Event.objects.get().message_id.startswith("switchboard-")


def test_cors_preflight_and_headers(client: Client, post_ingest: IngestPost) -> None:
    preflight = client.options("/v1/batch", headers={"Origin": "https://app.example.com"})
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in preflight["Access-Control-Allow-Headers"]
    response = post_ingest("track", {"userId": "u", "event": "E"})
    assert response["Access-Control-Allow-Origin"] == "*"


def test_identity_links_anonymous_events_to_the_user(post_ingest: IngestPost) -> None:
    post_ingest("page", {"anonymousId": "anon-9", "name": "Landing", "messageId": "p1"})
    assert Event.objects.get(message_id="p1").profile_id is None
    post_ingest(
        "identify", {"userId": "u9", "anonymousId": "anon-9", "traits": {"email": "U9@X.io"}}
    )
    post_ingest("track", {"anonymousId": "anon-9", "event": "Later", "messageId": "t1"})
    profile = Profile.objects.get(user_id="u9")
    assert profile.email == "u9@x.io"
    assert Event.objects.get(message_id="p1").profile == profile
    assert Event.objects.get(message_id="t1").profile == profile
    assert list(profile.anonymous_ids.values_list("value", flat=True)) == ["anon-9"]


def test_identify_claims_the_single_profile_with_that_email(post_ingest: IngestPost) -> None:
    imported = Profile.objects.create(
        email="billing@acme.io", billing_id="cus_123", origin="import"
    )
    post_ingest("identify", {"userId": "u-acme", "traits": {"email": "Billing@Acme.io"}})
    imported.refresh_from_db()
    assert imported.user_id == "u-acme"
    assert Profile.objects.count() == 1


def test_identify_does_not_claim_when_the_email_is_shared(post_ingest: IngestPost) -> None:
    Profile.objects.create(email="shared@acme.io", origin="import")
    Profile.objects.create(email="shared@acme.io", origin="import")
    post_ingest("identify", {"userId": "u-new", "traits": {"email": "shared@acme.io"}})
    assert Profile.objects.filter(email="shared@acme.io").count() == 3
    assert Profile.objects.get(user_id="u-new").email == "shared@acme.io"


def test_identify_keeps_traits_name_and_billing_id(post_ingest: IngestPost) -> None:
    post_ingest(
        "identify", {"userId": "u1", "traits": {"firstName": "Ada", "lastName": "L", "plan": "pro"}}
    )
    post_ingest("identify", {"userId": "u1", "traits": {"billingId": "cus_9", "seats": 3}})
    profile = Profile.objects.get(user_id="u1")
    assert profile.name == "Ada L"
    assert profile.billing_id == "cus_9"
    assert profile.traits == {
        "firstName": "Ada",
        "lastName": "L",
        "plan": "pro",
        "billingId": "cus_9",
        "seats": 3,
    }


def test_over_long_traits_stay_in_the_traits_without_failing_the_batch(
    post_ingest: IngestPost,
) -> None:
    # Longer than the profile's columns: on PostgreSQL inserting them would fail the request.
    email, name, billing = "x" * 330 + "@example.com", "N" * 300, "cus_" + "9" * 300
    response = post_ingest(
        "batch",
        {
            "batch": [
                {"type": "identify", "userId": "u-long", "traits": {"email": email}},
                {"type": "identify", "userId": "u-long", "traits": {"name": name}},
                {"type": "identify", "userId": "u-ok", "traits": {"billingId": billing}},
                {"type": "group", "userId": "u-ok", "groupId": "g-long", "traits": {"name": name}},
            ]
        },
    )
    assert response.status_code == 200, response.content
    assert Event.objects.count() == 4
    long = Profile.objects.get(user_id="u-long")
    assert long.email is None  # no real address is that long
    assert long.name == name[:255]
    assert long.traits == {"email": email, "name": name}
    ok = Profile.objects.get(user_id="u-ok")
    assert ok.billing_id is None and ok.traits["billingId"] == billing
    assert Account.objects.get(group_id="g-long").name == name[:255]


def test_group_keeps_account_traits_and_membership(post_ingest: IngestPost) -> None:
    post_ingest(
        "group", {"userId": "u1", "groupId": "acct-1", "traits": {"name": "Initech", "plan": "pro"}}
    )
    post_ingest("group", {"userId": "u2", "groupId": "acct-1", "traits": {"employees": 40}})
    account = Account.objects.get(group_id="acct-1")
    assert account.name == "Initech"
    assert account.traits == {"name": "Initech", "plan": "pro", "employees": 40}
    members = set(
        Membership.objects.filter(account=account).values_list("profile__user_id", flat=True)
    )
    assert members == {"u1", "u2"}


def test_alias_links_previous_id_to_the_user(post_ingest: IngestPost) -> None:
    post_ingest("track", {"anonymousId": "old-anon", "event": "Before", "messageId": "b1"})
    post_ingest("alias", {"userId": "u5", "previousId": "old-anon"})
    assert Event.objects.get(message_id="b1").profile == Profile.objects.get(user_id="u5")


@pytest.mark.parametrize(("short", "call"), [("t", "track"), ("i", "identify"), ("p", "page")])
def test_analytics_js_short_paths(post_ingest: IngestPost, short: str, call: str) -> None:
    fields = {"event": "Clicked"} if call == "track" else {}
    response = post_ingest(short, {"userId": "u1", "messageId": f"m-{short}", **fields})
    assert response.status_code == 200, response.content
    assert Event.objects.get(message_id=f"m-{short}").type == call


def test_preflight_allows_the_headers_browser_sdks_add(client: Client, db: None) -> None:
    preflight = client.options(
        "/v1/t",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Headers": "x-retry-count, anonymousid, bad header",
        },
    )
    allowed = preflight["Access-Control-Allow-Headers"]
    assert "x-retry-count" in allowed and "anonymousid" in allowed
    assert "bad header" not in allowed
