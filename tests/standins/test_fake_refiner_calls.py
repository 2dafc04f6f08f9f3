"""The fake Refiner API behaves like Refiner where our tests lean on it: auth, validation of
identify-user and track-event, the requests it records, and faults. Real HTTP throughout."""

from __future__ import annotations

import threading
from typing import Any, Literal

import pytest
import requests

from destinations.standins.refiner import FakeRefiner
from tests.helpers.ingest import basic
from tests.helpers.refiner_calls import BEARER, KEY, call


def identify(refiner: FakeRefiner, **payload: Any) -> requests.Response:
    return call(refiner, "POST", "/identify-user", json=payload)


# --- auth -----------------------------------------------------------------------------------


def test_base_url_is_loopback_under_v1(fake_refiner: FakeRefiner) -> None:
    assert fake_refiner.base_url == f"http://127.0.0.1:{fake_refiner.port}/v1"
    assert fake_refiner.port > 0


@pytest.mark.parametrize(
    "how",
    [
        {"headers": BEARER},
        {"headers": {"Authorization": basic(KEY)}},
        {"headers": {}, "params": {"api_key": KEY}},
        {"headers": {}, "json": {"api_key": KEY}},
        {"headers": {}, "data": {"api_key": KEY}},
    ],
    ids=["bearer", "basic", "query", "json-body", "form-body"],
)
def test_each_way_of_sending_the_key(fake_refiner: FakeRefiner, how: dict[str, Any]) -> None:
    response = call(fake_refiner, "GET", "/", **how)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "project_uuid": fake_refiner.project_uuid,
        "project_name": fake_refiner.project_name,
        "message": "API key is valid",
    }


def test_missing_key_is_401_and_unknown_key_is_404(fake_refiner: FakeRefiner) -> None:
    missing = call(fake_refiner, "POST", "/identify-user", headers={}, json={"id": "u1"})
    assert (missing.status_code, missing.json()) == (401, {"error": "No API key found in headers"})
    unknown = call(fake_refiner, "GET", "/contacts", headers={"Authorization": "Bearer nope"})
    assert unknown.status_code == 404
    assert unknown.json() == {"message": "API key not valid or does not exist"}
    malformed = call(fake_refiner, "GET", "/", headers={"Authorization": "Bearer "})
    assert malformed.status_code == 401
    assert fake_refiner.contacts == []


def test_a_key_revoked_at_runtime_stops_working(fake_refiner: FakeRefiner) -> None:
    fake_refiner.api_keys.discard(KEY)
    assert call(fake_refiner, "GET", "/").status_code == 404


# --- identify-user and track-event ----------------------------------------------------------


def test_identify_creates_then_updates_contact_and_account(fake_refiner: FakeRefiner) -> None:
    first = identify(
        fake_refiner,
        id="user-1",
        email="jane@example.com",
        name="Jane Doe",
        plan="free",
        account={"id": "acct-1", "name": "Initech", "domain": "initech.com"},
    )
    assert first.status_code == 200, first.text
    contact_uuid = first.json()["contact_uuid"]
    assert first.json() == {"message": "ok", "contact_uuid": contact_uuid}

    again = identify(fake_refiner, id="user-1", plan="pro", seats=5, account={"id": "acct-1"})
    assert again.json()["contact_uuid"] == contact_uuid

    item = call(fake_refiner, "GET", "/contact", params={"id": "user-1"}).json()
    assert item["uuid"] == contact_uuid
    assert (item["remote_id"], item["email"], item["display_name"]) == (
        "user-1",
        "jane@example.com",
        "Jane Doe",
    )
    assert item["attributes"] == {"name": "Jane Doe", "plan": "pro", "seats": 5}
    assert item["account"]["remote_id"] == "acct-1"
    assert item["account"]["display_name"] == "Initech"
    assert item["account"]["domain"] == "initech.com"
    assert len(fake_refiner.contacts) == 1 and len(fake_refiner.accounts) == 1


def test_an_email_only_contact_is_claimed_by_a_later_id(fake_refiner: FakeRefiner) -> None:
    by_email = identify(fake_refiner, email="jane@example.com").json()["contact_uuid"]
    by_id = identify(fake_refiner, id="user-1", email="JANE@example.com").json()["contact_uuid"]
    assert by_email == by_id
    assert fake_refiner.contact(id="user-1") is fake_refiner.contact(uuid=by_email)


def test_identify_accepts_form_fields_with_a_bracketed_account(fake_refiner: FakeRefiner) -> None:
    data = {"id": "user-1", "plan": "pro", "account[id]": "acct-1", "account[name]": "Initech"}
    assert call(fake_refiner, "POST", "/identify-user", data=data).status_code == 200
    account = fake_refiner.account("acct-1")
    assert account is not None and account.display_name == "Initech"


@pytest.mark.parametrize(
    ("payload", "status", "fragment"),
    [
        ({"plan": "pro"}, 422, "id"),
        ({"id": "", "email": None}, 422, "id"),
        ({"email": "not-an-email"}, 422, "email"),
        ({"id": {"nested": 1}}, 422, "id"),
        ({"id": "u1", "account": "acct-1"}, 422, "account"),
        ({"id": "u1", "account": {"name": "Initech"}}, 422, "account.id"),
        ({"id": "u1", "address": {"city": "Paris"}}, 422, "address"),
    ],
)
def test_identify_refuses_wrong_payloads(
    fake_refiner: FakeRefiner, payload: dict[str, Any], status: int, fragment: str
) -> None:
    response = identify(fake_refiner, **payload)
    assert response.status_code == status, response.text
    assert fragment in response.json()["message"]
    assert fake_refiner.contacts == []


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b'{"id": "u1", ', "application/json"),
        (b'["u1"]', "application/json"),
        (b"id", "text/plain"),
    ],
)
def test_bodies_that_are_not_json_objects_are_400(
    fake_refiner: FakeRefiner, raw: bytes, content_type: str
) -> None:
    headers = {**BEARER, "Content-Type": content_type}
    response = call(fake_refiner, "POST", "/identify-user", headers=headers, data=raw)
    assert response.status_code == 400
    assert response.json()["message"]
    [recorded] = fake_refiner.received
    assert (recorded.body, recorded.raw_body, recorded.status) == (None, raw, 400)


def test_track_event_needs_an_identifier_and_an_event(fake_refiner: FakeRefiner) -> None:
    ok = call(fake_refiner, "POST", "/track-event", json={"id": "u1", "event": "Signed Up"})
    assert (ok.status_code, ok.json()) == (200, {"message": "ok"})
    no_event = call(fake_refiner, "POST", "/track-event", json={"id": "u1", "properties": {}})
    assert no_event.status_code == 422 and "event" in no_event.json()["message"]
    no_user = call(fake_refiner, "POST", "/track-event", json={"event": "Signed Up"})
    assert no_user.status_code == 422


def test_unknown_route_and_wrong_method(fake_refiner: FakeRefiner) -> None:
    assert call(fake_refiner, "GET", "/nope").status_code == 404
    assert call(fake_refiner, "GET", "/identify-user").status_code == 405
    outside = requests.get(f"http://127.0.0.1:{fake_refiner.port}/identify-user", timeout=2)
    assert outside.status_code == 404


def test_per_user_rate_limit_answers_429_with_retry_after() -> None:
    with FakeRefiner(api_keys={KEY}, rate_limit_per_user=2) as refiner:
        assert [identify(refiner, id="u1").status_code for _ in range(2)] == [200, 200]
        limited = identify(refiner, id="u1")
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert identify(refiner, id="u2").status_code == 200


# --- recording ------------------------------------------------------------------------------


def test_requests_are_recorded_with_what_was_sent(fake_refiner: FakeRefiner) -> None:
    identify(fake_refiner, id="u1", plan="pro")
    call(fake_refiner, "GET", "/contacts", params={"search": "u1"})
    [posted] = fake_refiner.requests_to("identify-user")
    assert (posted.method, posted.path, posted.status) == ("POST", "/identify-user", 200)
    assert posted.body == {"id": "u1", "plan": "pro"}
    assert posted.header("authorization") == f"Bearer {KEY}"
    assert fake_refiner.requests_to("/v1/contacts", method="get")[0].query == {"search": "u1"}
    fake_refiner.clear()
    assert fake_refiner.received == []


def test_wait_for_sees_requests_made_from_another_thread(fake_refiner: FakeRefiner) -> None:
    threading.Timer(0.05, identify, args=(fake_refiner,), kwargs={"id": "late"}).start()
    [request] = fake_refiner.wait_for(lambda r: r.body == {"id": "late"} and r.status == 200)
    assert request.path == "/identify-user"


def test_wait_for_fails_saying_what_arrived(fake_refiner: FakeRefiner) -> None:
    identify(fake_refiner, id="u1")
    with pytest.raises(AssertionError, match=r"POST /identify-user -> 200"):
        fake_refiner.wait_for(2, timeout=0.05)


# --- faults ---------------------------------------------------------------------------------


def test_server_error_for_the_next_requests_then_normal(fake_refiner: FakeRefiner) -> None:
    fault = fake_refiner.server_error(times=2, path="/identify-user")
    assert call(fake_refiner, "GET", "/").status_code == 200  # other paths are unaffected
    statuses = [identify(fake_refiner, id="u1").status_code for _ in range(3)]
    assert statuses == [500, 500, 200]
    assert fault.hits == 2
    assert [r.fault for r in fake_refiner.requests_to("/identify-user")] == [
        "status 500",
        "status 500",
        None,
    ]


def test_faults_queue_in_order_and_clear(fake_refiner: FakeRefiner) -> None:
    fake_refiner.server_error(times=1)
    fake_refiner.rate_limit(retry_after=7, times=1)
    fake_refiner.server_error(status=503)  # until cleared
    first, second, third = (call(fake_refiner, "GET", "/") for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (500, 429, 503)
    assert second.headers["Retry-After"] == "7"
    fake_refiner.clear_faults()
    assert call(fake_refiner, "GET", "/").status_code == 200


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, {"error": "No API key found in headers"}),
        (404, {"message": "API key not valid or does not exist"}),
    ],
)
def test_reject_key_fault(
    fake_refiner: FakeRefiner, status: Literal[401, 404], body: dict[str, str]
) -> None:
    fake_refiner.reject_key(status, times=1)
    response = identify(fake_refiner, id="u1")
    assert (response.status_code, response.json()) == (status, body)
    assert fake_refiner.contacts == []


def test_hang_outlasts_a_short_client_timeout(fake_refiner: FakeRefiner) -> None:
    fake_refiner.hang(seconds=5, times=1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        call(fake_refiner, "POST", "/identify-user", timeout=0.2, json={"id": "u1"})
    assert fake_refiner.requests_to("/identify-user")[0].fault == "hang"
    assert call(fake_refiner, "GET", "/").status_code == 200  # the next one is answered


def test_dropped_connection(fake_refiner: FakeRefiner) -> None:
    fake_refiner.drop_connection(times=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        call(fake_refiner, "GET", "/")
    fake_refiner.drop_connection(mid_body=True, times=1)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        call(fake_refiner, "GET", "/")
    assert call(fake_refiner, "GET", "/").status_code == 200


def test_refused_then_resumed_on_the_same_port(fake_refiner: FakeRefiner) -> None:
    url = fake_refiner.url("/")
    session = requests.Session()  # a pooled connection must not sneak past the refusal
    assert session.get(url, headers=BEARER, timeout=2).status_code == 200
    fake_refiner.refuse_connections()
    with pytest.raises(requests.exceptions.ConnectionError, match=r"(?i)refused"):
        session.get(url, headers=BEARER, timeout=2)
    fake_refiner.accept_connections()
    assert fake_refiner.url("/") == url
    assert session.get(url, headers=BEARER, timeout=2).status_code == 200
    assert len(fake_refiner.received) == 2
