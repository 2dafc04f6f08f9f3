"""Large hostile batches through the ingest writer process (destinations/ingest/writer_link.py):
the server as operators run it, with the writer process on (on either database), takes
generated batches of 70 to 90 messages, most of them valid, so their groups cross the link.
Whatever the content (odd text, huge numbers, deep nesting, wrong types), the answer is precise,
every message it accepts is stored, and stored as the web process validated it: the same payload
as validating the item here, at the moment the server received it (numbers compared as
PostgreSQL's jsonb keeps them: 3.0576e16 comes back as the integer it equals)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from destinations.messages.message import (
    Envelope,
    InvalidMessage,
    validate_message,
    without_reserved,
)
from destinations.models import Event, Source
from tests.helpers.ingest import basic
from tests.helpers.server import HOST, WebServer
from tests.hostile import strategies as gen

pytestmark = pytest.mark.django_db(transaction=True)

SHARED = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    deadline=None,
    max_examples=25,
)


@pytest.fixture(scope="module")
def server(django_db_setup: None, django_db_blocker: object) -> Iterator[WebServer]:
    started = WebServer(workers=2, env={"INGEST_WRITER_PROCESS": "true"})
    try:
        yield started.start()
    finally:
        started.stop()


# Fields whose hostile values most often leave a message valid: a batch of mostly valid messages
# makes a group past the writer process's threshold.
PAYLOAD_FIELDS = ("properties", "traits", "context", "integrations", "timestamp", "sentAt")


@st.composite
def mostly_valid(draw: st.DrawFn) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "track",
        "event": draw(st.sampled_from(["Clicked", "Report Exported", "😀"])),
        "userId": "u-" + draw(st.text("abc", min_size=1, max_size=3)),
        "messageId": gen.unique_id("wp"),
    }
    for name in draw(st.sets(st.sampled_from(PAYLOAD_FIELDS), max_size=3)):
        message[name] = draw(gen.MESSAGE_FIELDS[name])
    return message


def expected_payload(item: dict[str, Any], received_at: Any) -> dict[str, Any] | None:
    """What the web process makes of ``item`` received at ``received_at``; None if refused."""
    try:
        message = validate_message(
            without_reserved(item),
            call_type=None,
            received_at=received_at,
            envelope=Envelope.of({}),
        )
    except InvalidMessage:
        return None
    parsed: dict[str, Any] = orjson.loads(message.payload_json)
    return parsed


def same_json(stored: Any, expected: Any) -> bool:
    """Equal as JSON documents, a number matching a number of the same double value."""
    numbers = (int, float)
    if isinstance(stored, numbers) and isinstance(expected, numbers):
        if isinstance(stored, bool) or isinstance(expected, bool):
            return stored is expected
        return stored == expected or float(stored) == float(expected)
    if isinstance(stored, dict) and isinstance(expected, dict):
        return stored.keys() == expected.keys() and all(
            same_json(stored[key], expected[key]) for key in stored
        )
    if isinstance(stored, list) and isinstance(expected, list):
        return len(stored) == len(expected) and all(
            same_json(a, b) for a, b in zip(stored, expected, strict=True)
        )
    return type(stored) is type(expected) and stored == expected


@SHARED
@given(
    batch=st.lists(
        st.one_of(mostly_valid(), mostly_valid(), mostly_valid(), gen.messages()),
        min_size=70,
        max_size=90,
    )
)
def test_a_large_hostile_batch_is_stored_as_validated(
    server: WebServer, source: Source, batch: list[dict[str, Any]]
) -> None:
    headers = {"Authorization": basic(source.write_key), "Content-Type": "application/json"}
    connection = http.client.HTTPConnection(HOST, server.port, timeout=30)
    try:
        # The standard library's encoder: orjson refuses integers past 64 bits, which SDKs send.
        body = json.dumps({"batch": batch}).encode()
        connection.request("POST", "/v1/batch", body, headers)
        response = connection.getresponse()
        status, answer = response.status, orjson.loads(response.read())
    finally:
        connection.close()
    assert status in (200, 400), (status, answer)
    try:
        # The items as the server parsed them (orjson reads some numbers as SDKs' JSON has them
        # differently from Python's own values); a body it cannot parse at all is a 400.
        batch = orjson.loads(body)["batch"]
    except orjson.JSONDecodeError:
        assert status == 400 and "Invalid JSON" in answer["error"], answer
        return
    failed = {refusal["index"] for refusal in answer.get("failed", [])}
    sent = {item["messageId"]: item for index, item in enumerate(batch) if index not in failed}
    rows = dict(
        Event.objects.filter(source=source, message_id__in=list(sent)).values_list(
            "message_id", "received_at"
        )
    )
    if status == 400:
        assert not sent and not rows, answer
        return
    assert answer["accepted"] == len(sent) and answer["stored"] == len(sent), answer
    assert rows.keys() == sent.keys()
    payloads = dict(
        Event.objects.filter(source=source, message_id__in=list(sent)).values_list(
            "message_id", "payload"
        )
    )
    for message_id, item in sent.items():
        expected = expected_payload(item, rows[message_id])
        assert same_json(payloads[message_id], expected), (message_id, payloads[message_id])
    # What the server refused is refused here too: nothing valid was dropped on the way.
    received_at = next(iter(rows.values()))
    for index in failed:
        assert expected_payload(batch[index], received_at) is None, batch[index]
    assert "Traceback" not in server.log(), server.describe()
