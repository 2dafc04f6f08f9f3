"""The Segment endpoints served before Django's middleware: the WSGI application that the web
server runs sends ``/v1/<call>`` and ``/v1/batch`` straight to the ingest view.

Ingest needs none of the dashboard's middleware (no session, user, CSRF token, messages or
htmx), yet that stack cost about a third of a single-event request's CPU. The view is the same
one Django's URLconf routes to (tests through Django's test client take that way), so both
ways answer alike; the headers the middleware would add to every response are added here.
Anything else, including ``/v1/track/`` with a slash, goes to Django as before
(docs/decisions/0029-ingest-path.md).

The web server starts these requests on its event loop (``in_loop``, ``begin``: see
dashboard/project/loop_answers.py): a request is read and validated there, its write handed to
the process's group-commit writer, and its answer made once the write has committed, without a
thread waiting for it. Called as a WSGI application (any other server, the tests), it answers
on the caller's thread as before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIRequest
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse

from destinations.ingest.group_commit import (
    PendingWrite,
    WriterTimeout,
    group_commit_on,
    store_later,
)
from destinations.ingest.urls import CALLS, SHORT
from destinations.ingest.views import Deferred, error_response, finish, ingest, prepare

logger = logging.getLogger("django.request")

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
# The web server's answer and reply types (dashboard/project/loop_answers.py, which the engine
# does not import): status line, headers and body; a function the loop runs to make one.
Answer = tuple[str, list[tuple[str, str]], bytes]
R = TypeVar("R")
HOSTS_REMEMBERED = 1000
# Bodies up to this size are validated on the web server's event loop (a batch of 100 typical
# events is about 45 KB); larger ones on a thread.
LOOP_BODY_BYTES = 64 * 1024
Reply = Callable[[Callable[[], Answer]], None]

# Path -> the call type the view is given (None: a batch), as destinations/ingest/urls.py.
ROUTES: dict[str, str | None] = {
    "/v1/batch": None,
    "/v1/b": None,
    "/v1/import": None,
    **{f"/v1/{call}": call for call in CALLS},
    **{f"/v1/{short}": call for short, call in SHORT.items()},
}


def security_headers() -> list[tuple[str, str]]:
    """What Django's SecurityMiddleware, XFrameOptionsMiddleware and the dashboard's
    SecurityHeadersMiddleware put on a response."""
    headers = [
        ("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY),
        ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
        ("X-Frame-Options", settings.X_FRAME_OPTIONS),
    ]
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append(("X-Content-Type-Options", "nosniff"))
    if settings.SECURE_REFERRER_POLICY:
        headers.append(("Referrer-Policy", settings.SECURE_REFERRER_POLICY))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append(("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY))
    return headers


@dataclass(eq=False)
class Waiting:
    """A request started on the event loop whose write is with the writer: answered once,
    by whichever comes first, the write's completion or its deadline."""

    deferred: Deferred
    reply: Reply
    deadline: float
    claimed: threading.Lock = field(default_factory=threading.Lock)

    def claim(self) -> bool:
        return self.claimed.acquire(blocking=False)


class IngestFirst:
    """WSGI: the ingest paths to the ingest view, everything else to ``app`` (Django)."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self.extra_headers = security_headers()
        # Requests started on the loop, oldest first, until answered or out of time.
        self.waiting: deque[Waiting] = deque()
        self.hosts_checked: dict[tuple[Any, ...], bool] = {}
        # Writes of the requests started in the loop's current turn, handed over at its end.
        self.turn_writes: list[PendingWrite] = []

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path not in ROUTES:
            return self.app(environ, start_response)
        status, headers, body = self.wsgi_answer(self.answered(environ, path))
        start_response(status, headers)
        return [body]

    def answered(self, environ: dict[str, Any], path: str) -> HttpResponse:
        """The request answered on this thread, waiting for its write if it has one."""
        # What Django does around every request: a connection that broke or outlived
        # CONN_MAX_AGE is dropped before and after.
        close_old_connections()
        try:
            return self.through(ingest, environ, path)
        finally:
            close_old_connections()

    def through(
        self, view: Callable[[HttpRequest, str | None], R], environ: dict[str, Any], path: str
    ) -> R | HttpResponse:
        """``view`` (the whole view, or its ``prepare``) for the request, with what Django's
        handler would answer around it."""
        try:
            request = WSGIRequest(environ)
            # As Django's route does (CommonMiddleware): a Host not in ALLOWED_HOSTS is a 400.
            self.check_host(request)
            return view(request, ROUTES[path])
        except DisallowedHost:
            return disallowed_host()
        except Exception:
            return internal_error(path)

    # --- on the web server's event loop ----------------------------------------------------

    def in_loop(self, method: str, path: str, content_length: int) -> bool:
        # Without group commit every request stores in its own transaction: on a thread. So
        # does a large body: validating it holds the loop (about 25 microseconds an event),
        # and nothing else the process serves is read or answered meanwhile; under the GIL a
        # thread takes turns with the others. A large batch's hand-overs cost little per event.
        return path in ROUTES and content_length <= LOOP_BODY_BYTES and group_commit_on()

    def begin(self, environ: dict[str, Any], reply: Reply) -> None:
        """Read and validate the request here and now; answer at once when it needs no write,
        else when the writer has stored it (``reply`` is then called on the writer's thread,
        with what the loop runs to make the answer)."""
        path = environ.get("PATH_INFO", "")
        # The loop's own database connection (write keys looked up past their cache) is
        # checked once a turn, in ``end_turn``, not around every request.
        outcome = self.through(prepare, environ, path)
        if isinstance(outcome, HttpResponse):
            reply(ready(self.wsgi_answer(outcome)))
            return
        waiting = Waiting(
            deferred=outcome,
            reply=reply,
            deadline=time.monotonic() + settings.INGEST_WRITER_TIMEOUT_SECONDS,
        )
        self.waiting.append(waiting)

        def stored(write: PendingWrite) -> None:
            if waiting.claim():
                reply(lambda: self.finished(outcome, write, path))

        outcome.write.on_done = stored
        self.turn_writes.append(outcome.write)

    def check_host(self, request: WSGIRequest) -> None:
        """``request.get_host()``'s check (DisallowedHost), remembered for the headers and
        settings it depends on: a client sends the same Host on every request."""
        meta = request.META
        key = (
            meta.get("HTTP_X_FORWARDED_HOST"),
            meta.get("HTTP_HOST"),
            meta.get("SERVER_NAME"),
            meta.get("SERVER_PORT"),
            settings.USE_X_FORWARDED_HOST,
            settings.DEBUG,
            tuple(settings.ALLOWED_HOSTS),
        )
        allowed = self.hosts_checked.get(key)
        if allowed is None:
            try:
                request.get_host()
                allowed = True
            except DisallowedHost:
                allowed = False
            if len(self.hosts_checked) >= HOSTS_REMEMBERED:
                self.hosts_checked.clear()  # made-up Host headers must not grow it for ever
            self.hosts_checked[key] = allowed
        if not allowed:
            raise DisallowedHost(meta.get("HTTP_HOST", ""))

    def finished(self, deferred: Deferred, write: PendingWrite, path: str) -> Answer:
        try:
            response = finish(deferred, write.result, write.error)
        except Exception:
            response = internal_error(path)
        return self.wsgi_answer(response)

    def end_turn(self) -> None:
        """Once a loop turn: hand the writes of the requests started in it to the writer
        together (started one by one, the writer would take the first before the loop had
        validated the rest, and commit a group per request or two); drop the loop's database
        connection if it broke or outlived CONN_MAX_AGE (as Django does after each request);
        and answer 503 to the requests whose write has not come back in time (their events
        may still be stored: the SDK's retry carries the same messageIds). Answered ones are
        dropped from the front as met."""
        if self.turn_writes:
            writes, self.turn_writes = self.turn_writes, []
            store_later(writes)
        close_old_connections()
        now = time.monotonic()
        while self.waiting:
            waiting = self.waiting[0]
            if waiting.claimed.locked():
                self.waiting.popleft()
                continue
            if waiting.deadline > now:
                return
            self.waiting.popleft()
            if waiting.claim():
                timeout = WriterTimeout("the writer did not answer in time")
                answer = self.wsgi_answer(finish(waiting.deferred, None, timeout))
                waiting.reply(ready(answer))

    def wsgi_answer(self, response: HttpResponse) -> Answer:
        present = {name.lower() for name in response.headers}
        headers = list(response.items()) + [
            (name, value) for name, value in self.extra_headers if name.lower() not in present
        ]
        return f"{response.status_code} {response.reason_phrase}", headers, response.content


def ready(answer: Answer) -> Callable[[], Answer]:
    return lambda: answer


def disallowed_host() -> HttpResponse:
    return error_response(400, "The Host header names a host this server does not serve")


def internal_error(path: str) -> HttpResponse:
    logger.exception("Internal Server Error: %s", path)
    return error_response(500, "Internal error; the events were not stored")
