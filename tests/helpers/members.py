"""Dashboard members as the fixtures make them."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth.models import User

# The ``make_member`` fixture: make_member(username="op", role="admin", password=...) -> User.
MakeMember = Callable[..., User]
