"""Ingest requests started on the web server's event loop (dashboard/project/loop_answers.py):
answered in order on a connection that pipelines them with other requests, answered 503 when
the writer does not come back in time (and the event still stored once it does), and answered
before a stopping server exits."""

from __future__ import annotations

import contextlib
import http.client
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator

import orjson
import psycopg
import pytest
from django.db import connection

from destinations.models import Event, IngestFailure, Source
from tests.helpers import worker
from tests.helpers.ingest import basic
from tests.helpers.server import HOST, WebServer

pytestmark = pytest.mark.django_db(transaction=True)

WRITER_TIMEOUT = 1.5


@pytest.fixture(scope="module")
def server(django_db_setup: None, django_db_blocker: object) -> Iterator[WebServer]:
    started = WebServer(env={"INGEST_WRITER_TIMEOUT_SECONDS": str(WRITER_TIMEOUT)})
    try:
        yield started.start()
    finally:
        started.stop()


def request_bytes(source: Source, path: str, document: object, *, method: str = "POST") -> bytes:
    body = orjson.dumps(document) if document is not None else b""
    return (
        f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: {basic(source.write_key)}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def read_answers(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """``count`` HTTP answers (each with a Content-Length) read in turn from one connection."""
    stream = sock.makefile("rb")
    answers = []
    for _ in range(count):
        status = int(stream.readline().split()[1])
        headers = http.client.parse_headers(stream)
        answers.append((status, stream.read(int(headers["Content-Length"]))))
    return answers


def track(message_id: str, **fields: object) -> dict[str, object]:
    return {"userId": "u-1", "event": "Signed Up", "messageId": message_id, **fields}


def batched(message_id: str) -> dict[str, object]:
    return track(message_id, type="track")


@contextlib.contextmanager
def events_table_locked() -> Iterator[None]:
    """Writes to the events table wait until the block ends (reads go on)."""
    if connection.vendor == "sqlite":
        holder = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    with psycopg.connect(worker.test_database_url()) as locker:
        locker.execute("LOCK TABLE destinations_event IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            locker.rollback()


def test_pipelined_requests_are_answered_in_order(server: WebServer, source: Source) -> None:
    pipelined = b"".join(
        [
            request_bytes(source, "/v1/track", track("p-1")),
            request_bytes(source, "/healthz", None, method="GET"),
            request_bytes(source, "/v1/track", {"userId": "u-1", "messageId": "p-bad"}),
            request_bytes(source, "/v1/batch", {"batch": [batched("p-2"), batched("p-3")]}),
            request_bytes(source, "/v1/track", track("p-1")),
        ]
    )
    with socket.create_connection((HOST, server.port), timeout=10) as sock:
        sock.sendall(pipelined)  # all five before any answer
        answers = read_answers(sock, 5)
    statuses = [status for status, _ in answers]
    assert statuses == [200, 200, 400, 200, 200], answers
    assert orjson.loads(answers[0][1]) == {"success": True, "stored": 1, "duplicates": 0}
    assert b"event" in answers[2][1]  # the track without its event name, refused
    assert orjson.loads(answers[3][1])["stored"] == 2
    assert orjson.loads(answers[4][1]) == {"success": True, "stored": 0, "duplicates": 1}
    stored = set(Event.objects.filter(source=source).values_list("message_id", flat=True))
    assert stored == {"p-1", "p-2", "p-3"}
    assert IngestFailure.objects.filter(source=source, endpoint="track").count() == 1


def test_a_large_batch_between_small_requests_is_answered_in_turn(
    server: WebServer, source: Source
) -> None:
    """Bodies past 64 KB are validated on a thread, the others on the loop: the answers of one
    connection still come back in order."""
    padding = "x" * 1000
    large = [batched(f"big-{n}") | {"properties": {"padding": padding}} for n in range(120)]
    pipelined = b"".join(
        [
            request_bytes(source, "/v1/track", track("around-1")),
            request_bytes(source, "/v1/batch", {"batch": large}),
            request_bytes(source, "/v1/track", track("around-2")),
        ]
    )
    assert len(pipelined) > 120_000
    with socket.create_connection((HOST, server.port), timeout=10) as sock:
        sock.sendall(pipelined)
        answers = read_answers(sock, 3)
    assert [status for status, _ in answers] == [200, 200, 200], answers
    assert [orjson.loads(body)["stored"] for _, body in answers] == [1, 120, 1]
    assert Event.objects.filter(source=source).count() == 122


def test_a_writer_that_does_not_come_back_in_time_is_answered_503_and_stores_later(
    server: WebServer, source: Source
) -> None:
    with socket.create_connection((HOST, server.port), timeout=20) as sock:
        with events_table_locked():
            started = time.monotonic()
            sock.sendall(request_bytes(source, "/v1/track", track("late-1")))
            [(status, body)] = read_answers(sock, 1)
            waited = time.monotonic() - started
            assert status == 503, body
            assert WRITER_TIMEOUT <= waited < WRITER_TIMEOUT + 5
            assert not Event.objects.filter(message_id="late-1").exists()
        # The writer goes on once the table is free; the SDK's retry is then a duplicate, and
        # the connection answers it (the late commit does not answer twice).
        worker.wait_until(
            lambda: Event.objects.filter(message_id="late-1").exists(), 20, lambda: "not stored"
        )
        sock.sendall(request_bytes(source, "/v1/track", track("late-1")))
        [(status, body)] = read_answers(sock, 1)
    assert status == 200
    assert orjson.loads(body) == {"success": True, "stored": 0, "duplicates": 1}


def test_a_stopping_server_answers_the_writes_it_has_taken(
    django_db_setup: None, source: Source
) -> None:
    stopping = WebServer(workers=1).start()
    try:
        with socket.create_connection((HOST, stopping.port), timeout=20) as sock:
            with events_table_locked():
                sock.sendall(request_bytes(source, "/v1/track", track("stop-1")))
                time.sleep(0.5)  # read by the server, its write waiting for the table
                stopper = threading.Thread(target=stopping.stop)
                stopper.start()
                time.sleep(1)
            [(status, body)] = read_answers(sock, 1)
        stopper.join(30)
    finally:
        stopping.stop()
    assert status == 200, body
    assert Event.objects.filter(message_id="stop-1").exists()
