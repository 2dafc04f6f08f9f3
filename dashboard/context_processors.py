"""Template context every page gets: the user's role, to show only what it may do."""

from __future__ import annotations

from typing import Any

from django.core.cache import cache
from django.http import HttpRequest

from dashboard.freshness import stamped
from dashboard.roles import ADMIN, OPERATOR, has_role, role_of
from destinations.demo import demo_loaded


def role(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    return {
        "role": role_of(user),
        "can_operate": has_role(user, OPERATOR),
        "can_admin": has_role(user, ADMIN),
        "demo_loaded": demo_is_loaded() if role_of(user) else False,
    }


def demo_is_loaded() -> bool:
    # Asked on every page: a few seconds of cache keep it off the database; removing the demo
    # data changes the stamp, so the banner goes at once.
    key = stamped("demo-loaded")
    loaded = cache.get(key)
    if loaded is None:
        loaded = demo_loaded()
        cache.set(key, loaded, timeout=5)
    return bool(loaded)
