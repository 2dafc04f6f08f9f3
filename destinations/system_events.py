"""Switchboard's own events for webhooks: a user merged or deleted, a delivery failed for good,
a user or account entering or leaving an audience.

Stored under the internal source as track events marked ``context.switchboard.system`` with
``{"All": false, "Webhooks": true}``: they reach webhooks subscribed to them and nothing else.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from django.utils import timezone

from destinations.delivery.routing import routes_for
from destinations.demo_marks import any_demo_person

# Webhook triggers (the webhook connector's settings) that system events answer.
USER_CHANGED = "user_changed"
DELIVERY_FAILED = "delivery_failed"
AUDIENCE_ENTERED = "audience.entered"
AUDIENCE_EXITED = "audience.exited"

USER_MERGED = "User Merged"
USER_DELETED = "User Deleted"
DELIVERY_FAILED_EVENT = "Delivery Failed"
AUDIENCE_ENTERED_EVENT = "Audience Entered"
AUDIENCE_EXITED_EVENT = "Audience Exited"
SYSTEM_EVENTS = {
    USER_CHANGED: (USER_MERGED, USER_DELETED),
    DELIVERY_FAILED: (DELIVERY_FAILED_EVENT,),
    AUDIENCE_ENTERED: (AUDIENCE_ENTERED_EVENT,),
    AUDIENCE_EXITED: (AUDIENCE_EXITED_EVENT,),
}


def is_system_event(payload: Mapping[str, Any]) -> bool:
    context = payload.get("context")
    marker = context.get("switchboard") if isinstance(context, Mapping) else None
    return isinstance(marker, Mapping) and bool(marker.get("system"))


def subscribed(trigger: str, *, demo: bool = False) -> bool:
    """Whether any enabled webhook listens for ``trigger``: no subscriber, no event stored.
    An event about demo data may only go to demo destinations, and no webhook is one."""
    return any(
        route.kind == "webhook" and (route.context or {}).get("trigger") == trigger
        for route in routes_for(demo=demo)
    )


def emit(name: str, properties: Mapping[str, Any], *, user_id: str | None = None) -> None:
    emit_many([(name, properties, user_id)])


def emit_many(events: Sequence[tuple[str, Mapping[str, Any], str | None]]) -> None:
    """Store system events (name, properties, user id), in one transaction."""
    from destinations.ingest.store import store_messages
    from destinations.messages.message import validate_message
    from destinations.sources import internal_source

    now = timezone.now()
    validated = [
        validate_message(system_message(name, properties, user_id), call_type=None, received_at=now)
        for name, properties, user_id in events
    ]
    if validated:
        store_messages(
            source_id=internal_source().pk, messages=validated, received_at=now, statement=True
        )


def system_message(name: str, properties: Mapping[str, Any], user_id: str | None) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "track",
        "event": name,
        "messageId": f"switchboard-system-{uuid.uuid4()}",
        "properties": dict(properties),
        "context": {"switchboard": {"system": True}, "library": {"name": "switchboard"}},
        "integrations": {"All": False, "Webhooks": True},
    }
    if user_id:
        message["userId"] = user_id
    else:
        message["anonymousId"] = "switchboard"
    return message


def user_merged(
    survivor: Mapping[str, Any], absorbed: Sequence[Mapping[str, Any]], audit: int
) -> None:
    if subscribed(USER_CHANGED, demo=any_demo_person([survivor, *absorbed])):
        emit(
            USER_MERGED,
            {
                "survivor": dict(survivor),
                "absorbed": [dict(a) for a in absorbed],
                "audit_entry": audit,
            },
            user_id=survivor.get("user_id"),
        )


def user_deleted(identities: Sequence[Mapping[str, Any]], audit: int, events_deleted: int) -> None:
    if subscribed(USER_CHANGED, demo=any_demo_person(identities)):
        emit(
            USER_DELETED,
            {"users": [dict(i) for i in identities], "audit_entry": audit,
             "events_deleted": events_deleted},
            user_id=identities[0].get("user_id") if identities else None,
        )  # fmt: skip


def delivery_failed(failures: list[tuple[Any, str]], **_signal: Any) -> None:
    """``failures``: (delivery, reason) for deliveries that just failed for good. Failures of
    system events' own deliveries are not reported, so a failing webhook cannot feed itself;
    nor are a demo destination's, which are demo data."""
    wanted = [
        (d, r)
        for d, r in failures
        if not is_system_event(d.event.payload) and not d.destination.demo
    ]
    if not wanted or not subscribed(DELIVERY_FAILED):
        return
    for delivery, reason in wanted:
        emit(
            DELIVERY_FAILED_EVENT,
            {
                "delivery_id": delivery.pk,
                "destination": delivery.destination.name,
                "event_id": delivery.event_id,
                "event_message_id": delivery.event.message_id,
                "reason": reason,
                "attempts": delivery.attempts,
            },
            user_id=delivery.event.user_id,
        )
