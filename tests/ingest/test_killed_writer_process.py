"""0 lost when the ingest writer process is killed while it stores the web processes' groups.

The real server (``manage.py start``, two web processes and, asked for on both databases here,
the writer process) takes batches and single events from SDK-like clients that retry until
answered (tests/helpers/retrying_clients.py). The writer process is SIGKILLed while batches are
unanswered: each web process then stores its groups itself (the group in flight again, since
whether the writer committed it is not known), ``start`` notices the death and stops, exiting
non-zero, and a new server on the same port takes the clients' retries.

A 200 still means committed: every event acknowledged before the kill is stored, every event sent
is stored once, and every final answer counts each of its events once.
"""

from __future__ import annotations

import os
import signal

import pytest

from destinations.models import Source
from tests.helpers.retrying_clients import (
    ANSWERS_BEFORE_KILL,
    Clients,
    assert_stored_once,
    children_running,
    serve_the_retries,
    unanswered_on,
    web_processes,
)
from tests.helpers.server import WebServer
from tests.helpers.worker import wait_until

pytestmark = pytest.mark.usefixtures("transactional_db")

WRITER = b"dashboard.project.ingest_writer"
WITH_WRITER = {"INGEST_WRITER_PROCESS": "true"}


def batches_unanswered(server: WebServer, clients: Clients) -> bool:
    for pid in web_processes(server):
        ports = unanswered_on(pid, server.port)
        with clients.lock:
            if any(clients.in_flight.get(port) for port in ports):
                return True
    return False


def traffic_with_batches_in_flight(source: Source) -> tuple[WebServer, int, Clients]:
    """The server with its writer process, the clients sending to it, once some of their
    requests have been answered and batches are on their way: the server, the writer's pid,
    the clients."""
    server = WebServer(workers=2, env=WITH_WRITER).start()
    (writer,) = children_running(server, WRITER)
    clients = Clients(server.port, source.write_key)
    try:
        clients.start()
        wait_until(lambda: clients.answers >= ANSWERS_BEFORE_KILL or clients.problems, 60)
        assert not clients.problems, clients.problems
        wait_until(lambda: batches_unanswered(server, clients), 30)
    except BaseException:
        clients.abandon.set()
        clients.stopping.set()
        server.stop()
        raise
    return server, writer, clients


def test_no_event_is_lost_when_the_writer_process_is_killed(
    transactional_db: None, source: Source
) -> None:
    server, writer, clients = traffic_with_batches_in_flight(source)
    try:
        with clients.lock:
            acknowledged = set(clients.acknowledged)
        os.kill(writer, signal.SIGKILL)
        wait_until(server.exited, 40, server.describe)
        log = server.log()
        code = server.stop()
        assert code not in (None, 0), f"start exited with {code}. {server.describe()}"
        assert "The ingest writer exited" in log, log[-4000:]
        # The batches that came after (big ones keep coming) were stored by the web processes.
        assert "the writer process is gone" in log, log[-4000:]
        server = serve_the_retries(server, clients, env=WITH_WRITER)
        assert len(children_running(server, WRITER)) == 1
    finally:
        clients.abandon.set()
        clients.stopping.set()
        server.stop()
    assert not clients.problems, f"{clients.problems}\n{server.describe()}"
    assert_stored_once(clients, source, acknowledged, counts_exact=False)


def test_the_writer_process_outlives_the_web_processes_when_start_is_stopped(
    transactional_db: None, source: Source
) -> None:
    """SIGTERM to ``start`` mid-traffic: the web processes finish the requests they read, the
    writer stores them and stops once they are gone, and ``start`` exits 0 with nothing left."""
    server, writer, clients = traffic_with_batches_in_flight(source)
    try:
        clients.stopping.set()
        with clients.lock:
            acknowledged = set(clients.acknowledged)
        code = server.stop()
        assert code == 0, server.describe()
        assert not os.path.exists(f"/proc/{writer}"), "the writer process outlived start"
        assert "Traceback" not in server.log(), server.describe()
        server = WebServer(workers=2, port=server.port, env=WITH_WRITER).start()
        clients.join()
    finally:
        clients.abandon.set()
        clients.stopping.set()
        server.stop()
    assert not clients.problems, f"{clients.problems}\n{server.describe()}"
    assert_stored_once(clients, source, acknowledged)
