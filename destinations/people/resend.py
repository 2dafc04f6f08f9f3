"""Tell every destination that knows users about a profile again, after a merge or undo.

The re-send is an identify event stored under Switchboard's own internal source and routed
like any other: it shows in Events, and its deliveries in each destination's log. A demo
user's re-send is demo data: it is stored under the internal demo source, goes to the demo
destinations only, and is removed with the rest of the demo.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from django.utils import timezone

from destinations.demo_marks import demo_loaded, marked_as_demo
from destinations.models import Profile
from destinations.sources import internal_source


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
    from destinations.ingest.store import store_messages
    from destinations.messages.message import validate_message

    now = timezone.now()
    loaded = demo_loaded() if any(marked_as_demo(p.user_id, p.email) for p in profiles) else False
    stored = 0
    for profile in profiles:
        demo = loaded and marked_as_demo(profile.user_id, profile.email)
        message = validate_message(identify_message(profile), call_type=None, received_at=now)
        result = store_messages(
            source_id=internal_source(demo=demo).pk,
            messages=[message],
            received_at=now,
            owner=profile.pk,
            statement=True,
            demo=demo,
        )
        stored += result.stored
    return stored
