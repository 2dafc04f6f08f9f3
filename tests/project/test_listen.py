"""The web processes' listening sockets (``webserver.listen_each``): on Linux one per process on
the same port, so the kernel spreads new connections across the processes, and a port that
anything else listens on is refused rather than shared."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator

import pytest

from dashboard.project.webserver import listen, listen_each

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="SO_REUSEPORT spreads connections on Linux"
)


@pytest.fixture
def opened() -> Iterator[list[socket.socket]]:
    sockets: list[socket.socket] = []
    yield sockets
    for sock in sockets:
        sock.close()


def accepted_by(sock: socket.socket) -> int:
    sock.setblocking(False)
    count = 0
    while True:
        try:
            connection, _ = sock.accept()
        except BlockingIOError:
            return count
        connection.close()
        count += 1


def test_each_process_gets_a_socket_and_new_connections_reach_all_of_them(
    opened: list[socket.socket],
) -> None:
    sockets = listen_each("127.0.0.1", 0, 2)
    opened.extend(sockets)
    assert len({sock.fileno() for sock in sockets}) == 2
    port = sockets[0].getsockname()[1]
    assert sockets[1].getsockname()[1] == port
    for _ in range(32):
        client = socket.create_connection(("127.0.0.1", port))
        opened.append(client)
    # By a hash of each connection's addresses: 32 connections all on one of two sockets
    # would happen once in 2**31 runs.
    counts = [accepted_by(sock) for sock in sockets]
    assert sum(counts) == 32
    assert all(count > 0 for count in counts), counts


def test_one_process_listens_on_one_socket(opened: list[socket.socket]) -> None:
    sockets = listen_each("127.0.0.1", 0, 1)
    opened.extend(sockets)
    assert len(sockets) == 1


def test_a_port_something_else_listens_on_is_refused(opened: list[socket.socket]) -> None:
    other = listen("127.0.0.1", 0)
    opened.append(other)
    with pytest.raises(OSError):
        listen_each("127.0.0.1", other.getsockname()[1], 2)


def test_a_port_another_server_shares_is_refused_not_joined(opened: list[socket.socket]) -> None:
    first = listen_each("127.0.0.1", 0, 2)
    opened.extend(first)
    with pytest.raises(OSError):
        listen_each("127.0.0.1", first[0].getsockname()[1], 2)
    # The control: without the check, a socket that shares the port joins the group.
    joined = listen("127.0.0.1", first[0].getsockname()[1], share_port=True)
    opened.append(joined)
