"""The fake Refiner's seeded data: contacts with pagination and filters, segments, forms,
responses and accounts, and the webhook poster. Real HTTP throughout."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from destinations.standins.refiner import FakeRefiner, sample_webhook_payload, send_webhook
from tests.helpers.refiner_calls import call

# --- seeded data and pagination -------------------------------------------------------------


def test_contacts_page_by_number_and_by_cursor(fake_refiner: FakeRefiner) -> None:
    seeded = fake_refiner.seed_contacts(5)
    newest_first = [c.remote_id for c in reversed(seeded)]

    page2 = call(fake_refiner, "GET", "/contacts", params={"page": 2, "page_length": 2}).json()
    assert [i["remote_id"] for i in page2["items"]] == newest_first[2:4]
    assert page2["pagination"] == {
        "items_count": 5,
        "current_page": 2,
        "last_page": 3,
        "page_length": 2,
        "next_page_cursor": page2["pagination"]["next_page_cursor"],
    }

    walked: list[str] = []
    params: dict[str, Any] = {"page_length": 2}
    while True:
        page = call(fake_refiner, "GET", "/contacts", params=params).json()
        walked += [i["remote_id"] for i in page["items"]]
        if not (cursor := page["pagination"]["next_page_cursor"]):
            break
        params["page_cursor"] = cursor
        fake_refiner.add_contact(remote_id="newcomer")  # arrives mid-walk, sorts first
    assert walked == newest_first


@pytest.mark.parametrize(
    "params", [{"page_length": 1001}, {"page": 0}, {"page_cursor": "garbage"}, {"order_by": "x"}]
)
def test_bad_paging_parameters_are_422(fake_refiner: FakeRefiner, params: dict[str, Any]) -> None:
    assert call(fake_refiner, "GET", "/contacts", params=params).status_code == 422


def test_contacts_filters_and_contact_shape(fake_refiner: FakeRefiner) -> None:
    power = fake_refiner.add_segment("Power users")
    nps = fake_refiner.add_form("NPS")
    jane = fake_refiner.add_contact(
        remote_id="user-123",
        email="jane@example.com",
        attributes={"name": "Jane Doe"},
        account={"id": "acct-1", "name": "Initech", "domain": "initech.com"},
        segments=[power],
    )
    bob = fake_refiner.add_contact(remote_id="user-9", email="bob@example.com")
    fake_refiner.add_response(form=nps, contact=bob, data={"score": 3})

    def remote_ids(**params: Any) -> list[str]:
        items = call(fake_refiner, "GET", "/contacts", params=params).json()["items"]
        return [i["remote_id"] for i in items]

    assert remote_ids(search="JANE") == ["user-123"]
    assert remote_ids(segment_uuid=power.uuid) == ["user-123"]
    assert remote_ids(form_uuid=nps.uuid) == ["user-9"]
    assert remote_ids(order_by="last_form_submission_at") == ["user-9", "user-123"]

    item = call(fake_refiner, "GET", "/contact", params={"uuid": jane.uuid}).json()
    assert set(item) == {
        "uuid",
        "remote_id",
        "email",
        "display_name",
        "first_seen_at",
        "last_seen_at",
        "attributes",
        "segments",
        "account",
    }
    assert item["segments"] == [{"uuid": power.uuid, "name": "Power users"}]
    assert set(item["account"]) == {
        "uuid",
        "remote_id",
        "domain",
        "display_name",
        "first_seen_at",
        "last_seen_at",
        "attributes",
    }


def test_contact_lookup_and_delete(fake_refiner: FakeRefiner) -> None:
    form = fake_refiner.add_form("NPS")
    jane = fake_refiner.add_contact(remote_id="user-1", email="jane@example.com")
    fake_refiner.add_response(form=form, contact=jane, data={"score": 9})
    assert call(fake_refiner, "GET", "/contact", params={"email": "jane@example.com"}).ok
    assert call(fake_refiner, "GET", "/contact").status_code == 422
    assert call(fake_refiner, "DELETE", "/contact", params={"id": "user-1"}).json() == {
        "message": "ok"
    }
    assert call(fake_refiner, "GET", "/contact", params={"id": "user-1"}).status_code == 404
    assert call(fake_refiner, "GET", "/responses").json()["items"] == []


def test_segments_and_sync_segment(fake_refiner: FakeRefiner) -> None:
    manual = fake_refiner.add_segment("Beta", is_manual=True)
    auto = fake_refiner.add_segment("Churn risk", is_manual=False)
    items = call(fake_refiner, "GET", "/segments").json()["items"]
    assert items == [
        {"uuid": auto.uuid, "name": "Churn risk", "is_manual": False},
        {"uuid": manual.uuid, "name": "Beta", "is_manual": True},
    ]
    body = {"id": "u1", "segment_uuid": manual.uuid}
    added = call(fake_refiner, "POST", "/sync-segment", json=body).json()
    assert added["segment_uuid"] == manual.uuid
    contact = fake_refiner.contact(id="u1")
    assert contact is not None and contact.segment_uuids == [manual.uuid]
    assert call(fake_refiner, "DELETE", "/sync-segment", json=body).ok
    assert contact.segment_uuids == []
    automatic = {"id": "u1", "segment_uuid": auto.uuid}
    assert call(fake_refiner, "POST", "/sync-segment", json=automatic).status_code == 422
    unknown = {"id": "u1", "segment_uuid": "nope"}
    assert call(fake_refiner, "POST", "/sync-segment", json=unknown).status_code == 404


def test_forms_responses_and_account(fake_refiner: FakeRefiner) -> None:
    nps = fake_refiner.add_form("NPS")
    fake_refiner.add_form("Old", status="archived")
    jane = fake_refiner.add_contact(remote_id="user-1")
    older = fake_refiner.add_response(
        form=nps, contact=jane, data={"score": 7}, completed_at="2024-05-01T10:00:00"
    )
    newer = fake_refiner.add_response(
        form=nps, contact=jane, data={"score": 9}, completed_at="2024-05-02T10:00:00"
    )
    partial = fake_refiner.add_response(form=nps, contact=jane, data={}, partial=True)

    published = call(fake_refiner, "GET", "/forms", params={"list": "published"}).json()
    assert [f["name"] for f in published["items"]] == ["NPS"]

    def response_uuids(**params: Any) -> list[str]:
        items = call(fake_refiner, "GET", "/responses", params=params).json()["items"]
        return [i["uuid"] for i in items]

    assert response_uuids(form_uuid=nps.uuid) == [newer.uuid, older.uuid]
    assert response_uuids(include="partials") == [partial.uuid]
    assert response_uuids(date_range_start="2024-05-02", date_range_end="2024-05-02") == [
        newer.uuid
    ]
    usage = call(fake_refiner, "GET", "/account").json()["usage"]
    assert (usage["contacts"], usage["responses"]) == (1, 3)


# --- webhooks -------------------------------------------------------------------------------


# The inbox's URL, and what it received: (the Authorization header, the JSON body) per call.
Inbox = tuple[str, list[tuple[str, dict[str, Any]]]]


class _Inbox(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append((self.headers.get("Authorization", ""), body))
        answer = b'{"ok": true}'
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    """A tiny receiver standing in for our inbound webhook endpoint."""
    received: list[tuple[str, dict[str, Any]]] = []
    handler = type("Inbox", (_Inbox,), {"received": received})
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
        thread.start()
        yield f"http://127.0.0.1:{server.server_port}/hooks/refiner", received
        server.shutdown()
        thread.join()


def test_send_webhook_posts_json_with_the_bearer_token(inbox: Inbox) -> None:
    url, received = inbox
    result = send_webhook(url, sample_webhook_payload(), token="whsec-1")
    assert (result.status, result.json()) == (202, {"ok": True})
    [(authorization, body)] = received
    assert authorization == "Bearer whsec-1"
    assert body["triggered_event"] == "Survey Completed"
    assert body["response"]["data"] == {"score": 9, "why": "fast"}


def test_webhook_payload_from_seeded_data(fake_refiner: FakeRefiner, inbox: Inbox) -> None:
    url, received = inbox
    segment = fake_refiner.add_segment("Power users")
    form = fake_refiner.add_form("NPS")
    jane = fake_refiner.add_contact(
        remote_id="user-123",
        email="jane@example.com",
        attributes={"name": "Jane Doe", "plan": "pro"},
        account={"id": "acct-1", "name": "Initech", "domain": "initech.com"},
        segments=[segment],
    )
    response = fake_refiner.add_response(form=form, contact=jane, data={"score": 9})
    payload = fake_refiner.webhook_payload(jane, response=response)
    assert set(payload) == set(sample_webhook_payload())
    assert send_webhook(url, payload, token="t").status == 202
    body = received[0][1]
    assert (body["uuid"], body["remote_id"], body["display_name"]) == (
        jane.uuid,
        "user-123",
        "Jane Doe",
    )
    assert body["account"] == {
        "uuid": jane.account_uuid,
        "remote_id": "acct-1",
        "display_name": "Initech",
        "domain": "initech.com",
    }
    assert body["form"] == {"uuid": form.uuid, "name": "NPS"}
