"""What the Segment HTTP Tracking API refuses: the status, an error naming the problem, and
that refusing one thing loses nothing else."""

from __future__ import annotations

import gzip
import time
from typing import Any

import orjson
import pytest

from destinations.ingest.auth import forget_cached_sources
from destinations.models import Event, IngestFailure, Source
from destinations.sources import source_create

pytestmark = pytest.mark.django_db


def error_of(response: Any) -> str:
    assert response["Content-Type"] == "application/json", response.content
    data = response.json()
    assert data["success"] is False
    return str(data["error"])


def assert_refused(response: Any, status: int, fragment: str) -> str:
    """The response has ``status`` and its JSON error mentions ``fragment``; returns the error."""
    assert response.status_code == status, response.content
    error = error_of(response)
    assert fragment in error, error
    return error


def track(message_id: str = "ok-1", **fields: Any) -> dict[str, Any]:
    return {"userId": "u1", "event": "Signed Up", "messageId": message_id, **fields}


def item(call: str, message_id: str, **fields: Any) -> dict[str, Any]:
    """A valid batch item of type ``call``, with ``fields`` overriding (None removes a field)."""
    base: dict[str, Any] = {"type": call, "userId": "u1", "messageId": message_id}
    base.update({"track": {"event": "E"}, "group": {"groupId": "g1"}}.get(call, {}))
    base.update({"alias": {"previousId": "old-1"}}.get(call, {}))
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def nested(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = {"a": value}
    return value


def nested_raw(levels: int) -> bytes:
    """``levels`` of {"a": ...} inside properties, as text (orjson cannot dump that deep)."""
    return (
        b'{"userId": "u1", "event": "Deep", "properties": '
        + b'{"a": ' * levels
        + b'"bottom"'
        + b"}" * levels
        + b"}"
    )


def no_events_and_no_failures() -> None:
    assert Event.objects.count() == 0
    assert IngestFailure.objects.count() == 0


# --- the request as a whole -------------------------------------------------------------------


def test_invalid_json(post_ingest, source):
    response = post_ingest("track", raw=b'{"userId": "u1", "event": ')
    error = assert_refused(response, 400, "Invalid JSON")
    failure = IngestFailure.objects.get()
    assert (failure.source, failure.endpoint, failure.batch_index) == (source, "track", None)
    assert failure.reason == error
    assert failure.excerpt.startswith('{"userId": "u1"')
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        pytest.param(b'{"batch": []}', "not valid gzip", id="not-gzip-at-all"),
        pytest.param(b"", "Body is not valid gzip: the stream is truncated", id="empty-body"),
    ],
)
def test_content_encoding_gzip_with_a_body_that_is_not_gzip(post_ingest, source, raw, fragment):
    # The test client sends no Content-Type with an empty body unless told to.
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    response = post_ingest("batch", raw=raw, headers=headers)
    assert_refused(response, 400, fragment)
    assert Event.objects.count() == 0


def test_truncated_gzip_stream(post_ingest, source):
    whole = gzip.compress(orjson.dumps({"batch": [item("track", "m1")]}))
    response = post_ingest("batch", raw=whole[:-12], headers={"Content-Encoding": "gzip"})
    assert_refused(response, 400, "truncated")
    assert IngestFailure.objects.get().endpoint == "batch"
    assert Event.objects.count() == 0


def test_gzip_that_inflates_past_the_batch_limit(post_ingest, source):
    bomb = b'{"batch": [' + b" " * (600 * 1024) + b"]}"
    response = post_ingest("batch", raw=gzip.compress(bomb), headers={"Content-Encoding": "gzip"})
    assert_refused(response, 413, "Decompressed body is over the 500 KB limit")
    assert Event.objects.count() == 0


def test_unsupported_content_encoding(post_ingest):
    response = post_ingest("track", track(), headers={"Content-Encoding": "br"})
    assert_refused(response, 415, "Content-Encoding 'br' is not supported")
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "multipart/form-data; boundary=xyz", "application/xml"],
)
def test_wrong_content_type(post_ingest, content_type):
    response = post_ingest("track", track(), content_type=content_type)
    media_type = content_type.split(";")[0]
    assert_refused(response, 415, f"Content-Type must be application/json, got {media_type}")
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        pytest.param({"write_key": "not-a-real-key"}, "Unknown write key", id="unknown-header-key"),
        pytest.param(
            {"auth": False, "payload": track(writeKey="not-a-real-key")},
            "Unknown write key",
            id="unknown-body-key",
        ),
        pytest.param({"auth": False}, "No write key", id="missing-key"),
        pytest.param({"write_key": ""}, "No write key", id="empty-basic-user-name"),
        pytest.param(
            {"headers": {"Authorization": "Bearer abc"}, "auth": False},
            "Authorization must be HTTP Basic",
            id="bearer-instead-of-basic",
        ),
        pytest.param(
            {"headers": {"Authorization": "Basic %%%"}, "auth": False},
            "not valid Basic credentials",
            id="basic-not-base64",
        ),
        pytest.param(
            {"auth": False, "payload": track(writeKey=12345)},
            "writeKey must be a string",
            id="body-key-not-a-string",
        ),
    ],
)
def test_no_usable_write_key_is_401_and_records_nothing(post_ingest, kwargs, fragment):
    kwargs.setdefault("payload", track())
    response = post_ingest("track", **kwargs)
    assert_refused(response, 401, fragment)
    no_events_and_no_failures()


@pytest.mark.parametrize("key_in", ["header", "body"])
def test_disabled_source_is_403(post_ingest, source, key_in):
    source.enabled = False
    source.save()
    forget_cached_sources()
    if key_in == "header":
        response = post_ingest("track", track())
    else:
        response = post_ingest("track", track(writeKey=source.write_key), auth=False)
    assert_refused(response, 403, "Source 'Web app' is disabled")
    no_events_and_no_failures()


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        pytest.param(b"", "Body is empty", id="empty"),
        pytest.param(b"   \n", "Body is empty", id="whitespace"),
        pytest.param(b'[{"userId": "u1"}]', "Body must be a JSON object, got an array", id="list"),
        pytest.param(b'"track"', "Body must be a JSON object, got a string", id="string"),
    ],
)
def test_body_that_is_not_a_json_object(post_ingest, raw, fragment):
    # The test client sends no Content-Type with an empty body unless told to.
    response = post_ingest("track", raw=raw, headers={"Content-Type": "application/json"})
    assert_refused(response, 400, fragment)
    assert Event.objects.count() == 0


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
def test_single_call_with_a_bad_message(post_ingest, source, call, fields, fragment):
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
    post_ingest, source, call, fields, fragment
):
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


def test_type_in_the_body_does_not_override_the_endpoint(post_ingest):
    # /v1/group decides the type; a body claiming "track" is still a group call without groupId.
    response = post_ingest("group", {"type": "track", "userId": "u1", "event": "E"})
    assert_refused(response, 400, "group call without groupId")


# --- limits ------------------------------------------------------------------------------------


def test_batch_body_over_500_kb(post_ingest, source):
    big = "x" * 1024
    batch = [item("track", f"m{i}", properties={"blob": big}) for i in range(520)]
    response = post_ingest("batch", {"batch": batch})
    assert_refused(response, 413, "the limit is 500 KB")
    assert Event.objects.count() == 0


def test_batch_of_more_than_2500_events(post_ingest, source):
    batch = [item("track", f"m{i}") for i in range(2501)]
    response = post_ingest("batch", {"batch": batch})
    assert_refused(response, 413, "batch has 2,501 events; the limit is 2,500")
    assert Event.objects.count() == 0
    assert IngestFailure.objects.get().endpoint == "batch"


def test_batch_of_exactly_2500_events_is_accepted(post_ingest):
    batch = [item("track", f"m{i}") for i in range(2500)]
    response = post_ingest("batch", {"batch": batch})
    assert response.status_code == 200, response.content
    assert Event.objects.count() == 2500


def test_json_nested_40_levels_inside_properties(post_ingest, source):
    response = post_ingest("track", raw=nested_raw(40))
    assert_refused(response, 400, "JSON is nested more than 32 levels deep")
    assert Event.objects.count() == 0
    assert IngestFailure.objects.count() == 1


@pytest.mark.parametrize("levels", [5000, 50_000])
def test_json_nested_thousands_of_levels_is_a_clean_400(post_ingest, levels):
    response = post_ingest("track", raw=nested_raw(levels))
    error = assert_refused(response, 400, "")
    assert "nested" in error or "depth" in error, error
    assert Event.objects.count() == 0


def test_json_nested_thousands_of_levels_gets_the_same_message_as_40(post_ingest):
    response = post_ingest("track", raw=nested_raw(5000))
    assert_refused(response, 400, "JSON is nested more than 32 levels deep")


def test_nul_character_is_refused_by_name_and_its_batch_neighbours_kept(post_ingest, source):
    bad = item("track", "nul-1", properties={"note": "a\x00b"})
    response = post_ingest("batch", {"batch": [item("track", "ok-0"), bad]})
    assert response.status_code == 200, response.content
    [failed] = response.json()["failed"]
    assert failed["index"] == 1
    assert "NUL character" in failed["reason"]
    assert list(Event.objects.values_list("message_id", flat=True)) == ["ok-0"]


def test_escaped_backslash_before_u0000_is_ordinary_text(post_ingest):
    response = post_ingest("track", track(properties={"path": "C:\\u0000\\x"}))
    assert response.status_code == 200, response.content
    assert Event.objects.get().payload["properties"]["path"] == "C:\\u0000\\x"


def test_raw_nul_bytes_in_a_refused_body_are_recorded_readably(post_ingest, source):
    response = post_ingest("track", raw=b'{"userId": "u1", \x00\x00')
    assert_refused(response, 400, "Invalid JSON")
    assert "\ufffd" in IngestFailure.objects.get(source=source).excerpt


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
def test_batch_that_is_not_a_non_empty_array(post_ingest, source, payload, fragment):
    response = post_ingest("batch", payload)
    error = assert_refused(response, 400, fragment)
    assert Event.objects.count() == 0
    failure = IngestFailure.objects.get()
    assert (failure.endpoint, failure.batch_index, failure.reason) == ("batch", None, error)


def test_mixed_batch_keeps_the_valid_items_and_lists_the_invalid_ones(post_ingest, source):
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


def test_batch_where_every_item_is_invalid(post_ingest, source):
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


def test_over_deep_batch_item_is_refused_alone(post_ingest):
    deep = item("track", "deep-1", properties=nested(40))
    response = post_ingest("batch", {"batch": [item("track", "ok-0"), deep]})
    assert response.status_code == 200, response.content
    assert [f["index"] for f in response.json()["failed"]] == [1]
    assert list(Event.objects.values_list("message_id", flat=True)) == ["ok-0"]


# --- failures are recorded for known sources only, and nothing stored is lost -----------------


def test_refused_event_from_a_known_source_is_recorded(post_ingest, source):
    response = post_ingest("track", {"userId": "u1"})
    error = assert_refused(response, 400, "track call without event name")
    failure = IngestFailure.objects.get()
    assert (failure.source, failure.endpoint, failure.reason) == (source, "track", error)


def test_refused_event_with_an_unknown_key_is_not_recorded(post_ingest):
    response = post_ingest("track", {"userId": "u1"}, write_key="nobody-has-this-key")
    assert_refused(response, 401, "Unknown write key")
    no_events_and_no_failures()


def test_bad_requests_do_not_touch_events_already_stored(post_ingest, source):
    good = [item("track", f"kept-{i}") for i in range(3)]
    assert post_ingest("batch", {"batch": good}).status_code == 200
    assert post_ingest("identify", {"userId": "u1", "messageId": "kept-id"}).status_code == 200
    before = list(Event.objects.order_by("id").values_list("id", "message_id", "payload"))
    assert len(before) == 4

    bad_requests: list[tuple[str, dict[str, Any]]] = [
        ("track", {"raw": b"{not json"}),
        ("batch", {"raw": b"garbage", "headers": {"Content-Encoding": "gzip"}}),
        ("batch", {"payload": {"batch": []}}),
        ("batch", {"payload": {"batch": [item("track", "kept-0", event=None)]}}),
        ("track", {"payload": track("kept-1", event=None)}),
        ("track", {"payload": track("kept-2"), "write_key": "wrong"}),
        ("track", {"payload": track(), "content_type": "application/x-www-form-urlencoded"}),
        ("track", {"raw": nested_raw(5000)}),
        ("batch", {"payload": {"batch": [item("track", f"n{i}") for i in range(2501)]}}),
    ]
    for path, kwargs in bad_requests:
        response = post_ingest(path, **kwargs)
        assert 400 <= response.status_code < 500, (path, kwargs, response.content)

    after = list(Event.objects.order_by("id").values_list("id", "message_id", "payload"))
    assert after == before


# --- rate limit --------------------------------------------------------------------------------


def start_of_a_fresh_second() -> None:
    """The limit counts per wall-clock second: start there so four requests share one window."""
    time.sleep(1.0 - time.time() % 1.0 + 0.01)


def test_rate_limit_per_source(post_ingest, source):
    source.rate_limit_per_second = 3
    source.save()
    other = source_create(name="Backend")
    forget_cached_sources()

    start_of_a_fresh_second()
    statuses = [post_ingest("track", track(f"r{i}")).status_code for i in range(3)]
    limited = post_ingest("track", track("r3"))
    others = [post_ingest("track", track(f"o{i}"), write_key=other.write_key) for i in range(3)]

    assert statuses == [200, 200, 200]
    assert_refused(
        limited, 429, "Rate limit of 3 requests per second exceeded for source 'Web app'"
    )
    retry_after = limited["Retry-After"]
    assert retry_after.isdigit() and int(retry_after) >= 1, retry_after
    assert [r.status_code for r in others] == [200, 200, 200]
    assert set(Event.objects.filter(source=source).values_list("message_id", flat=True)) == {
        "r0",
        "r1",
        "r2",
    }
    assert Event.objects.filter(source=other).count() == 3
    assert IngestFailure.objects.count() == 0  # a 429 is not recorded as a refused message


def test_rate_limit_applies_to_a_write_key_in_the_body(post_ingest, source):
    source.rate_limit_per_second = 1
    source.save()
    forget_cached_sources()

    start_of_a_fresh_second()
    body = track("b0", writeKey=source.write_key)
    first = post_ingest("track", body, auth=False)
    second = post_ingest("track", {**body, "messageId": "b1"}, auth=False)

    assert first.status_code == 200, first.content
    assert_refused(second, 429, "Rate limit of 1 requests per second exceeded")
    assert list(Event.objects.values_list("message_id", flat=True)) == ["b0"]


def test_a_disabled_second_source_does_not_affect_the_first(post_ingest, source):
    other: Source = source_create(name="Old app")
    other.enabled = False
    other.save()
    forget_cached_sources()
    assert_refused(post_ingest("track", track(), write_key=other.write_key), 403, "'Old app'")
    assert post_ingest("track", track()).status_code == 200


def test_an_unknown_endpoint_is_a_plain_404_not_a_dashboard_page(post_ingest: Any) -> None:
    response = post_ingest("trak", {"userId": "u1", "event": "E"})
    assert response.status_code == 404
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content == b"404 Not Found: no endpoint at /v1/trak\n"
