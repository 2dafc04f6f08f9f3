"""Role checks before every view, and the security headers every response carries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseForbidden,
)
from django.template.loader import render_to_string

from dashboard.roles import has_role, needed_role, role_of


class RoleMiddleware:
    """Runs after authentication: an anonymous visitor was already sent to the login page by
    LoginRequiredMiddleware, so here the user is known and only the role is in question."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view: Any, args: Any, kwargs: Any
    ) -> HttpResponse | None:
        match = request.resolver_match
        if match is None or match.namespace == "admin":
            # Django's admin has its own checks: staff and permissions.
            return None
        needed = needed_role(match.url_name, request.method or "GET")
        if needed is None or not request.user.is_authenticated:
            return None
        if has_role(request.user, needed):
            return None
        body = render_to_string(
            "forbidden.html",
            {"needed": needed, "role": role_of(request.user) or "none"},
            request=request,
        )
        return HttpResponseForbidden(body)


class SecurityHeadersMiddleware:
    """A Content-Security-Policy without inline scripts, and no framing."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        response.headers.setdefault(
            "Permissions-Policy", "camera=(), microphone=(), geolocation=()"
        )
        return response


class RefuseNulCharactersMiddleware:
    """A NUL character in a query string or form field is refused with a 400 naming the field:
    PostgreSQL cannot compare text holding one, so a search for it would fail, and SQLite
    would quietly find nothing. The Segment and webhook endpoints read their own bodies."""

    FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(("/v1/", "/hooks/")):
            return self.get_response(request)
        fields = list(request.GET.lists())
        if request.method == "POST" and request.content_type in self.FORM_TYPES:
            fields += list(request.POST.lists())
        for name, values in fields:
            if "\x00" in name or any("\x00" in value for value in values):
                shown = name.replace("\x00", "\\x00")[:40]
                return HttpResponseBadRequest(
                    f"The field {shown!r} holds a NUL character, which is not allowed.\n",
                    content_type="text/plain; charset=utf-8",
                )
        return self.get_response(request)


class ExplainedRefusalsMiddleware:
    """Every 4xx says what was wrong: Django's ``require_POST`` and friends answer 405 with an
    empty body, which leaves a client (or a curious operator) guessing."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            400 <= response.status_code < 500
            and request.method != "HEAD"
            and not response.streaming
            and not response.content
        ):
            response.content = refusal_text(request, response).encode()
            response["Content-Type"] = "text/plain; charset=utf-8"
        return response


def refusal_text(request: HttpRequest, response: HttpResponse) -> str:
    if response.status_code == 405:
        allowed = response.get("Allow", "")
        return f"{request.method} is not allowed here; use {allowed or 'another method'}.\n"
    return f"{response.status_code} {response.reason_phrase}\n"
