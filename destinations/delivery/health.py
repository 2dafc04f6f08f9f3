"""A destination's health as lists show it: its backlog, counted in the same query."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from destinations.models import DeliveryStatus, Destination

# What is still owed to a destination: waiting for a first try, waiting to retry, or in flight.
BACKLOG_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.RETRYING, DeliveryStatus.SENDING)


def destinations_with_health() -> QuerySet[Destination]:
    """Every destination with its backlog, counted in the same query as the list."""
    return Destination.objects.annotate(
        backlog=Count("deliveries", filter=Q(deliveries__status__in=BACKLOG_STATUSES))
    ).order_by("name")
