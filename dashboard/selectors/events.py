from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, QuerySet

from dashboard.selectors.pagination import KeysetPage, keyset_page
from destinations.models import Event

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
    events = Event.objects.select_related("source").defer("payload")
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


def event_detail(event_id: int) -> Event | None:
    return Event.objects.select_related("source", "profile").filter(id=event_id).first()
