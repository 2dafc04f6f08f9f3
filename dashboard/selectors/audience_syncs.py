"""Which events are audience syncs, and of which audience: the event rows and the event page
mark them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db.models import QuerySet
from django.db.models.fields.json import KT

from destinations.models import Audience, Event
from destinations.sources import INTERNAL_DEMO_SOURCE, INTERNAL_SOURCE


@dataclass(frozen=True)
class AudienceSync:
    """An event that is an audience's sync (Segment's ``context.personas`` says so)."""

    audience: Audience | None  # None once deleted, or when the event is not one of ours


def with_sync_class(events: QuerySet[Event]) -> QuerySet[Event]:
    """Event rows that say whether they are audience syncs, read in the same query (the
    payload itself is not loaded): ``sync_class`` is ``context.personas.computation_class``."""
    return events.annotate(sync_class=KT("payload__context__personas__computation_class"))


def audience_syncs(events: Sequence[Event]) -> dict[int, AudienceSync]:
    """Which of these events are audience syncs. Rows read ``with_sync_class`` already say;
    for others one query asks. The audiences named cost one query, only when there are any:
    an audience is named only for Switchboard's own syncs (its internal source and message
    id), not for a sender's look-alike."""
    unknown = [e.pk for e in events if not hasattr(e, "sync_class")]
    asked = set(
        Event.objects.filter(
            pk__in=unknown, payload__context__personas__computation_class="audience"
        ).values_list("pk", flat=True)
        if unknown
        else []
    )
    syncs = [e for e in events if e.pk in asked or getattr(e, "sync_class", None) == "audience"]
    ours = {
        e.pk: audience_id
        for e in syncs
        if (audience_id := own_sync_audience(e.message_id, e.source.name)) is not None
    }
    names = {a.pk: a for a in Audience.objects.filter(pk__in=set(ours.values()))} if ours else {}
    return {e.pk: AudienceSync(names.get(ours[e.pk]) if e.pk in ours else None) for e in syncs}


def label_audience_syncs(events: list[Event]) -> list[Event]:
    """Mark the audience syncs among a page of events (``event.audience_sync``), as the event
    rows show them."""
    syncs = audience_syncs(events)
    for event in events:
        event.audience_sync = syncs.get(event.pk)  # type: ignore[attr-defined]
    return events


def audience_sync_of(event: Event) -> AudienceSync | None:
    """The same for one event whose payload is loaded."""
    context = event.payload.get("context") if isinstance(event.payload, dict) else None
    personas = context.get("personas") if isinstance(context, dict) else None
    if not isinstance(personas, dict) or personas.get("computation_class") != "audience":
        return None
    audience_id = own_sync_audience(event.message_id, event.source.name)
    audience = Audience.objects.filter(pk=audience_id).first() if audience_id else None
    return AudienceSync(audience)


def own_sync_audience(message_id: str, source_name: str) -> int | None:
    """The audience id in a sync's message id (``audience-<id>-...``), for our own syncs."""
    if source_name not in (INTERNAL_SOURCE, INTERNAL_DEMO_SOURCE):
        return None
    parts = message_id.split("-", 2)
    if len(parts) == 3 and parts[0] == "audience" and parts[1].isdigit() and len(parts[1]) < 19:
        return int(parts[1])
    return None
