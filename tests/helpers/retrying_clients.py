"""SDK-like clients for the kill tests: threads sending single events and batches to the real
server, each request retried with the same body (so the same messageIds) until it is answered 200,
as Segment's SDKs do; and what the tests look up about the server's processes and connections.
"""

from __future__ import annotations

import http.client
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from tests.helpers.ingest import basic
from tests.helpers.server import HOST, WebServer
from tests.helpers.worker import wait_until

THREADS = 8
BIG, MEDIUM = 1000, 100
# Each thread's requests in turn, started at a different place per thread: at any moment some
# threads are sending big batches, others small ones and single events.
KINDS = ("big", "single", "medium", "single")
# Answers wanted before the kill (acknowledgements the kill must not undo), and after the
# restart (the clients' retries taken by the new server).
ANSWERS_BEFORE_KILL = 8
ANSWERS_AFTER_RESTART = 8
# Unanswered batches the killed process must hold: a batch answered in the instant between the
# look-up and the signal would not be cut off, two at once practically never are.
BATCHES_AT_KILL = 2
RETRY_SECONDS = 0.1  # a fixed short backoff: the SDK's is exponential, but the test must be quick
# A request still unanswered this long after the clients started is a hang.
CLIENT_DEADLINE_SECONDS = 90.0
SOCKET_TIMEOUT_SECONDS = 30.0


@dataclass(eq=False)
class Request:
    path: str
    body: bytes
    ids: list[str]

    @property
    def batch(self) -> bool:
        return self.path == "/v1/batch"


@dataclass
class Attempt:
    started: float
    started_at: datetime  # wall clock, to compare with the received_at the server stores
    client_port: int | None
    status: int | None  # None: the connection failed
    text: str = ""  # the answer's body, or what went wrong


@dataclass(eq=False)
class Outcome:
    request: Request
    attempts: list[Attempt] = field(default_factory=list)
    answer: dict[str, Any] | None = None  # the final 200's body


class Clients:
    """The SDK side: ``THREADS`` threads sending until told to stop, each request retried with
    the same body until it is answered 200."""

    def __init__(self, port: int, write_key: str) -> None:
        self.port = port
        self.headers = {"Authorization": basic(write_key), "Content-Type": "application/json"}
        self.run_id = f"kill-{uuid.uuid4().hex[:12]}"
        self.lock = threading.Lock()
        self.outcomes: list[Outcome] = []
        self.acknowledged: set[str] = set()
        self.answers = 0
        # Client port -> the request whose attempt is on that connection now: the test kills a
        # web process only while its connections carry batches.
        self.in_flight: dict[int, Request] = {}
        self.problems: list[str] = []
        self.stopping = threading.Event()  # send no new request; finish the current one
        self.abandon = threading.Event()  # the test failed: stop retrying too
        self.deadline = time.monotonic() + CLIENT_DEADLINE_SECONDS
        self.threads = [
            threading.Thread(target=self.run, args=(number,), daemon=True)
            for number in range(THREADS)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(max(0.0, self.deadline - time.monotonic()) + SOCKET_TIMEOUT_SECONDS)
        alive = [thread.name for thread in self.threads if thread.is_alive()]
        assert not alive, f"clients still waiting for an answer: {alive}"

    def run(self, number: int) -> None:
        sequence = 0
        while not self.stopping.is_set() and not self.problems:
            kind = KINDS[(number + sequence) % len(KINDS)]
            self.send(self.request(number, sequence, kind))
            sequence += 1

    def request(self, number: int, sequence: int, kind: str) -> Request:
        count = {"big": BIG, "medium": MEDIUM, "single": 1}[kind]
        ids = [f"{self.run_id}-{number}-{sequence}-{index}" for index in range(count)]
        events = [
            {
                "type": "track",
                "event": "Report Exported",
                "userId": f"user-{number}",
                "messageId": message_id,
                "properties": {"rows": index},
            }
            for index, message_id in enumerate(ids)
        ]
        if kind == "single":
            return Request("/v1/track", orjson.dumps(events[0]), ids)
        return Request("/v1/batch", orjson.dumps({"batch": events}), ids)

    def send(self, request: Request) -> None:
        outcome = Outcome(request)
        with self.lock:
            self.outcomes.append(outcome)
        while True:
            attempt = self.attempt(request)
            outcome.attempts.append(attempt)
            if attempt.status == 200:
                try:
                    answer = orjson.loads(attempt.text)
                except orjson.JSONDecodeError:
                    self.problems.append(f"{request.path} answered 200: {attempt.text[:2000]!r}")
                    return
                with self.lock:
                    outcome.answer = answer
                    self.acknowledged.update(request.ids)
                    self.answers += 1
                return
            if attempt.status is not None and attempt.status < 500 and attempt.status != 429:
                # The SDK drops a request refused as invalid: nothing here may be refused.
                self.problems.append(f"{request.path} answered {attempt.status}: {attempt.text}")
                return
            if self.abandon.is_set():
                return
            if time.monotonic() > self.deadline:
                self.problems.append(f"{request.path} unanswered after {len(outcome.attempts)}")
                return
            time.sleep(RETRY_SECONDS)

    def attempt(self, request: Request) -> Attempt:
        """One POST on a new connection (either web process may take it)."""
        connection = http.client.HTTPConnection(HOST, self.port, timeout=SOCKET_TIMEOUT_SECONDS)
        attempt = Attempt(time.monotonic(), datetime.now(UTC), client_port=None, status=None)
        try:
            connection.connect()
            assert connection.sock is not None
            attempt.client_port = int(connection.sock.getsockname()[1])
            with self.lock:
                self.in_flight[attempt.client_port] = request
            connection.request("POST", request.path, request.body, self.headers)
            response = connection.getresponse()
            text = response.read().decode(errors="replace")
            # Answered only once the whole body arrived: a process killed between writing the
            # headers of its 200 and its body leaves the client with an incomplete answer, which
            # the SDK retries like any other failure.
            attempt.status, attempt.text = response.status, text
        except (OSError, http.client.HTTPException) as error:
            attempt.text = f"{type(error).__name__}: {error}"
        finally:
            connection.close()
            with self.lock:
                if attempt.client_port is not None:
                    self.in_flight.pop(attempt.client_port, None)
        return attempt


def web_processes(server: WebServer) -> list[int]:
    """The web server processes ``start`` runs (its ``dashboard.project.webserver`` children)."""
    return children_running(server, b"dashboard.project.webserver")


def children_running(server: WebServer, module: bytes) -> list[int]:
    """The processes ``start`` runs with ``python -m module``."""
    assert server.process is not None
    tasks = Path(f"/proc/{server.process.pid}/task")
    children = {int(pid) for f in tasks.glob("*/children") for pid in f.read_text().split()}
    found = []
    for pid in sorted(children):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if module in argv:
            found.append(pid)
    return found


def unanswered_on(pid: int, server_port: int) -> set[int]:
    """The client ports of the connections ``pid`` has accepted on ``server_port`` whose answer
    has not reached the client: open on the process's side (its sockets' inodes, looked up in
    the kernel's TCP table) with nothing waiting to be read on the client's."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    accepted: set[int] = set()
    unread: dict[int, int] = {}  # client port -> bytes arrived that the client has not read
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)
        if fields[3] != "01":  # not ESTABLISHED
            continue
        if local == server_port and fields[9] in inodes:
            accepted.add(remote)
        elif remote == server_port:
            unread[local] = int(fields[4].split(":")[1], 16)
    return {port for port in accepted if unread.get(port) == 0}


def assert_stored_once(
    clients: Clients, source: Any, acknowledged: set[str], *, counts_exact: bool = True
) -> None:
    """Every event acknowledged before the kill, and every event sent, is stored exactly once;
    each request's final answer counts its events once. With ``counts_exact``, also that the
    answer says truly which attempt stored them (see below)."""
    from destinations.models import Event

    sent = [message_id for outcome in clients.outcomes for message_id in outcome.request.ids]
    assert len(sent) == len(set(sent))
    rows = list(
        Event.objects.filter(source=source, message_id__startswith=clients.run_id).values_list(
            "message_id", "received_at"
        )
    )
    received_at = dict(rows)
    # A 200 before the kill meant committed: nothing it acknowledged went with the process.
    assert len(acknowledged) >= ANSWERS_BEFORE_KILL  # at least one id per answer
    lost = acknowledged - received_at.keys()
    assert not lost, f"{len(lost)} events acknowledged before the kill lost: {sorted(lost)[:5]}"
    # Every event sent is stored, once.
    missing = set(sent) - received_at.keys()
    assert not missing, f"{len(missing)} of {len(sent)} events lost: {sorted(missing)[:5]}"
    assert received_at.keys() == set(sent)
    assert len(rows) == len(sent), f"{len(rows)} rows for {len(sent)} messageIds"

    # Each final answer counts each of its events once, and truly. A request's events are
    # committed in one transaction, by one attempt (its rows share that attempt's received_at):
    # the final one, which answers them all as stored; or, when an attempt cut off by the kill
    # had committed them before its answer was lost, an earlier one, and the final answer counts
    # them all as duplicates. (So the stored counts add up to the rows less such requests'.)
    for outcome in clients.outcomes:
        answer, count = outcome.answer, len(outcome.request.ids)
        assert answer is not None and answer["success"] is True, answer
        if outcome.request.batch:
            assert answer["accepted"] == count and answer["failed"] == [], answer
        stored_at = {received_at[message_id] for message_id in outcome.request.ids}
        assert len(stored_at) == 1, f"{outcome.request.path}: stored by several attempts"
        (committed_at,) = stored_at
        final = outcome.attempts[-1].started_at
        if answer["duplicates"] == 0:
            assert answer["stored"] == count and committed_at >= final, (answer, committed_at)
        else:
            assert (answer["stored"], answer["duplicates"]) == (0, count), answer
            # Without ``counts_exact`` (the writer process killed), an attempt whose group the
            # writer had committed before it died is stored again by its web process, which
            # finds the events there and counts them as duplicates.
            if counts_exact:
                assert committed_at < final, (answer, committed_at, final)


def serve_the_retries(
    old: WebServer, clients: Clients, env: dict[str, str] | None = None
) -> WebServer:
    """A new server on ``old``'s port (stopped), where the clients' retries land: returned once it
    has answered ``ANSWERS_AFTER_RESTART`` more requests and the clients have stopped."""
    with clients.lock:
        answers_at_restart = clients.answers
    server = WebServer(workers=2, port=old.port, env=env).start()
    try:
        wait_until(
            lambda: (
                clients.answers >= answers_at_restart + ANSWERS_AFTER_RESTART or clients.problems
            ),
            60,
            server.describe,
        )
        clients.stopping.set()
        clients.join()
    except BaseException:
        server.stop()
        raise
    return server
