"""What the conflict views need to know about a request: who acts, and which htmx fragment
it asks for."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest


def acting_user(request: HttpRequest) -> User | None:
    """The operator an audit entry names (None for an anonymous request, which the login
    middleware does not let through anyway)."""
    return request.user if isinstance(request.user, User) else None
