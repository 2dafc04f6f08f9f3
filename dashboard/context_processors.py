"""Template context every page gets: the user's role, to show only what it may do."""

from __future__ import annotations

from typing import Any

from django.core.cache import cache
from django.http import HttpRequest

from dashboard.roles import ADMIN, OPERATOR, has_role, role_of
from destinations.demo import StandIn, demo_loaded, demo_stand_ins
from destinations.web.freshness import stamped


def role(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    return {
        "role": role_of(user),
        "can_operate": has_role(user, OPERATOR),
        "can_admin": has_role(user, ADMIN),
        **(demo_banner() if role_of(user) else {"demo_loaded": False}),
    }


def demo_banner() -> dict[str, Any]:
    """Whether demo data is loaded, and the stand-ins' addresses and keys. Asked on every page:
    a few seconds of cache keep it off the database; removing the demo data changes the
    stamp, so the banner goes at once."""
    key = stamped("demo-banner")
    banner = cache.get(key)
    if banner is None:
        loaded = demo_loaded()
        stand_ins: list[StandIn] = demo_stand_ins() if loaded else []
        banner = {"demo_loaded": loaded, "demo_stand_ins": stand_ins}
        cache.set(key, banner, timeout=5)
    return dict(banner)
