"""What ingest refuses about a request as a whole (JSON, encoding, content type, write key,
disabled source), and that refusals are recorded for known sources only and lose nothing."""

from __future__ import annotations

import gzip
from typing import Any

import orjson
import pytest

from destinations.ingest.auth import forget_cached_sources
from destinations.models import Event, IngestFailure, Source
from tests.helpers.ingest import IngestPost
from tests.helpers.refusals import assert_refused, item, nested_raw, track

pytestmark = pytest.mark.django_db


def no_events_and_no_failures() -> None:
    assert Event.objects.count() == 0
    assert IngestFailure.objects.count() == 0


# --- the request as a whole -------------------------------------------------------------------


def test_invalid_json(post_ingest: IngestPost, source: Source) -> None:
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
def test_content_encoding_gzip_with_a_body_that_is_not_gzip(
    post_ingest: IngestPost, source: Source, raw: bytes, fragment: str
) -> None:
    # The test client sends no Content-Type with an empty body unless told to.
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    response = post_ingest("batch", raw=raw, headers=headers)
    assert_refused(response, 400, fragment)
    assert Event.objects.count() == 0


def test_truncated_gzip_stream(post_ingest: IngestPost, source: Source) -> None:
    whole = gzip.compress(orjson.dumps({"batch": [item("track", "m1")]}))
    response = post_ingest("batch", raw=whole[:-12], headers={"Content-Encoding": "gzip"})
    assert_refused(response, 400, "truncated")
    assert IngestFailure.objects.get().endpoint == "batch"
    assert Event.objects.count() == 0


def test_gzip_that_inflates_past_the_batch_limit(post_ingest: IngestPost, source: Source) -> None:
    bomb = b'{"batch": [' + b" " * (600 * 1024) + b"]}"
    response = post_ingest("batch", raw=gzip.compress(bomb), headers={"Content-Encoding": "gzip"})
    assert_refused(response, 413, "Decompressed body is over the 500 KB limit")
    assert Event.objects.count() == 0


def test_unsupported_content_encoding(post_ingest: IngestPost) -> None:
    response = post_ingest("track", track(), headers={"Content-Encoding": "br"})
    assert_refused(response, 415, "Content-Encoding 'br' is not supported")
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "multipart/form-data; boundary=xyz", "application/xml"],
)
def test_wrong_content_type(post_ingest: IngestPost, content_type: str) -> None:
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
def test_no_usable_write_key_is_401_and_records_nothing(
    post_ingest: IngestPost, kwargs: dict[str, Any], fragment: str
) -> None:
    kwargs.setdefault("payload", track())
    response = post_ingest("track", **kwargs)
    assert_refused(response, 401, fragment)
    no_events_and_no_failures()


@pytest.mark.parametrize("key_in", ["header", "body"])
def test_disabled_source_is_403(post_ingest: IngestPost, source: Source, key_in: str) -> None:
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
def test_body_that_is_not_a_json_object(post_ingest: IngestPost, raw: bytes, fragment: str) -> None:
    # The test client sends no Content-Type with an empty body unless told to.
    response = post_ingest("track", raw=raw, headers={"Content-Type": "application/json"})
    assert_refused(response, 400, fragment)
    assert Event.objects.count() == 0


# --- failures are recorded for known sources only, and nothing stored is lost -----------------


def test_refused_event_from_a_known_source_is_recorded(
    post_ingest: IngestPost, source: Source
) -> None:
    response = post_ingest("track", {"userId": "u1"})
    error = assert_refused(response, 400, "track call without event name")
    failure = IngestFailure.objects.get()
    assert (failure.source, failure.endpoint, failure.reason) == (source, "track", error)


def test_refused_event_with_an_unknown_key_is_not_recorded(post_ingest: IngestPost) -> None:
    response = post_ingest("track", {"userId": "u1"}, write_key="nobody-has-this-key")
    assert_refused(response, 401, "Unknown write key")
    no_events_and_no_failures()


def test_bad_requests_do_not_touch_events_already_stored(
    post_ingest: IngestPost, source: Source
) -> None:
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
