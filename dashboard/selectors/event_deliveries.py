"""Reads for the Deliveries section of an event's page: what was sent where, every attempt,
and why each enabled destination without a delivery did not get one."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Prefetch

from destinations.connectors import CONNECTORS
from destinations.delivery.routing import route_of, why_not_routed
from destinations.models import Delivery, DeliveryAttempt, Destination, Event


@dataclass(frozen=True)
class NotRouted:
    destination: Destination
    reason: str


def event_deliveries(event: Event) -> list[Delivery]:
    """Each delivery of ``event`` with its destination and its attempts (two queries)."""
    return list(
        Delivery.objects.filter(event=event)
        .select_related("destination")
        .prefetch_related(
            Prefetch("attempt_log", queryset=DeliveryAttempt.objects.order_by("number"))
        )
        .order_by("destination__name")
    )


def not_routed(event: Event, deliveries: list[Delivery]) -> list[NotRouted]:
    """Enabled destinations that have no delivery of ``event``, each with the reason, judged by
    the same rules ingest applies (call type, integrations object, drop filters)."""
    delivered_to = {delivery.destination_id for delivery in deliveries}
    missing = Destination.objects.filter(enabled=True).exclude(pk__in=delivered_to)
    found: list[NotRouted] = []
    for destination in missing:
        if destination.kind not in CONNECTORS:
            found.append(NotRouted(destination, f"no connector for {destination.kind} yet"))
            continue
        reason = why_not_routed(event.payload, route_of(destination))
        if reason is None:
            # Today's rules would send it: the destination was added, enabled or re-filtered
            # after the event arrived, and routing is decided once, at ingest.
            reason = (
                "created after this event was received"
                if destination.created_at > event.received_at
                else "not enabled, or filtered differently, when this event was received"
            )
        found.append(NotRouted(destination, reason))
    return found
