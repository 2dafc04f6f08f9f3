"""0 lost when a web process is killed mid-batch.

The real server (``manage.py start``, two web processes) takes batches of 1,000 and 100 events
and single events from several client threads that behave like a Segment SDK: a request that
fails (connection reset or refused, 5xx, 429, timeout) is sent again with the same body, so the
same messageIds, until it gets a 200 in full. One of the web processes is SIGKILLed while it
holds unanswered batches; ``start`` then stops and exits non-zero
(docs/decisions/0019-web-server.md), and a new server is started on the same port, where the
clients' retries land.

A 200 promises the events were committed, so every event acknowledged before the kill must be
stored; every event sent must be stored exactly once; and each request's final answer must count
its events once, as stored or (when an earlier attempt was committed but its answer lost in the
kill) as duplicates.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from destinations.models import Source
from tests.helpers.retrying_clients import (
    ANSWERS_BEFORE_KILL,
    BATCHES_AT_KILL,
    Clients,
    assert_stored_once,
    serve_the_retries,
    unanswered_on,
    web_processes,
)
from tests.helpers.server import WebServer
from tests.helpers.worker import wait_until

pytestmark = pytest.mark.usefixtures("transactional_db")


def kill_mid_batch(server: WebServer, clients: Clients) -> tuple[int, set[int], set[str]]:
    """SIGKILL a web process while it holds ``BATCHES_AT_KILL`` unanswered batches: the killed
    pid, the client ports of those batches, and the messageIds acknowledged before the kill.

    A batch takes the server a few hundred milliseconds, the look-up to the kill well under
    one, so they are all but certainly still unanswered when the signal lands; the test checks
    afterwards that one of them was indeed cut off."""

    def batches_on_a_process() -> tuple[int, set[int], set[str]] | None:
        with clients.lock:
            acknowledged = set(clients.acknowledged)
        for pid in web_processes(server):
            ports = unanswered_on(pid, server.port)
            with clients.lock:
                carried = [(port, clients.in_flight.get(port)) for port in ports]
            batches = {port for port, request in carried if request is not None and request.batch}
            if len(batches) >= BATCHES_AT_KILL:
                return pid, batches, acknowledged
        return None

    pid, batches, acknowledged = wait_until(
        batches_on_a_process, 30, lambda: f"never {BATCHES_AT_KILL} batches on one process"
    )
    os.kill(pid, signal.SIGKILL)
    return pid, batches, acknowledged


def test_no_event_is_lost_when_a_web_process_is_killed_mid_batch(
    transactional_db: None, source: Source
) -> None:
    server = WebServer(workers=2).start()
    clients = Clients(server.port, source.write_key)
    try:
        clients.start()
        wait_until(lambda: clients.answers >= ANSWERS_BEFORE_KILL or clients.problems, 60)
        assert not clients.problems, clients.problems
        killed, cut_ports, acknowledged = kill_mid_batch(server, clients)
        killed_at = time.monotonic()
        # One web process gone, start stops the other and exits non-zero (ADR 19).
        wait_until(server.exited, 40, server.describe)
        code = server.stop()
        assert code not in (None, 0), f"start exited with {code}. {server.describe()}"
        server = serve_the_retries(server, clients)
    finally:
        clients.abandon.set()
        clients.stopping.set()
        server.stop()
    assert not clients.problems, f"{clients.problems}\n{server.describe()}"

    # The kill landed mid-batch: a batch the killed process held had its attempt cut off.
    cut = [
        (outcome, attempt)
        for outcome in clients.outcomes
        for attempt in outcome.attempts
        if attempt.client_port in cut_ports
        and attempt.started < killed_at
        and attempt.status is None
        and outcome.request.batch
    ]
    assert cut, f"no batch on process {killed} (client ports {cut_ports}) was cut off by the kill"

    assert_stored_once(clients, source, acknowledged)
