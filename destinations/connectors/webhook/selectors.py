"""Reads for the outbound webhooks list: destinations of kind "webhook", described in the words
of their settings form (Destination URL, Trigger Event)."""

from __future__ import annotations

from dataclasses import dataclass

from destinations.connectors.webhook import KIND
from destinations.connectors.webhook.connector import EVENTS, TRIGGERS
from destinations.delivery.health import destinations_with_health
from destinations.models import Destination

TRIGGER_LABELS = dict(TRIGGERS)


@dataclass(frozen=True)
class OutboundWebhook:
    destination: Destination  # with ``backlog`` annotated
    url: str
    trigger: str
    narrowed_to: str  # what "Events received" is narrowed to, in words; "" when not


def outbound_webhooks() -> list[OutboundWebhook]:
    rows = destinations_with_health().filter(kind=KIND)
    return [describe(destination) for destination in rows]


def describe(destination: Destination) -> OutboundWebhook:
    settings = destination.settings or {}
    trigger = settings.get("trigger") or EVENTS
    narrowed = ""
    if trigger == EVENTS:
        call_type, name = settings.get("event_type") or "", settings.get("event_name") or ""
        if name:
            narrowed = f"{call_type or 'events'} named {name!r}"
        elif call_type:
            narrowed = f"{call_type} calls only"
    return OutboundWebhook(
        destination=destination,
        url=settings.get("url", ""),
        trigger=TRIGGER_LABELS.get(trigger, trigger),
        narrowed_to=narrowed,
    )
