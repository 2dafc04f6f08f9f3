"""Tell every destination that knows users about a profile again, after a merge or undo.

The re-send is an identify event stored under Switchboard's own internal source and routed
like any other: it shows in Events, and its deliveries in each destination's log.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from django.utils import timezone

from destinations.models import Profile, Source

INTERNAL_SOURCE = "Switchboard (internal)"


def internal_source() -> Source:
    source, _ = Source.objects.get_or_create(name=INTERNAL_SOURCE, defaults={"enabled": False})
    return source


def identify_message(profile: Profile) -> dict[str, Any]:
    traits: dict[str, Any] = dict(profile.traits or {})
    for key, value in (("email", profile.email), ("name", profile.name)):
        if value:
            traits[key] = value
    if profile.billing_id:
        traits["billingUserId"] = profile.billing_id
    message: dict[str, Any] = {
        "type": "identify",
        "messageId": f"switchboard-resend-{uuid.uuid4()}",
        "traits": traits,
        "context": {"library": {"name": "switchboard", "version": "resend"}},
    }
    if profile.user_id:
        message["userId"] = profile.user_id
    else:
        # Imported customers have no user id yet: destinations that accept an email use it.
        message["anonymousId"] = f"switchboard-profile-{profile.pk}"
    return message


def resend_profiles(profiles: Sequence[Profile]) -> int:
    """Store and route an identify for each profile; returns how many were stored."""
    from destinations.ingest.message import validate_message
    from destinations.ingest.store import store_messages

    now = timezone.now()
    source_id = internal_source().pk
    stored = 0
    for profile in profiles:
        message = validate_message(identify_message(profile), call_type=None, received_at=now)
        result = store_messages(
            source_id=source_id,
            messages=[message],
            received_at=now,
            owner=profile.pk,
            statement=True,
        )
        stored += result.stored
    return stored
