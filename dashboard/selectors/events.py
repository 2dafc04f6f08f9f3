from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db.models import F, Q, QuerySet

from dashboard.selectors.audience_syncs import with_sync_class
from destinations.models import Delivery, DeliveryStatus, Event
from destinations.web.pagination import KeysetPage, keyset_page

EVENTS_PAGE_SIZE = 50


@dataclass(frozen=True)
class EventFilters:
    type: str = ""
    source_id: int | None = None
    user: str = ""
    event: str = ""
    since: datetime | None = None
    until: datetime | None = None
    profile_id: int | None = None


def events_filtered(filters: EventFilters) -> QuerySet[Event]:
    events = with_sync_class(Event.objects.select_related("source").defer("payload"))
    if filters.type:
        events = events.filter(type=filters.type)
    if filters.source_id:
        events = events.filter(source_id=filters.source_id)
    if filters.user:
        events = events.filter(Q(user_id=filters.user) | Q(anonymous_id=filters.user))
    if filters.event:
        events = events.filter(event=filters.event)
    if filters.since:
        events = events.filter(received_at__gte=filters.since)
    if filters.until:
        events = events.filter(received_at__lt=filters.until)
    if filters.profile_id:
        events = events.filter(profile_id=filters.profile_id)
    return events


def events_page(filters: EventFilters, *, before: int | None) -> KeysetPage[Event]:
    return keyset_page(events_filtered(filters), before=before, size=EVENTS_PAGE_SIZE)


@dataclass(frozen=True)
class DeliveryState:
    """Where one event stands at one destination, as the Events list shows it."""

    destination: str
    status: str  # the delivery's own status
    state: str  # delivered, failed, skipped or pending (sending and retrying included)
    replayed: bool = False  # made by a replay: the event may have a live delivery there too


STATES: dict[str, str] = {
    DeliveryStatus.DELIVERED: "delivered",
    DeliveryStatus.FAILED: "failed",
    DeliveryStatus.SKIPPED: "skipped",
}


def delivery_states(events: list[Event]) -> dict[int, list[DeliveryState]]:
    """Each event's deliveries, by destination name, for a page of events: one query,
    whatever the page's length."""
    found: dict[int, list[DeliveryState]] = defaultdict(list)
    rows = (
        Delivery.objects.filter(event_id__in=[event.pk for event in events])
        .order_by(
            "event_id", "destination__name", "destination_id", F("replay_id").asc(nulls_first=True)
        )
        .values_list("event_id", "destination__name", "status", "replay_id")
    )
    for event_id, destination, status, replay_id in rows:
        state = STATES.get(status, "pending")
        found[event_id].append(DeliveryState(destination, status, state, replay_id is not None))
    return found


def event_detail(event_id: int) -> Event | None:
    return Event.objects.select_related("source", "profile").filter(id=event_id).first()
