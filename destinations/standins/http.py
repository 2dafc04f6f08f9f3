"""What the fake APIs share: a threaded HTTP server on loopback, a log of the requests it
received that tests can wait on, and a queue of faults switched on at runtime (error answers,
slow answers, dropped or refused connections).

A fake subclasses ``FakeHttpServer``, implements ``_serve(handler)`` and, in it, calls
``_arrive`` (log the request, take its fault), ``_fault_answered`` (act the fault out) and
``_reply``. Its public fault methods name their filter after what the service routes on
(a path for a REST API, an operation for a GraphQL one) and pass it as the fault's ``scope``.
"""

from __future__ import annotations

import json
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Literal, Self, TypeVar


@dataclass
class RecordedRequest:
    """One request as the fake received it. ``status`` is filled in once it is answered."""

    method: str
    path: str  # the endpoint: "/identify-user" for Refiner (no /v1 prefix), "/graphql" for Kana
    headers: dict[str, str]
    query: dict[str, str]
    body: Any  # parsed JSON or form fields; None when the body could not be parsed
    raw_body: bytes
    received_at: float
    fault: str | None = None
    status: int | None = None

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)

    def summary(self) -> str:
        body = self.raw_body[:120].decode("utf-8", "replace")
        return f"{self.method} {self.path} -> {self.status} fault={self.fault} body={body}"


@dataclass
class Fault:
    """A misbehaviour for the next ``remaining`` matching requests (None: until cleared)."""

    kind: Literal["status", "hang", "drop", "truncate"]
    scope: str | None  # the path or operation it is limited to; None: every request
    remaining: int | None
    status: int = 500
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    hits: int = 0
    name: str | None = None  # what the request log calls it, when the kind says too little

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return f"status {self.status}" if self.kind == "status" else self.kind


class ApiError(Exception):
    """An error answer, raised anywhere in request handling and sent as-is."""

    def __init__(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status, body)
        self.status, self.body, self.headers = status, body, headers or {}


# --- the server -----------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # HTTP/1.0 closes the connection after every answer. With no kept-alive connections,
    # refuse_connections() really refuses the next request, even from a pooled Session.
    protocol_version = "HTTP/1.0"
    timeout = 10  # a client that never sends its body cannot pin a thread for ever

    def do_GET(self) -> None:
        self.server.fake._serve(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keeps pytest output readable; the fake records requests instead


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True  # rebind the same port right after refuse_connections()
    # socketserver's default backlog of 5 resets connections when many senders start at once.
    request_queue_size = 128
    daemon_threads = True  # a handler in a timeout fault must not hold up shutdown

    def __init__(self, address: tuple[str, int], fake: FakeHttpServer[Any]) -> None:
        self.fake = fake
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, a DNS call loopback does not need.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.socket.getsockname()[:2]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or hang up before the answer are expected, not failures.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


Handler = BaseHTTPRequestHandler
R = TypeVar("R", bound=RecordedRequest)


class FakeHttpServer(Generic[R]):
    """A server on ``http://<host>:<port>``; start it with ``with`` or start().

    The port is chosen on first start and kept, so refuse_connections() then
    accept_connections() brings the fake back where clients expect it.
    """

    service = "HTTP"  # names the fake in wait_for's failure message

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._lock = threading.RLock()
        self._arrived = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._received: list[R] = []
        self._faults: list[Fault] = []

    # --- lifecycle ---

    def start(self) -> Self:
        self._stopping.clear()
        self._listen()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a timeout fault
        self._close_listener()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def listening(self) -> bool:
        return self._httpd is not None

    def refuse_connections(self) -> None:
        """Stop listening: connecting fails with "connection refused" until accept_connections()."""
        self._close_listener()

    def accept_connections(self) -> None:
        """Listen again, on the same port."""
        self._listen()

    def _listen(self) -> None:
        if self._httpd is not None:
            return
        self._httpd = _Server((self.host, self.port), self)
        self.port = self._httpd.server_port  # port 0 becomes the ephemeral port, kept for good
        # A short poll interval keeps shutdown (and refuse_connections) fast.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def _close_listener(self) -> None:
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()  # closes the listening socket: new connections are refused
        if thread is not None:
            thread.join()

    # --- faults ---

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _add_fault(self, fault: Fault) -> Fault:
        if fault.remaining is not None and fault.remaining < 1:
            raise ValueError("times must be at least 1, or None for until cleared")
        with self._lock:
            self._faults.append(fault)  # first added, first applied: faults can be queued
        return fault

    def _take_fault(self, scope: str | None) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.scope is None or fault.scope == scope:
                    fault.hits += 1
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    # --- recording ---

    @property
    def received(self) -> list[R]:
        with self._lock:
            return list(self._received)

    def clear(self) -> None:
        """Forget recorded requests (stored data and faults stay)."""
        with self._lock:
            self._received.clear()

    def _wait_for(
        self,
        what: int | Callable[[R], bool],
        timeout: float,
        selected: Callable[[R], bool],
        selection: str,
    ) -> list[R]:
        """Wait until ``what`` requests (or one matching ``what``) among those ``selected``
        arrived; return the matches. Raises AssertionError listing everything received."""

        def matches() -> list[R]:
            found = [r for r in self._received if selected(r)]
            return found if isinstance(what, int) else [r for r in found if what(r)]

        count = what if isinstance(what, int) else 1
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(found := matches()) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = "\n  ".join(r.summary() for r in self._received) or "(nothing)"
                    raise AssertionError(
                        f"fake {self.service}: wanted {what!r} ({selection}) within {timeout}s, "
                        f"received:\n  {seen}"
                    )
                self._arrived.wait(left)
            return found

    # --- serving ---

    def _serve(self, handler: Handler) -> None:
        raise NotImplementedError

    def _arrive(self, record: R, scope: str | None) -> Fault | None:
        """Log ``record`` and take the fault that applies to it, if any."""
        fault = self._take_fault(scope)
        with self._arrived:
            record.fault = fault.label if fault else None
            self._received.append(record)
            self._arrived.notify_all()
        return fault

    def _fault_answered(self, handler: Handler, record: R, fault: Fault | None) -> bool:
        """Act ``fault`` out; True when the request must get no normal answer after it."""
        if fault is None or fault.kind == "truncate":
            return False  # a truncated answer is the normal one, cut short by _reply
        if fault.kind == "status":
            self._reply(handler, record, fault.status, fault.body, fault.headers)
            return True
        if fault.kind == "drop":
            handler.close_connection = True  # the server closes the socket with nothing sent
            return True
        return self._stopping.wait(fault.seconds)  # a hang: stopped meanwhile means no answer

    def _reply(
        self,
        handler: Handler,
        record: R,
        status: int,
        body: dict[str, Any],
        headers: dict[str, str],
        *,
        truncate: bool = False,
    ) -> None:
        with self._arrived:
            record.status = status  # before writing: the client may check as soon as it reads
            self._arrived.notify_all()  # wait_for predicates may look at the status
        send_json(handler, status, body, headers, truncate=truncate)


def read_body(handler: Handler) -> bytes:
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


def send_json(
    handler: Handler,
    status: int,
    body: dict[str, Any],
    headers: dict[str, str],
    *,
    truncate: bool = False,
) -> None:
    data = json.dumps(body).encode()
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        # Truncating promises the whole body but sends half, then the connection closes.
        handler.wfile.write(data[: len(data) // 2] if truncate else data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client gave up first (its timeout): nothing to answer
