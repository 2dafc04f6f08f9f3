"""What the conflict views need to know about a request: who acts, and which htmx fragment
it asks for."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest


def acting_user(request: HttpRequest) -> User | None:
    """The operator an audit entry names (None for an anonymous request, which the login
    middleware does not let through anyway)."""
    return request.user if isinstance(request.user, User) else None


def is_htmx(request: HttpRequest) -> bool:
    return bool(getattr(request, "htmx", False))


def htmx_target(request: HttpRequest) -> str | None:
    """The id of the element an htmx request will swap, which names the fragment to render."""
    htmx = getattr(request, "htmx", None)
    return htmx.target if htmx else None
