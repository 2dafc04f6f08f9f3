"""The real Segment and RudderStack Python SDKs, pointed at a live Switchboard, see success.

Each client runs its own background consumer exactly as in production: calls are queued,
``flush()`` waits until every queued batch got an answer and ``join()`` stops the consumer.
``max_retries=0`` makes any refusal reach ``on_error`` at once instead of after minutes of
backoff. The requests each SDK makes are observed (not altered) through a response hook on the
module-level ``requests`` session the SDK posts with.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import requests
import rudderstack.analytics.request as rudder_request
import segment.analytics.request as segment_request
from rudderstack.analytics.client import Client as RudderClient
from rudderstack.analytics.version import VERSION as RUDDER_VERSION
from segment.analytics.client import Client as SegmentClient
from segment.analytics.version import VERSION as SEGMENT_VERSION

from destinations.models import Account, AnonymousId, Event, IngestFailure, Membership, Profile
from destinations.sources import source_create
from tests.helpers.ingest import basic

pytestmark = pytest.mark.usefixtures("transactional_db")


@dataclass
class Sent:
    """What one SDK put on the wire and what the server answered, request by request."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    status: int
    answer: dict[str, Any]

    def document(self) -> dict[str, Any]:
        raw = gzip.decompress(self.body) if self.headers.get("Content-Encoding") else self.body
        value: dict[str, Any] = orjson.loads(raw)
        return value


@dataclass
class Wire:
    requests: list[Sent] = field(default_factory=list)
    errors: list[tuple[Exception, list[dict[str, Any]]]] = field(default_factory=list)

    def on_error(self, error: Exception, batch: list[dict[str, Any]]) -> None:
        self.errors.append((error, batch))


def observe(session: requests.Session) -> Iterator[Wire]:
    wire = Wire()

    def record(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        sent = response.request
        body = sent.body if isinstance(sent.body, bytes) else str(sent.body or "").encode()
        try:
            answer = response.json()
        except ValueError:
            answer = {"unparsed": response.text}
        wire.requests.append(
            Sent(
                method=sent.method or "",
                url=sent.url or "",
                headers=dict(sent.headers),
                body=body,
                status=response.status_code,
                answer=answer,
            )
        )

    hooks = session.hooks["response"]
    hooks.append(record)
    try:
        yield wire
    finally:
        hooks.remove(record)
        # Drop the kept-alive connections so no live-server thread waits on them after the test.
        session.close()


@pytest.fixture
def segment_wire() -> Iterator[Wire]:
    yield from observe(segment_request._session)


@pytest.fixture
def rudder_wire() -> Iterator[Wire]:
    yield from observe(rudder_request._session)


def send_every_call(client: Any, user_id: str) -> dict[str, str]:
    """identify, track, page, screen, group and alias; returns each call's messageId."""
    sent = {
        "identify": client.identify(
            user_id, {"email": "Ada@Example.com", "name": "Ada Lovelace", "plan": "pro"}
        ),
        "track": client.track(user_id, "Report Exported", {"format": "csv", "rows": 12}),
        "page": client.page(user_id, "Docs", "Pricing", {"path": "/pricing"}),
        "screen": client.screen(user_id, None, "Home", {"tab": "feed"}),
        "group": client.group(user_id, "acct-42", {"name": "Initech", "employees": 40}),
        "alias": client.alias("anon-before-signup", user_id),
    }
    for call, (queued, _msg) in sent.items():
        assert queued is True, f"{call} was not queued"
    return {call: msg["messageId"] for call, (_queued, msg) in sent.items()}


SDKS: dict[str, tuple[Callable[..., Any], str, bool]] = {
    # name: (client class, library version, gzip by default)
    "segment": (SegmentClient, SEGMENT_VERSION, False),
    "rudderstack": (RudderClient, RUDDER_VERSION, True),
}


@pytest.mark.parametrize("sdk", list(SDKS))
def test_every_call_type_is_stored(
    sdk: str, live_server: Any, segment_wire: Wire, rudder_wire: Wire
) -> None:
    client_class, version, gzip_default = SDKS[sdk]
    wire = segment_wire if sdk == "segment" else rudder_wire
    source = source_create(name=f"{sdk} python")
    client = client_class(
        source.write_key, host=live_server.url, on_error=wire.on_error, max_retries=0
    )
    message_ids = send_every_call(client, "u-ada")
    client.flush()
    client.join()

    assert wire.errors == [], f"{sdk} reported errors: {wire.errors}"
    assert wire.requests, f"{sdk} sent nothing"
    for sent in wire.requests:
        assert sent.method == "POST"
        assert sent.url == f"{live_server.url}/v1/batch"
        assert sent.headers["Authorization"] == basic(source.write_key)
        assert sent.headers["Content-Type"] == "application/json"
        assert sent.headers["User-Agent"] == f"analytics-python/{version}"
        assert ("Content-Encoding" in sent.headers) is gzip_default
        assert sent.status == 200, sent.answer
        assert sent.answer["success"] is True
        assert sent.answer["failed"] == []
    assert sum(s.answer["stored"] for s in wire.requests) == 6
    assert sum(len(s.document()["batch"]) for s in wire.requests) == 6
    # Segment repeats the key in the body next to Basic auth; RudderStack only uses the header.
    assert all(("writeKey" in s.document()) is (sdk == "segment") for s in wire.requests)

    events = {e.type: e for e in Event.objects.filter(source=source)}
    assert set(events) == {"identify", "track", "page", "screen", "group", "alias"}
    assert {call: events[call].message_id for call in events} == message_ids
    assert all(e.user_id == "u-ada" for e in events.values())
    assert events["track"].event == "Report Exported"
    assert events["track"].payload["properties"] == {"format": "csv", "rows": 12}
    assert events["page"].name == "Pricing"
    assert events["page"].payload["category"] == "Docs"
    assert events["screen"].name == "Home"
    assert events["group"].group_id == "acct-42"
    assert events["alias"].previous_id == "anon-before-signup"
    for event in events.values():
        library = event.payload["context"]["library"]
        assert library == {"name": "analytics-python", "version": version}
        assert "writeKey" not in event.payload
        assert event.sent_at is not None
        assert event.payload["receivedAt"]
    if sdk == "rudderstack":
        assert all(e.payload["channel"] == "server" for e in events.values())
        assert events["track"].payload["integrations"] == {"All": True}

    profile = Profile.objects.get(user_id="u-ada")
    assert all(e.profile_id == profile.pk for e in events.values())
    assert AnonymousId.objects.get(value="anon-before-signup").profile == profile
    account = Account.objects.get(group_id="acct-42")
    assert account.name == "Initech"
    assert account.traits == {"name": "Initech", "employees": 40}
    assert Membership.objects.filter(profile=profile, account=account).exists()
    assert not IngestFailure.objects.exists()

    if sdk == "segment":
        assert profile.email == "ada@example.com"
        assert profile.name == "Ada Lovelace"
        assert profile.traits == {"email": "Ada@Example.com", "name": "Ada Lovelace", "plan": "pro"}
    else:
        # RudderStack's identify() puts the traits in context.traits, never at the top level.
        assert "traits" not in events["identify"].payload
        assert events["identify"].payload["context"]["traits"]["email"] == "Ada@Example.com"


def test_rudderstack_identify_traits_reach_the_profile(live_server: Any, rudder_wire: Wire) -> None:
    source = source_create(name="rudderstack traits")
    client = RudderClient(
        source.write_key, host=live_server.url, on_error=rudder_wire.on_error, max_retries=0
    )
    client.identify("u-grace", {"email": "Grace@Example.com", "name": "Grace Hopper"})
    client.flush()
    client.join()
    assert rudder_wire.errors == []
    assert Event.objects.get(source=source).type == "identify"
    profile = Profile.objects.get(user_id="u-grace")
    assert profile.email == "grace@example.com"
    assert profile.name == "Grace Hopper"


def test_segment_client_with_gzip(live_server: Any, segment_wire: Wire) -> None:
    source = source_create(name="segment gzip")
    client = SegmentClient(
        source.write_key,
        host=live_server.url,
        gzip=True,
        on_error=segment_wire.on_error,
        max_retries=0,
    )
    _, identify = client.identify("u-zip", {"email": "zip@example.com"})
    _, track = client.track("u-zip", "Compressed", {"ratio": 0.25})
    _, group = client.group("u-zip", "acct-zip", {"name": "Zipco"})
    client.flush()
    client.join()

    assert segment_wire.errors == []
    assert segment_wire.requests
    for sent in segment_wire.requests:
        assert sent.url == f"{live_server.url}/v1/batch"
        assert sent.headers["Content-Encoding"] == "gzip"
        assert sent.body[:2] == b"\x1f\x8b"  # the gzip magic number: the body really is gzip
        assert sent.status == 200, sent.answer
        assert sent.answer["success"] is True
    stored = {e.message_id: e for e in Event.objects.filter(source=source)}
    assert set(stored) == {identify["messageId"], track["messageId"], group["messageId"]}
    assert stored[track["messageId"]].event == "Compressed"
    assert stored[track["messageId"]].payload["properties"] == {"ratio": 0.25}
    assert stored[track["messageId"]].payload["context"]["library"]["name"] == "analytics-python"
    assert Profile.objects.get(user_id="u-zip").email == "zip@example.com"
    assert Account.objects.get(group_id="acct-zip").name == "Zipco"


def test_segment_sync_mode_posts_each_call_before_returning(
    live_server: Any, segment_wire: Wire
) -> None:
    source = source_create(name="segment sync")
    client = SegmentClient(source.write_key, host=live_server.url, sync_mode=True)
    _, msg = client.track("u-sync", "Synchronous")
    # No flush: in sync mode the call itself posted the event and the row is committed.
    event = Event.objects.get(source=source)
    assert event.message_id == msg["messageId"]
    assert event.event == "Synchronous"
    assert [s.status for s in segment_wire.requests] == [200]


def test_wrong_write_key_reaches_on_error(live_server: Any, segment_wire: Wire) -> None:
    """The success checks above mean something: a refused batch does reach on_error."""
    source_create(name="real")
    client = SegmentClient(
        "not-a-write-key", host=live_server.url, on_error=segment_wire.on_error, max_retries=0
    )
    client.track("u-x", "Refused")
    client.flush()
    client.join()
    assert [s.status for s in segment_wire.requests] == [401]
    assert len(segment_wire.errors) == 1
    error, batch = segment_wire.errors[0]
    assert getattr(error, "status", None) == 401
    assert [m["event"] for m in batch] == ["Refused"]
    assert not Event.objects.exists()


def test_rudderstack_wrong_write_key_reaches_on_error(live_server: Any, rudder_wire: Wire) -> None:
    source_create(name="real")
    client = RudderClient(
        "not-a-write-key", host=live_server.url, on_error=rudder_wire.on_error, max_retries=0
    )
    client.track("u-x", "Refused")
    client.flush()
    client.join()
    assert [s.status for s in rudder_wire.requests] == [401]
    assert len(rudder_wire.errors) == 1
    assert [m["event"] for m in rudder_wire.errors[0][1]] == ["Refused"]
    assert not Event.objects.exists()


def test_rudderstack_does_not_retry_a_refused_write_key(
    live_server: Any, rudder_wire: Wire
) -> None:
    client = RudderClient(
        "not-a-write-key", host=live_server.url, on_error=rudder_wire.on_error, max_retries=1
    )
    client.track("u-x", "Refused")
    client.flush()
    client.join()
    assert len(rudder_wire.errors) == 1
    error = rudder_wire.errors[0][0]
    assert isinstance(error, rudder_request.APIError), repr(error)
    assert error.status == 401
    assert [s.status for s in rudder_wire.requests] == [401]
