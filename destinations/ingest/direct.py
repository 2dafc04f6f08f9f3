"""The Segment endpoints served before Django's middleware: the WSGI application that the web
server runs sends ``/v1/<call>`` and ``/v1/batch`` straight to the ingest view.

Ingest needs none of the dashboard's middleware (no session, user, CSRF token, messages or
htmx), yet that stack cost about a third of a single-event request's CPU. The view is the same
one Django's URLconf routes to (tests through Django's test client take that way), so both
ways answer alike; the headers the middleware would add to every response are added here.
Anything else, including ``/v1/track/`` with a slash, goes to Django as before
(docs/decisions/0029-ingest-path.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIRequest
from django.db import close_old_connections

from destinations.ingest.urls import CALLS, SHORT
from destinations.ingest.views import error_response, ingest

logger = logging.getLogger("django.request")

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

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


class IngestFirst:
    """WSGI: the ingest paths to the ingest view, everything else to ``app`` (Django)."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self.extra_headers = security_headers()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path not in ROUTES:
            return self.app(environ, start_response)
        # What Django does around every request: a connection that broke or outlived
        # CONN_MAX_AGE is dropped before and after.
        close_old_connections()
        try:
            request = WSGIRequest(environ)
            # As Django's route does (CommonMiddleware): a Host not in ALLOWED_HOSTS is a 400.
            request.get_host()
            response = ingest(request, ROUTES[path])
        except DisallowedHost:
            response = error_response(
                400, "The Host header names a host this server does not serve"
            )
        except Exception:
            logger.exception("Internal Server Error: %s", path)
            response = error_response(500, "Internal error; the events were not stored")
        finally:
            close_old_connections()
        present = {name.lower() for name in response.headers}
        headers = list(response.items()) + [
            (name, value) for name, value in self.extra_headers if name.lower() not in present
        ]
        start_response(f"{response.status_code} {response.reason_phrase}", headers)
        return [response.content]
