"""What marks data as the demo's (ADR 15): demo sources and destinations carry ``demo``; demo
users have ``demo-`` user ids or ``@demo.example`` emails, demo accounts ``demo-`` group ids.

Demo data goes to demo destinations (the local stand-ins) and nowhere else, and "Remove demo
data" removes it. The user markers count only while demo data is loaded, so a real user whose
id happens to start with ``demo-`` is an ordinary user on an installation without the demo.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from django.db.models import Q

from destinations.models import Source

DEMO_PREFIX = "demo-"
DEMO_DOMAIN = "demo.example"


def demo_loaded() -> bool:
    return Source.objects.filter(demo=True).exists()


def demo_people() -> Q:
    """Profiles that are demo users, by their markers."""
    return Q(user_id__startswith=DEMO_PREFIX) | Q(email__endswith=f"@{DEMO_DOMAIN}")


def marked_as_demo(user_id: str | None, email: str | None) -> bool:
    return bool(
        (user_id and user_id.startswith(DEMO_PREFIX))
        or (email and email.endswith(f"@{DEMO_DOMAIN}"))
    )


def any_demo_person(identities: Iterable[Mapping[str, str | None]]) -> bool:
    """Whether any of these ``{"user_id", "email"}`` is a demo user (one query, only when a
    marker matches)."""
    marked = any(marked_as_demo(i.get("user_id"), i.get("email")) for i in identities)
    return marked and demo_loaded()
