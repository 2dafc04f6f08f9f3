"""Slow or malicious clients cannot stall the web server that ``manage.py start`` runs.

Each test runs the real server (``start --no-worker``, two processes) against the test database
and talks to it over loopback sockets: clients that send their headers and withhold the body,
clients that trickle it in, and ordinary requests that must be answered meanwhile.
"""

from __future__ import annotations

import errno
import http.client
import socket
import time
from collections.abc import Iterator

import orjson
import pytest

from destinations.models import Event, Source
from destinations.sources import source_create
from tests.helpers.ingest import basic
from tests.helpers.server import HOST, WebServer
from tests.helpers.worker import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

# Short, so that a stalled client is seen to go within the test; the default is 30 s.
CLIENT_TIMEOUT = 6
WITHHOLDERS = 120  # more than the server's threads (2 processes x 8) many times over


@pytest.fixture(scope="module")
def server(django_db_setup: None, django_db_blocker: object) -> Iterator[WebServer]:
    started = WebServer(env={"SWITCHBOARD_CLIENT_TIMEOUT_SECONDS": str(CLIENT_TIMEOUT)})
    try:
        yield started.start()
    finally:
        started.stop()


def track_body(message_id: str) -> bytes:
    return orjson.dumps({"userId": "u-1", "event": "Signed Up", "messageId": message_id})


def request_head(source: Source, length: int, *, path: str = "/v1/track") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: {basic(source.write_key)}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def withhold(port: int, source: Source, count: int) -> list[socket.socket]:
    """``count`` connections that declare a 1000-byte body and never send it."""
    held = []
    for _ in range(count):
        sock = socket.create_connection((HOST, port), timeout=5)
        sock.sendall(request_head(source, 1000))
        held.append(sock)
    return held


def still_open(sock: socket.socket) -> bool:
    """Connected, and the server has sent nothing on it (no answer, no close)."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except OSError as exc:
        if exc.errno in (errno.ECONNRESET, errno.EPIPE):
            return False
        raise
    return False  # b"": closed; anything else: an answer


def call(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """One request on a new connection; fails if there is no answer within 5 s."""
    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def track(port: int, source: Source, message_id: str) -> tuple[int, bytes]:
    headers = {"Authorization": basic(source.write_key), "Content-Type": "application/json"}
    return call(port, "POST", "/v1/track", track_body(message_id), headers)


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def test_withheld_bodies_do_not_stall_the_server(server: WebServer) -> None:
    source = source_create(name="Crowded")
    held = withhold(server.port, source, WITHHOLDERS)
    try:
        # Operators and SDKs are answered while every withheld request is still connected.
        status, body = call(server.port, "GET", "/healthz")
        assert (status, orjson.loads(body)) == (200, {"ok": True})
        status, body = track(server.port, source, "through-the-crowd")
        assert status == 200, body
        assert orjson.loads(body)["stored"] == 1
        assert Event.objects.filter(source=source, message_id="through-the-crowd").exists()
        status, body = call(server.port, "GET", "/login/")
        assert status == 200 and b"<form" in body
        status, body = call(server.port, "GET", "/static/dashboard/app.css")
        assert status == 200 and body
        # The ingest size limit holds: over 500 KB is refused with ingest's own message.
        headers = {"Authorization": basic(source.write_key), "Content-Type": "application/json"}
        oversized = b'{"userId": "u", "event": "Big", "properties": {"x": "%s"}}' % (b"x" * 600_000)
        status, body = call(server.port, "POST", "/v1/track", oversized, headers)
        assert status == 413 and b"500 KB" in body
        assert not Event.objects.filter(source=source, event="Big").exists()
        # All of this happened while the withheld requests held their connections.
        assert all(still_open(sock) for sock in held), server.describe()
    finally:
        close_all(held)


def test_a_stalled_client_is_disconnected(server: WebServer) -> None:
    source = source_create(name="Stalled")
    held = withhold(server.port, source, 20)
    try:
        # Closed once idle for the client timeout (checked every half timeout): well in bounds.
        wait_until(
            lambda: not any(still_open(sock) for sock in held),
            timeout=3 * CLIENT_TIMEOUT + 5,
            explain=lambda: f"{sum(map(still_open, held))} of 20 still connected",
        )
    finally:
        close_all(held)
    assert not Event.objects.filter(source=source).exists()


def test_a_slow_but_complete_body_is_accepted(server: WebServer) -> None:
    source = source_create(name="Trickling")
    held = withhold(server.port, source, WITHHOLDERS)  # the slow client is not alone
    body = track_body("trickled")
    try:
        with socket.create_connection((HOST, server.port), timeout=10) as sock:
            sock.sendall(request_head(source, len(body)))
            pieces = [body[i : i + 20] for i in range(0, len(body), 20)][:3]
            pieces.append(body[sum(map(len, pieces)) :])
            for piece in pieces:  # each pause well within the client timeout
                time.sleep(1)
                sock.sendall(piece)
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert Event.objects.filter(source=source, message_id="trickled").exists()
    finally:
        close_all(held)


def test_chunked_bodies_are_accepted(server: WebServer) -> None:
    """SDKs that stream their body (Transfer-Encoding: chunked, no Content-Length)."""
    source = source_create(name="Chunked")
    body = track_body("chunked")
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:30], body[30:]))
    with socket.create_connection((HOST, server.port), timeout=10) as sock:
        sock.sendall(
            (
                f"POST /v1/track HTTP/1.1\r\nHost: {HOST}\r\n"
                f"Authorization: {basic(source.write_key)}\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            ).encode()
            + chunks
            + b"0\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert Event.objects.filter(source=source, message_id="chunked").exists()


def test_sigterm_stops_the_server_while_clients_withhold_bodies(transactional_db: None) -> None:
    own = WebServer().start()
    source = source_create(name="Stopping")
    held = withhold(own.port, source, 40)
    try:
        assert own.process is not None
        started = time.monotonic()
        code = own.stop(timeout=60)
        stopped_after = time.monotonic() - started
        assert code == 0, own.describe()
        # Generous: the grace period is for requests already read, which these are not.
        assert stopped_after < 15, f"took {stopped_after:.1f} s to stop"
        assert not any(still_open(sock) for sock in held)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((HOST, own.port), timeout=2).close()
    finally:
        close_all(held)
        own.stop()
