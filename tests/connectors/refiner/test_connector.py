"""The Refiner connector's translation (pure) and response classification."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from destinations.connectors.refiner.connector import NO_SUBJECT, RefinerConnector
from destinations.delivery.contract import (
    DeliveryContext,
    OutboundRequest,
    Skip,
    retry_after_seconds,
)
from destinations.delivery.engine import backoff_seconds, mask

CONTEXT = DeliveryContext(
    config={"api_key": "rk_live_abcdef123456", "base_url": "https://refiner.test/v1/"}
)
refiner = RefinerConnector()


def translate(payload: dict[str, Any]) -> OutboundRequest:
    result = refiner.translate(payload, CONTEXT)
    assert isinstance(result, list), result
    [request] = result
    return request


def test_identify_sends_traits_flat_with_the_bearer_key() -> None:
    request = translate(
        {
            "type": "identify",
            "userId": "u1",
            "traits": {"email": "a@b.co", "company": {"name": "X"}, "id": "spoof", "n": 3},
        }
    )
    assert (request.method, request.url) == ("POST", "https://refiner.test/v1/identify-user")
    assert request.json == {"id": "u1", "email": "a@b.co", "company_name": "X", "n": 3}
    assert request.headers == {"Authorization": "Bearer rk_live_abcdef123456"}
    assert request.subject == "u1"


def test_identify_reads_rudderstack_context_traits() -> None:
    request = translate(
        {"type": "identify", "userId": "u1", "context": {"traits": {"email": "c@d.co"}}}
    )
    assert request.json == {"id": "u1", "email": "c@d.co"}


def test_engage_audience_flags_pass_through_as_traits() -> None:
    payload = {
        "type": "identify",
        "userId": "u1",
        "traits": {"power_users": True},
        "context": {"personas": {"computation_key": "power_users"}},
    }
    assert translate(payload).json == {"id": "u1", "power_users": True}


def test_group_sends_the_account_with_its_traits() -> None:
    request = translate(
        {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"name": "Initech"}}
    )
    assert request.json == {"id": "u1", "account": {"id": "g1", "name": "Initech"}}


def test_track_sends_the_event_name_but_not_properties() -> None:
    request = translate(
        {"type": "track", "userId": "u1", "event": "Exported", "properties": {"rows": 1}}
    )
    assert request.url.endswith("/track-event")
    assert request.json == {"id": "u1", "event": "Exported"}


def test_anonymous_track_with_an_email_in_context_is_sent_by_email() -> None:
    request = translate(
        {
            "type": "track",
            "anonymousId": "a1",
            "event": "E",
            "context": {"traits": {"email": "x@y.co"}},
        }
    )
    assert request.json == {"email": "x@y.co", "event": "E"}


@pytest.mark.parametrize("kind", ["page", "screen"])
def test_page_and_screen_are_an_identifier_only_ping(kind: str) -> None:
    request = translate({"type": kind, "userId": "u1", "name": "Docs", "properties": {"url": "/"}})
    assert request.json == {"id": "u1"}


def test_no_user_id_and_no_email_is_skipped_with_the_reason() -> None:
    assert refiner.translate({"type": "track", "anonymousId": "a", "event": "E"}, CONTEXT) == Skip(
        NO_SUBJECT
    )


def response(status: int, body: bytes = b"{}", headers: dict[str, str] | None = None) -> Any:
    answer = requests.Response()
    answer.status_code = status
    answer._content = body
    answer.headers.update(headers or {})
    answer.url = "https://refiner.test/v1/identify-user"
    return answer


REQUEST = OutboundRequest("POST", "https://refiner.test/v1/identify-user")


def classify(status: int, body: bytes = b"{}", headers: dict[str, str] | None = None) -> Any:
    return refiner.classify(response(status, body, headers), REQUEST)


def test_classification_follows_segment_rules() -> None:
    assert classify(200).delivered
    unknown_key = classify(404, b'{"message": "API key not valid or does not exist"}')
    assert unknown_key.permanent
    assert unknown_key.reason.startswith("Refiner refused the API key (HTTP 404)")
    assert classify(422, b'{"message": "id or email"}').permanent
    limited = classify(429, headers={"Retry-After": "7"})
    assert not limited.permanent and limited.retry_after == 7
    for status in (408, 423, 500, 502, 503):
        assert not classify(status).permanent
    assert classify(301).permanent


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert retry_after_seconds("12") == 12
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0
    assert retry_after_seconds("soon") is None


def test_backoff_grows_with_jitter_and_honours_retry_after(settings: Any) -> None:
    settings.DELIVERY_BACKOFF_BASE_SECONDS = 5
    settings.DELIVERY_BACKOFF_MAX_SECONDS = 3600
    assert 4 <= backoff_seconds(1, None) <= 6
    assert 32 <= backoff_seconds(4, None) <= 48
    assert 2880 <= backoff_seconds(20, None) <= 4320
    assert backoff_seconds(1, 120) == 120


def test_masked_credentials_keep_only_the_last_four_characters() -> None:
    assert mask("Bearer rk_live_abcdef123456") == "Bearer ••••3456"
    assert mask("Bearer short") == "Bearer ••••"
