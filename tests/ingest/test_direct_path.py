"""The WSGI application the server runs (dashboard/project/wsgi.py) answers the exact Segment
paths before Django's middleware (destinations/ingest/direct.py): with the answers and headers
Django's own route to the same view gives, and leaves every other path to Django.

Django's route is taken through Django's test client, which runs the middleware but not the
WSGI wrapper. The tests are transactional: a real server runs no request inside a transaction,
and the direct path drops a connection left in one, as Django does around every request.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import orjson
import pytest
from django.conf import settings
from django.test import Client

from dashboard.project.wsgi import application
from destinations.ingest import direct, urls
from destinations.ingest.auth import source_for_write_key
from destinations.ingest.direct import ROUTES, IngestFirst
from destinations.models import Event, IngestFailure, Source
from destinations.sources import source_create
from tests.helpers.ingest import basic
from tests.helpers.wsgi import WSGIAnswer, call_wsgi

pytestmark = pytest.mark.django_db(transaction=True)

JSON = "application/json"
# What Django's SecurityMiddleware, XFrameOptionsMiddleware and the dashboard's
# SecurityHeadersMiddleware put on every response, and the view's own CORS headers.
SECURITY_HEADERS = {
    "Content-Security-Policy": settings.CONTENT_SECURITY_POLICY,
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding",
    "Access-Control-Max-Age": "86400",
}


def assert_headers(answer: WSGIAnswer, expected: dict[str, str]) -> None:
    sent = {name: answer.header(name) for name in expected}
    assert sent == expected, answer.headers


def send_both_ways(
    client: Client, method: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[WSGIAnswer, Any]:
    """The same request through the server's application and through Django's route."""
    direct = call_wsgi(application, method, path, body, headers)
    others = {k: v for k, v in headers.items() if k != "Content-Type"}
    through_django = client.generic(
        method, path, body, content_type=headers.get("Content-Type", ""), headers=others
    )
    return direct, through_django


def lowered(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


def like_django(through_django: Any, direct: WSGIAnswer) -> dict[str, str]:
    """The headers Django's route sent, less two that the direct path rightly leaves out:

    - Content-Length: Django's CommonMiddleware counts the body; on the direct path the server
      does (waitress, for a body of one chunk, as the direct path's is).
    - Vary: Cookie: LoginRequiredMiddleware asks whether the user is logged in (reading the
      session) before it sees that the view needs no login, so SessionMiddleware marks the
      answer as depending on cookies. An ingest answer does not; no session is read here.
    """
    headers = lowered(through_django.items())
    assert headers.pop("content-length") == str(len(direct.body))
    assert headers.pop("vary") == "Cookie"
    return headers


# --- answers ----------------------------------------------------------------------------------


def test_track_is_stored_and_answered_with_every_security_and_cors_header(
    source: Source,
) -> None:
    body = orjson.dumps({"userId": "u1", "event": "Clicked", "messageId": "direct-1"})
    headers = {"Authorization": basic(source.write_key), "Content-Type": JSON}
    answer = call_wsgi(application, "POST", "/v1/track", body, headers)
    assert answer.status == 200, answer.body
    assert answer.json() == {"success": True, "stored": 1, "duplicates": 0}
    assert_headers(answer, {**SECURITY_HEADERS, **CORS_HEADERS})
    event = Event.objects.get(source=source)
    assert (event.message_id, event.type, event.event) == ("direct-1", "track", "Clicked")


# (id, method, path, body, write key: the source's (True), an unknown one (False) or none (None),
#  status, how the error begins)
CASES = [
    ("track", "POST", "/v1/track", b'{"userId": "u1", "event": "Clicked"}', True, 200, None),
    (
        "batch-with-a-refused-item",
        "POST",
        "/v1/batch",
        b'{"batch": [{"type": "track", "userId": "u1", "event": "E"}, {"type": "track"}]}',
        True,
        200,
        None,
    ),
    ("get", "GET", "/v1/track", b"", True, 405, "Use POST"),
    ("bad-json", "POST", "/v1/t", b'{"userId": "u1", "event": ', True, 400, "Invalid JSON: "),
    ("unknown-key", "POST", "/v1/identify", b'{"userId": "u1"}', False, 401, "Unknown write key"),
    ("no-key", "POST", "/v1/batch", b'{"batch": []}', None, 401, "No write key"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "key", "status", "error"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_answers_and_headers_are_those_of_django_s_route(
    client: Client,
    source: Source,
    method: str,
    path: str,
    body: bytes,
    key: bool | None,
    status: int,
    error: str | None,
) -> None:
    headers = {"Content-Type": JSON} if body else {}
    if key is not None:
        headers["Authorization"] = basic(source.write_key if key else "no-such-key")
    direct, through_django = send_both_ways(client, method, path, body, headers)

    assert direct.status == through_django.status_code == status, direct.body
    answer = direct.json()
    assert answer == through_django.json()
    if error is None:
        assert answer["success"] is True
        assert answer["stored"] == 1
    else:
        assert (answer["success"], answer["error"][: len(error)]) == (False, error)
    assert_headers(direct, {**SECURITY_HEADERS, **CORS_HEADERS})
    if status == 405:
        assert direct.header("Allow") == "POST, OPTIONS"
    assert lowered(direct.headers) == like_django(through_django, direct)


def test_refusals_on_the_direct_path_are_recorded_for_the_source(source: Source) -> None:
    headers = {"Authorization": basic(source.write_key), "Content-Type": JSON}
    answer = call_wsgi(application, "POST", "/v1/track", b'{"userId": ', headers)
    assert answer.status == 400
    failure = IngestFailure.objects.get()
    assert (failure.source_id, failure.endpoint, failure.excerpt) == (
        source.pk,
        "track",
        '{"userId": ',
    )
    assert failure.reason == answer.json()["error"]


def test_a_preflight_is_answered_like_django_s_route(client: Client) -> None:
    asked = {
        "Origin": "https://app.example.com",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-retry-count",
    }
    direct, through_django = send_both_ways(client, "OPTIONS", "/v1/t", b"", asked)
    assert direct.status == through_django.status_code == 204
    assert direct.body == b""
    allowed = "Authorization, Content-Type, Content-Encoding, x-retry-count"
    assert_headers(
        direct, {**SECURITY_HEADERS, **CORS_HEADERS, "Access-Control-Allow-Headers": allowed}
    )
    assert lowered(direct.headers) == like_django(through_django, direct)


def test_an_error_in_the_view_is_a_500_with_the_usual_headers(
    source: Source, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_view(request: object, call_type: str | None) -> None:
        raise RuntimeError("a bug in the view")

    # Nothing a client sends reaches this (the hostile-input tests hold the view to that), so
    # the view itself is replaced to see what a bug in it would give.
    monkeypatch.setattr(direct, "ingest", broken_view)
    headers = {"Authorization": basic(source.write_key), "Content-Type": JSON}
    with caplog.at_level(logging.ERROR, logger="django.request"):
        answer = call_wsgi(
            application, "POST", "/v1/track", b'{"userId": "u1", "event": "E"}', headers
        )
    assert answer.status == 500, answer.body
    assert answer.json() == {
        "success": False,
        "error": "Internal error; the events were not stored",
        "code": "error",
        "message": "Internal error; the events were not stored",
    }
    assert_headers(answer, {**SECURITY_HEADERS, **CORS_HEADERS})
    logged = [r for r in caplog.records if r.name == "django.request"]
    assert [r.getMessage() for r in logged] == ["Internal Server Error: /v1/track"]
    assert logged[0].exc_info is not None
    assert Event.objects.count() == 0


def test_a_source_deleted_while_its_key_is_cached_is_an_unknown_key() -> None:
    # This process still holds the write key in its cache: the events break the foreign key.
    deleted = source_create(name="Deleted meanwhile")
    source_for_write_key(deleted.write_key)
    deleted.delete()
    headers = {"Authorization": basic(deleted.write_key), "Content-Type": JSON}
    answer = call_wsgi(application, "POST", "/v1/track", b'{"userId": "u1", "event": "E"}', headers)
    assert answer.status == 401, answer.body
    assert answer.json()["error"] == "Unknown write key"
    assert Event.objects.count() == 0
    # The cache forgot it: the next request is refused before anything is stored.
    again = call_wsgi(application, "POST", "/v1/track", b'{"userId": "u1", "event": "E"}', headers)
    assert again.status == 401


# --- routing ----------------------------------------------------------------------------------


def test_the_routes_are_those_of_the_ingest_urlconf() -> None:
    from_urlconf = {
        f"/v1/{pattern.pattern}": pattern.default_args.get("call_type")
        for pattern in urls.urlpatterns
    }
    assert from_urlconf == ROUTES


INGEST_PATHS = [
    "/v1/track",
    "/v1/t",
    "/v1/identify",
    "/v1/alias",
    "/v1/batch",
    "/v1/b",
    "/v1/import",
]
DJANGO_PATHS = ["/v1/track/", "/v1/batch/", "/healthz", "/v1/", "/v1/tracks", "/V1/track", "/"]


def test_only_the_exact_ingest_paths_skip_django() -> None:
    reached_django: list[str] = []

    def django_stand_in(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        reached_django.append(environ["PATH_INFO"])
        start_response("204 No Content", [])
        return []

    app = IngestFirst(django_stand_in)
    for path in INGEST_PATHS:
        answer = call_wsgi(app, "POST", path, b"{}", {"Content-Type": JSON})
        assert (answer.status, answer.json()["code"]) == (401, "unauthorized"), path
    assert reached_django == []
    for path in DJANGO_PATHS:
        assert call_wsgi(app, "POST", path, b"{}", {"Content-Type": JSON}).status == 204
    assert reached_django == DJANGO_PATHS


def test_other_paths_are_answered_by_django(source: Source) -> None:
    health = call_wsgi(application, "GET", "/healthz")
    assert health.status == 200
    assert orjson.loads(health.body) == {"ok": True}
    # Django's CommonMiddleware sets Content-Length: a sign the middleware ran.
    assert health.header("Content-Length") == str(len(health.body))

    headers = {"Authorization": basic(source.write_key), "Content-Type": JSON}
    slash = call_wsgi(application, "POST", "/v1/track/", b'{"userId": "u1", "event": "E"}', headers)
    assert slash.status == 404
    assert slash.header("Content-Type") != JSON
    assert Event.objects.count() == 0


def test_a_host_not_allowed_is_refused_as_on_djangos_route(source: Source, settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["switchboard.example.com"]
    body = b'{"userId": "u1", "event": "E"}'
    headers = {"Authorization": basic(source.write_key), "Content-Type": JSON}
    refused = call_wsgi(
        application, "POST", "/v1/track", body, {**headers, "Host": "attacker.example"}
    )
    assert refused.status == 400, refused.body
    assert refused.json()["error"] == "The Host header names a host this server does not serve"
    accepted = call_wsgi(
        application, "POST", "/v1/track", body, {**headers, "Host": "switchboard.example.com"}
    )
    assert accepted.status == 200, accepted.body
    assert Event.objects.count() == 1
