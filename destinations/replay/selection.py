"""Which stored events a replay sends: a query, streamed in event-time order by lane.

Always left out: events received after the replay began (live traffic sends them), events
with a delivery to this destination still on its way (live or another replay's), Switchboard's
own internal events (re-sends, system events, audience syncs: each was meant for particular
destinations), and demo data unless the destination is a demo one (as live routing does). Left
out unless asked: events this destination already has a delivered row for.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Coalesce, Mod

from destinations.models import (
    WAITING,
    Delivery,
    DeliveryStatus,
    Destination,
    Event,
    Replay,
    ReplayLane,
    Source,
)
from destinations.replay.definition import ReplayDefinition
from destinations.sources import INTERNAL_DEMO_SOURCE, INTERNAL_SOURCE

ON_ITS_WAY = (*WAITING, DeliveryStatus.SENDING)


def replayable_sources(destination: Destination) -> QuerySet[Source]:
    sources = Source.objects.exclude(name__in=(INTERNAL_SOURCE, INTERNAL_DEMO_SOURCE))
    return sources if destination.demo else sources.filter(demo=False)


def candidates(
    destination: Destination, definition: ReplayDefinition, received_before: datetime
) -> QuerySet[Event]:
    events = Event.objects.filter(
        timestamp__lt=definition.until,
        received_at__lte=received_before,
        source__in=replayable_sources(destination),
    )
    if definition.since is not None:
        events = events.filter(timestamp__gte=definition.since)
    if definition.source_ids:
        events = events.filter(source_id__in=definition.source_ids)
    if definition.types:
        events = events.filter(type__in=definition.types)
    if definition.names:
        events = events.filter(Q(event__in=definition.names) | Q(name__in=definition.names))
    excluded = ON_ITS_WAY if definition.include_received else (*ON_ITS_WAY, "delivered")
    already = Delivery.objects.filter(
        event=OuterRef("pk"), destination=destination, status__in=excluded
    )
    return events.filter(~Exists(already))


def lane_page(replay: Replay, lane: ReplayLane, limit: int) -> list[tuple[int, datetime, Any]]:
    """The lane's next ``limit`` events after its checkpoint: (id, timestamp, payload)."""
    definition = ReplayDefinition.of(replay)
    events = candidates(replay.destination, definition, replay.received_before)
    if replay.lanes > 1:
        events = events.annotate(lane=Mod(Coalesce("profile_id", "id"), replay.lanes)).filter(
            lane=lane.number
        )
    if lane.after_timestamp is not None:
        events = events.filter(
            Q(timestamp__gt=lane.after_timestamp)
            | Q(timestamp=lane.after_timestamp, id__gt=lane.after_id)
        )
    rows = events.order_by("timestamp", "id").values_list("id", "timestamp", "payload")
    return list(rows[:limit])


def stream(
    destination: Destination, definition: ReplayDefinition, received_before: datetime, size: int
) -> Iterator[list[tuple[int, str, Any]]]:
    """All candidates in event-time order, ``size`` at a time: (id, type, payload)."""
    events = candidates(destination, definition, received_before).order_by("timestamp", "id")
    after: tuple[datetime, int] | None = None
    while True:
        page = events
        if after is not None:
            page = page.filter(Q(timestamp__gt=after[0]) | Q(timestamp=after[0], id__gt=after[1]))
        rows = list(page.values_list("id", "timestamp", "type", "payload")[:size])
        if not rows:
            return
        yield [(pk, kind, payload) for pk, _, kind, payload in rows]
        after = (rows[-1][1], rows[-1][0])
