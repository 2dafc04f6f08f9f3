"""What ingest refuses about one message, and about a batch's shape: a bad item is refused
alone and its valid neighbours kept."""

from __future__ import annotations

from typing import Any

import pytest

from destinations.models import Event, IngestFailure, Source
from tests.helpers.ingest import IngestPost
from tests.helpers.refusals import assert_refused, item, nested

pytestmark = pytest.mark.django_db


# --- one message -------------------------------------------------------------------------------

# (call, fields that make it invalid, what the error must say). None removes a field.
BAD_MESSAGES = [
    pytest.param(
        "identify",
        {"userId": None},
        "neither userId nor anonymousId is set",
        id="no-user-or-anonymous-id",
    ),
    pytest.param(
        "page", {"userId": "", "anonymousId": ""}, "neither userId nor anonymousId", id="empty-ids"
    ),
    pytest.param("track", {"event": None}, "track call without event name", id="track-no-event"),
    pytest.param("track", {"event": ""}, "track call without event name", id="track-empty-event"),
    pytest.param("group", {"groupId": None}, "group call without groupId", id="group-no-groupId"),
    pytest.param(
        "alias", {"previousId": None}, "alias call without previousId", id="alias-no-previousId"
    ),
    pytest.param(
        "alias",
        {"userId": None, "anonymousId": "anon-1"},
        "alias call without userId",
        id="alias-no-userId",
    ),
    pytest.param(
        "track",
        {"userId": {"id": 1}},
        "userId must be a string, got an object",
        id="userId-object",
    ),
    pytest.param(
        "identify", {"userId": True}, "userId must be a string, got a boolean", id="userId-bool"
    ),
    pytest.param(
        "track",
        {"properties": ["plan", "pro"]},
        "properties must be an object, got an array",
        id="properties-list",
    ),
    pytest.param(
        "identify", {"traits": "vip"}, "traits must be an object, got a string", id="traits-string"
    ),
    pytest.param("track", {"event": 42}, "event must be a string, got a number", id="event-number"),
    pytest.param(
        "track",
        {"timestamp": "last Tuesday"},
        "timestamp is not an ISO-8601 date-time: 'last Tuesday'",
        id="timestamp-not-iso",
    ),
    pytest.param(
        "track",
        {"timestamp": 1700000000},
        "timestamp must be an ISO-8601 date-time string, got a number",
        id="timestamp-number",
    ),
    pytest.param(
        "track",
        {"messageId": "m" * 101},
        "messageId is 101 characters; the limit is 100",
        id="messageId-too-long",
    ),
    pytest.param(
        "track",
        {"messageId": ["m1"]},
        "messageId must be a string, got an array",
        id="messageId-array",
    ),
    pytest.param(
        "identify",
        {"userId": "u" * 256},
        "userId is 256 characters; the limit is 255",
        id="long-id",
    ),
    pytest.param(
        "track",
        {"properties": {"blob": "x" * (33 * 1024)}},
        "; the limit is 32 KB",
        id="event-over-32KB",
    ),
]


@pytest.mark.parametrize(("call", "fields", "fragment"), BAD_MESSAGES)
def test_single_call_with_a_bad_message(
    post_ingest: IngestPost, source: Source, call: str, fields: dict[str, Any], fragment: str
) -> None:
    message = item(call, "bad-1", **fields)
    del message["type"]  # the endpoint gives the type
    response = post_ingest(call, message)
    error = assert_refused(response, 400, fragment)
    failure = IngestFailure.objects.get()
    assert (failure.source, failure.endpoint, failure.batch_index) == (source, call, None)
    assert failure.reason == error
    assert '"messageId"' in failure.excerpt
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    ("call", "fields", "fragment"),
    [
        pytest.param("track", {"type": None}, "missing type", id="missing-type"),
        pytest.param("track", {"type": ""}, "missing type", id="empty-type"),
        pytest.param("track", {"type": "purchase"}, "unknown type 'purchase'", id="unknown-type"),
        pytest.param("track", {"type": 7}, "unknown type 7", id="type-number"),
        *BAD_MESSAGES,
    ],
)
def test_batch_item_with_a_bad_message_is_refused_alone(
    post_ingest: IngestPost, source: Source, call: str, fields: dict[str, Any], fragment: str
) -> None:
    response = post_ingest(
        "batch", {"batch": [item("track", "good-0"), item(call, "bad-1", **fields)]}
    )
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["accepted"] == 1
    assert data["stored"] == 1
    assert [f["index"] for f in data["failed"]] == [1]
    assert fragment in data["failed"][0]["reason"], data["failed"]
    assert list(Event.objects.values_list("message_id", flat=True)) == ["good-0"]
    failure = IngestFailure.objects.get()
    assert (failure.endpoint, failure.batch_index) == ("batch", 1)
    assert failure.reason == data["failed"][0]["reason"]


def test_type_in_the_body_does_not_override_the_endpoint(post_ingest: IngestPost) -> None:
    # /v1/group decides the type; a body claiming "track" is still a group call without groupId.
    response = post_ingest("group", {"type": "track", "userId": "u1", "event": "E"})
    assert_refused(response, 400, "group call without groupId")


# --- batch shape -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        pytest.param({"batch": []}, "batch is empty", id="empty"),
        pytest.param({"batch": {"0": item("track", "m1")}}, "got an object", id="object"),
        pytest.param({"batch": "[]"}, "batch must be an array, got a string", id="string"),
        pytest.param({"batch": None}, "batch is missing", id="null"),
        pytest.param({"events": [item("track", "m1")]}, "batch is missing", id="missing"),
    ],
)
def test_batch_that_is_not_a_non_empty_array(
    post_ingest: IngestPost, source: Source, payload: dict[str, Any], fragment: str
) -> None:
    response = post_ingest("batch", payload)
    error = assert_refused(response, 400, fragment)
    assert Event.objects.count() == 0
    failure = IngestFailure.objects.get()
    assert (failure.endpoint, failure.batch_index, failure.reason) == ("batch", None, error)


def test_mixed_batch_keeps_the_valid_items_and_lists_the_invalid_ones(
    post_ingest: IngestPost, source: Source
) -> None:
    batch = [
        item("identify", "ok-0"),
        item("track", "bad-1", event=None),
        item("page", "ok-2", name="Pricing"),
        "not a message",
        item("group", "bad-4", userId={"id": 1}),
        item("track", "ok-5", anonymousId="anon-5", userId=None),
        item("wave", "bad-6"),
    ]
    response = post_ingest("batch", {"batch": batch})
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["success"] is True
    assert (data["accepted"], data["stored"], data["duplicates"]) == (3, 3, 0)
    reasons = {f["index"]: f["reason"] for f in data["failed"]}
    assert sorted(reasons) == [1, 3, 4, 6]
    assert "track call without event name" in reasons[1]
    assert "message must be a JSON object, got a string" in reasons[3]
    assert "userId must be a string, got an object" in reasons[4]
    assert "unknown type 'wave'" in reasons[6]

    stored = set(Event.objects.filter(source=source).values_list("message_id", flat=True))
    assert stored == {"ok-0", "ok-2", "ok-5"}
    failures = IngestFailure.objects.filter(source=source, endpoint="batch")
    assert {f.batch_index: f.reason for f in failures} == reasons
    assert '"bad-4"' in failures.get(batch_index=4).excerpt


def test_batch_where_every_item_is_invalid(post_ingest: IngestPost, source: Source) -> None:
    batch = [item("track", "bad-0", event=None), item("alias", "bad-1", previousId=None), 5]
    response = post_ingest("batch", {"batch": batch})
    error = assert_refused(response, 400, "no valid messages in batch")
    data = response.json()
    assert [f["index"] for f in data["failed"]] == [0, 1, 2]
    assert "alias call without previousId" in data["failed"][1]["reason"]
    assert "got a number" in data["failed"][2]["reason"], error
    failures = IngestFailure.objects.filter(source=source, endpoint="batch")
    assert [f.batch_index for f in failures.order_by("batch_index")] == [0, 1, 2]
    assert Event.objects.count() == 0


def test_over_deep_batch_item_is_refused_alone(post_ingest: IngestPost) -> None:
    deep = item("track", "deep-1", properties=nested(40))
    response = post_ingest("batch", {"batch": [item("track", "ok-0"), deep]})
    assert response.status_code == 200, response.content
    assert [f["index"] for f in response.json()["failed"]] == [1]
    assert list(Event.objects.values_list("message_id", flat=True)) == ["ok-0"]
