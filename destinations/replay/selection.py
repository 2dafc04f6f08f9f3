"""Which stored events a replay sends: a query, streamed in event-time order by lane.

Always left out: events received after the replay began (live traffic sends them), events
with a delivery to this destination still on its way (live or another replay's), Switchboard's
own internal events (re-sends, system events, audience syncs: each was meant for particular
destinations), and demo data unless the destination is a demo one (as live routing does). Left
out unless asked: events this destination already has a delivered row for.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Exists, Model, OuterRef, Q, QuerySet
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
# The index of event-time order, and the unique index of one delivery per event, destination
# and replay, which leads with event_id (destinations.models).
TIME_ORDER_INDEX = "event_timestamp_idx"
EVENT_DELIVERY_INDEX = "delivery_event_destination_replay_uniq"


def replayable_sources(destination: Destination) -> QuerySet[Source]:
    sources = Source.objects.exclude(name__in=(INTERNAL_SOURCE, INTERNAL_DEMO_SOURCE))
    return sources if destination.demo else sources.filter(demo=False)


def in_scope(
    destination: Destination, definition: ReplayDefinition, received_before: datetime
) -> QuerySet[Event]:
    """The events the definition asks for, before what the destination already has is taken
    out."""
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
    return events


def excluded_statuses(definition: ReplayDefinition) -> tuple[str, ...]:
    return ON_ITS_WAY if definition.include_received else (*ON_ITS_WAY, "delivered")


def candidates(
    destination: Destination, definition: ReplayDefinition, received_before: datetime
) -> QuerySet[Event]:
    already = Delivery.objects.filter(
        event=OuterRef("pk"), destination=destination, status__in=excluded_statuses(definition)
    )
    return in_scope(destination, definition, received_before).filter(~Exists(already))


def after(timestamp: datetime, pk: int) -> Q:
    """Events after (timestamp, id) in event-time order. The leading ``timestamp >=`` gives the
    index scan its start: with the OR alone SQLite walked the index from the beginning on every
    page, and a replay slowed as it went."""
    return Q(timestamp__gte=timestamp) & (Q(timestamp__gt=timestamp) | Q(id__gt=pk))


@dataclass
class LanePage:
    events: list[tuple[int, Any]]  # (id, payload) of the events to decide, in event-time order
    last: tuple[datetime, int] | None  # the lane's new checkpoint; None: nothing was left


def lane_page(replay: Replay, lane: ReplayLane, limit: int) -> LanePage:
    """The lane's next ``limit`` events in scope after its checkpoint, less those the
    destination already has. Two simple queries, each served by an index whatever the table
    statistics say: a keyset walk of ``event(timestamp, id)``, then the deliveries of just
    those events (``delivery``'s unique index leads with ``event_id``)."""
    definition = ReplayDefinition.of(replay)
    events = in_scope(replay.destination, definition, replay.received_before)
    if replay.lanes > 1:
        events = events.annotate(lane=Mod(Coalesce("profile_id", "id"), replay.lanes)).filter(
            lane=lane.number
        )
    if lane.after_timestamp is not None:
        events = events.filter(after(lane.after_timestamp, lane.after_id))
    rows = in_time_order(events, limit)
    if not rows:
        return LanePage([], None)
    has = already_has(
        [pk for pk, _, _ in rows], replay.destination_id, excluded_statuses(definition)
    )
    wanted = [(pk, payload) for pk, _, payload in rows if pk not in has]
    return LanePage(wanted, (rows[-1][1], rows[-1][0]))


def already_has(event_ids: list[int], destination_id: int, statuses: tuple[str, ...]) -> set[int]:
    """Which of ``event_ids`` have a delivery to the destination in one of ``statuses``, read
    through ``delivery``'s unique index, which leads with ``event_id``. SQLite, planning without
    statistics, took ``delivery(destination_id, status, id)`` instead and read every delivered
    row of the destination for every page: a replay slowed as its own rows grew (from 675 to
    380 deliveries/s by its 300,000th event)."""
    rows = Delivery.objects.filter(
        event_id__in=event_ids, destination_id=destination_id, status__in=statuses
    ).values_list("event_id", flat=True)
    if connection.vendor != "sqlite":
        return set(rows)
    with connection.cursor() as cursor:
        cursor.execute(*sqlite_indexed_by(rows, Delivery, EVENT_DELIVERY_INDEX))
        return {row[0] for row in cursor.fetchall()}


def sqlite_indexed_by(query: QuerySet[Any], model: type[Model], index: str) -> tuple[str, Any]:
    """``query``'s SQL and parameters, its table read through ``index`` (SQLite's INDEXED BY)."""
    sql, params = query.query.sql_with_params()
    table = connection.ops.quote_name(model._meta.db_table)
    hint = f"FROM {table} INDEXED BY {connection.ops.quote_name(index)}"
    return sql.replace(f"FROM {table}", hint, 1), params


def in_time_order(events: QuerySet[Event], limit: int) -> list[tuple[int, datetime, Any]]:
    """The first ``limit`` of ``events`` by (timestamp, id): (id, timestamp, payload), read
    along ``event(timestamp, id)``.

    SQLite plans without table statistics (nothing runs ANALYZE on it), and for
    ``source_id IN (...)`` it took the source index: every page then read all of the source's
    events and sorted them, 0.4 s a page at 1,000,000 events, and the replay fell to 320
    deliveries/s. There the statement names its index (``INDEXED BY``), so a page reads only
    the rows after the checkpoint, in order, until it has ``limit``. PostgreSQL plans from the
    statistics it keeps."""
    page = events.order_by("timestamp", "id").values_list("id", "timestamp", "payload")[:limit]
    if connection.vendor != "sqlite":
        return list(page)
    sql, params = sqlite_indexed_by(page, Event, TIME_ORDER_INDEX)
    return [(event.pk, event.timestamp, event.payload) for event in Event.objects.raw(sql, params)]


def stream(
    destination: Destination, definition: ReplayDefinition, received_before: datetime, size: int
) -> Iterator[list[tuple[int, str, Any]]]:
    """All candidates in event-time order, ``size`` at a time: (id, type, payload)."""
    events = candidates(destination, definition, received_before).order_by("timestamp", "id")
    last: tuple[datetime, int] | None = None
    while True:
        page = events
        if last is not None:
            page = page.filter(after(*last))
        rows = list(page.values_list("id", "timestamp", "type", "payload")[:size])
        if not rows:
            return
        yield [(pk, kind, payload) for pk, _, kind, payload in rows]
        last = (rows[-1][1], rows[-1][0])
