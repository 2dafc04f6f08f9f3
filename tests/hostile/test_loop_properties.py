"""Hostile requests to the web server as operators run it, where ingest is read, validated and
answered on the event loop (dashboard/project/loop_answers.py): every request gets a precise
answer under 500, and the loop goes on serving the connection and everyone else."""

from __future__ import annotations

import http.client
from collections.abc import Iterator

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from destinations.models import Event, Source
from tests.helpers.ingest import basic
from tests.helpers.server import HOST, WebServer
from tests.hostile import strategies as gen

pytestmark = pytest.mark.django_db(transaction=True)

PATHS = gen.INGEST_PATHS
ANSWERS = (200, 400, 401, 403, 413, 415, 429)
# A server per module and one source per test: the examples share both (hence the check off).
SHARED = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)


@pytest.fixture(scope="module")
def server(django_db_setup: None, django_db_blocker: object) -> Iterator[WebServer]:
    started = WebServer(workers=1)
    try:
        yield started.start()
    finally:
        started.stop()


def send(
    connection: http.client.HTTPConnection, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, bytes]:
    try:
        connection.request("POST", path, body=body, headers=headers)
    except ValueError:
        assume(False)  # a header no HTTP client can send (a line break in it)
    response = connection.getresponse()
    return response.status, response.read()


def still_serving(server: WebServer, source: Source, message_id: str) -> None:
    """A well-formed event on the same server is stored and answered 200."""
    connection = http.client.HTTPConnection(HOST, server.port, timeout=10)
    try:
        headers = {"Authorization": basic(source.write_key), "Content-Type": "application/json"}
        body = orjson.dumps({"userId": "u", "event": "After", "messageId": message_id})
        status, answer = send(connection, "/v1/track", body, headers)
    finally:
        connection.close()
    assert status == 200, answer
    assert Event.objects.filter(source=source, message_id=message_id).exists()


@SHARED
@given(**gen.hostile_requests)
def test_any_request_on_the_loop_gets_a_precise_answer(
    server: WebServer,
    source: Source,
    authorization: str,
    content_type: str,
    encoding: str,
    body: bytes,
    path: str,
) -> None:
    headers = {"Authorization": authorization, "Content-Type": content_type}
    if encoding:
        headers["Content-Encoding"] = encoding
    connection = http.client.HTTPConnection(HOST, server.port, timeout=10)
    try:
        status, answer = send(connection, f"/v1/{path}", body, headers)
    finally:
        connection.close()
    assert status in ANSWERS, (status, answer[:300])
    if status == 200:
        return
    if answer.startswith(b"Bad Request"):
        # waitress's parser refused the request itself (a control character in a header),
        # before any application saw it: its own 400, naming what was wrong.
        assert status == 400 and len(answer.splitlines()) > 1, answer
        return
    assert orjson.loads(answer)["error"]


@SHARED
@given(body=gen.raw_bodies, path=st.sampled_from(PATHS), number=st.integers(0, 10**9))
def test_hostile_bodies_with_a_valid_key_leave_the_loop_serving(
    server: WebServer, source: Source, body: bytes, path: str, number: int
) -> None:
    headers = {"Authorization": basic(source.write_key), "Content-Type": "application/json"}
    connection = http.client.HTTPConnection(HOST, server.port, timeout=10)
    try:
        status, answer = send(connection, f"/v1/{path}", body, headers)
        assert status in (200, 400, 413), (status, answer[:300])
        # The same kept-alive connection answers its next request.
        follow = orjson.dumps({"userId": "u", "event": "Next", "messageId": f"next-{number}"})
        assert send(connection, "/v1/track", follow, headers)[0] == 200
    finally:
        connection.close()
    still_serving(server, source, f"after-{number}")
    assert "Traceback" not in server.log()
