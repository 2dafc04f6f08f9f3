"""The Segment HTTP API under generated input: never a 5xx, every refusal says why, and what a
200 reports accepted is exactly what is stored."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from django.test import Client
from hypothesis import example, given
from hypothesis import strategies as st

from dashboard.project.wsgi import application
from destinations.models import Event, Source
from tests.helpers.ingest import basic
from tests.helpers.wsgi import call_wsgi
from tests.hostile import strategies as gen
from tests.hostile.conftest import record

pytestmark = pytest.mark.django_db

PATHS = gen.INGEST_PATHS


def post(client: Client, path: str, body: bytes, **meta: Any) -> Any:
    """POST with ``meta`` as WSGI environ entries (``HTTP_AUTHORIZATION``), so header values
    reach the app exactly as a server would pass them, bytes past ASCII included."""
    content_type = meta.pop("content_type", "application/json")
    response = client.generic("POST", f"/v1/{path}", data=body, content_type=content_type, **meta)
    record(response, "/v1")
    return response


def encode(document: Any) -> bytes:
    # The standard library writes what orjson refuses (integers past 64 bits, deep nesting).
    return json.dumps(document).encode()


def stored_ids(source: Source, message_ids: list[str]) -> set[str]:
    return set(
        Event.objects.filter(source=source, message_id__in=message_ids).values_list(
            "message_id", flat=True
        )
    )


@given(document=gen.batches())
@example(
    document={
        "batch": [
            {
                "type": "track",
                "userId": "u",
                "event": "E",
                "messageId": "overflow-late",
                "originalTimestamp": "9999-12-31T23:59:59-12:00",
            },
            {"type": "track", "userId": "u", "event": "E", "messageId": "fine-late"},
        ]
    }
)
@example(
    document={
        "sentAt": "0001-01-01T00:00:00+14:00",
        "batch": [{"type": "track", "userId": "u", "event": "E", "messageId": "overflow-early"}],
    }
)
@example(
    document={
        "context": gen.nested(40),
        "batch": [
            {"type": "track", "userId": "u", "event": "E", "messageId": "deep-by-envelope"},
        ],
    }
)
@example(
    document={
        "context": gen.nested(300),
        "batch": [{"type": "identify", "userId": "u", "messageId": "too-deep-envelope"}],
    }
)
def test_a_batch_stores_exactly_what_it_reports_accepted(
    client: Client, source: Source, document: dict[str, Any]
) -> None:
    response = post(client, "batch", encode(document), HTTP_AUTHORIZATION=basic(source.write_key))
    sent = [item["messageId"] for item in document["batch"]]
    data = response.json()
    if response.status_code != 200:
        assert response.status_code == 400, data
        assert data["error"] == "no valid messages in batch"
        assert [f["index"] for f in data["failed"]] == list(range(len(sent)))
        assert stored_ids(source, sent) == set()
        return
    refused = {f["index"] for f in data["failed"]}
    assert all(f["reason"] for f in data["failed"])
    kept = [mid for index, mid in enumerate(sent) if index not in refused]
    assert data["accepted"] == len(kept)
    assert stored_ids(source, sent) == set(kept)


@given(message=gen.messages(typed=False), path=st.sampled_from(PATHS[2:]))
@example(
    message={
        "messageId": "single-late",
        "userId": "u",
        "event": "E",
        "originalTimestamp": "9999-12-31T23:59:59-12:00",
    },
    path="track",
)
@example(
    message={"messageId": "single-deep", "userId": "u", "traits": gen.nested(200)},
    path="identify",
)
@example(message={"messageId": "single-long", "userId": "u", "event": "E" * 256}, path="track")
def test_a_single_call_is_stored_when_and_only_when_it_answers_200(
    client: Client, source: Source, message: dict[str, Any], path: str
) -> None:
    response = post(client, path, encode(message), HTTP_AUTHORIZATION=basic(source.write_key))
    stored = stored_ids(source, [message["messageId"]])
    if response.status_code == 200:
        assert stored == {message["messageId"]}
    else:
        assert response.status_code in (400, 413), response.content
        assert response.json()["error"]
        assert stored == set()


@given(**gen.hostile_requests)
@example(
    authorization="Basic \xff",
    content_type="application/json",
    encoding="",
    body=b"{}",
    path="track",
)
@example(  # a write key of NUL bytes: PostgreSQL refuses it in a query
    authorization="Basic AAAA",
    content_type="application/json",
    encoding="",
    body=b"\x00",
    path="batch",
)
@pytest.mark.parametrize("route", ["django", "server"])
def test_any_request_gets_a_precise_answer(
    client: Client,
    source: Source,
    route: str,
    authorization: str,
    content_type: str,
    encoding: str,
    body: bytes,
    path: str,
) -> None:
    if route == "django":
        headers = {"HTTP_AUTHORIZATION": authorization, "content_type": content_type}
        if encoding:
            headers["HTTP_CONTENT_ENCODING"] = encoding
        response = post(client, path, body, **headers)
        status, answer = response.status_code, response.content
    else:
        # What the web server runs: the ingest paths answered before Django's middleware
        # (destinations/ingest/direct.py).
        sent = {"Authorization": authorization, "Content-Type": content_type}
        if encoding:
            sent["Content-Encoding"] = encoding
        wsgi_answer = call_wsgi(application, "POST", f"/v1/{path}", body, sent)
        status, answer = wsgi_answer.status, wsgi_answer.body
    assert status in (200, 400, 401, 403, 413, 415, 429), answer
    if status != 200:
        assert orjson.loads(answer)["error"]


@given(body=gen.raw_bodies, path=st.sampled_from(PATHS))
def test_hostile_bodies_with_a_valid_key(
    client: Client, source: Source, body: bytes, path: str
) -> None:
    response = post(client, path, body, HTTP_AUTHORIZATION=basic(source.write_key))
    # The test client sends no Content-Type with an empty body: that alone is a 415.
    allowed = (200, 400, 413, 415) if not body else (200, 400, 413)
    assert response.status_code in allowed, response.content


@pytest.mark.parametrize(
    ("field", "value", "envelope"),
    [
        ("originalTimestamp", "9999-12-31T23:59:59-12:00", False),
        ("timestamp", "0001-01-01T00:00:00+14:00", False),
        ("sentAt", "0001-01-01T00:00:00+14:00", True),
    ],
)
def test_a_timestamp_outside_what_can_be_stored_is_refused_by_name(
    client: Client, source: Source, field: str, value: str, envelope: bool
) -> None:
    item = {"type": "track", "userId": "u", "event": "E", "messageId": f"range-{field}"}
    document: dict[str, Any] = {"batch": [item, {**item, "messageId": f"kept-{field}"}]}
    if envelope:
        document["sentAt"] = value
        document["batch"][1]["sentAt"] = "2026-01-01T00:00:00Z"
    else:
        item[field] = value
    response = post(client, "batch", encode(document), HTTP_AUTHORIZATION=basic(source.write_key))
    assert response.status_code == 200, response.content
    [failed] = response.json()["failed"]
    assert failed["index"] == 0
    assert failed["reason"].startswith(f"{field} {value[:40]!r} is outside the range")
    assert "0001-01-02 to 9999-12-30 in UTC" in failed["reason"]
    assert stored_ids(source, [f"range-{field}", f"kept-{field}"]) == {f"kept-{field}"}


def test_the_depth_limit_holds_for_the_item_with_the_batch_context_merged_in(
    client: Client, source: Source
) -> None:
    document = {
        "context": gen.nested(40),
        "batch": [{"type": "track", "userId": "u", "event": "E", "messageId": "shallow-alone"}],
    }
    response = post(client, "batch", encode(document), HTTP_AUTHORIZATION=basic(source.write_key))
    assert response.status_code == 400
    [failed] = response.json()["failed"]
    assert failed["reason"] == (
        "JSON is nested more than 32 levels deep once the batch's context is merged in"
    )
    assert stored_ids(source, ["shallow-alone"]) == set()


def test_a_header_byte_outside_ascii_is_a_401(client: Client, source: Source) -> None:
    response = post(client, "track", b"{}", HTTP_AUTHORIZATION="Basic \xff")
    assert response.status_code == 401
    assert response.json()["error"] == "Authorization header is not valid Basic credentials"


@pytest.mark.parametrize("write_key", ["key\x00", "k" * 65])
def test_a_write_key_no_source_could_have_is_unknown(
    client: Client, source: Source, write_key: str
) -> None:
    for meta in ({"HTTP_AUTHORIZATION": basic(write_key)}, {}):
        body = {"userId": "u", "event": "E"} if meta else {"writeKey": write_key, "userId": "u"}
        response = post(client, "track", encode(body), **meta)
        assert response.status_code == 401
        assert response.json()["error"] == "Unknown write key"
