"""Reads for a source's live debugger, after Segment's: the newest events as they arrive, with
the messages refused on ingest interleaved by time.

The page shows the newest ``DEBUGGER_ROWS``; then it asks every second or so for what is newer
than the newest event and refusal it has (``id > after``: a seek on the primary key, whatever
the size of the table). A search is an exact match on the indexed columns an operator knows a
message by: event name, userId, anonymousId or messageId.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db.models import Q

from destinations.models import Event, EventType, IngestFailure, Source
from destinations.web.display_json import parsed_or_none, pretty_json, readable

DEBUGGER_ROWS = 100
# Refused messages are searched by their text; only this many of the source's newest are read,
# so a source that sends a flood of bad messages cannot make a search slow.
REFUSED_SEARCH_SCOPE = 1000
# A pretty section lists at most this many fields; the raw view has everything.
PRETTY_FIELDS_SHOWN = 60
VALUE_CHARS = 300
# What names a call, by type: (label, Event attribute).
NAMED_BY: dict[str, tuple[str, str]] = {
    EventType.TRACK: ("Event", "event"),
    EventType.PAGE: ("Name", "name"),
    EventType.SCREEN: ("Name", "name"),
    EventType.GROUP: ("Group ID", "group_id"),
    EventType.ALIAS: ("Previous ID", "previous_id"),
}


@dataclass(frozen=True)
class PrettyField:
    name: str
    value: str
    kind: str = "text"  # text, number, bool, null, json: how the value is styled


@dataclass(frozen=True)
class PrettySection:
    title: str
    fields: list[PrettyField]
    hidden: int = 0  # fields left out; the raw view has them


@dataclass(frozen=True)
class DebuggerRow:
    key: str  # unique on the page: "event-12", "refused-3"
    received_at: datetime
    headline: str = ""
    event: Event | None = None
    refusal: IngestFailure | None = None
    facts: list[PrettyField] = field(default_factory=list)
    sections: list[PrettySection] = field(default_factory=list)
    raw: str = ""

    @property
    def refused(self) -> bool:
        return self.refusal is not None


@dataclass(frozen=True)
class DebuggerPage:
    rows: list[DebuggerRow]
    after_event: int  # the newest event id seen: the next poll asks for newer ones
    after_refusal: int
    truncated: bool  # more arrived than are shown: the oldest of them were left out

    @property
    def newest_key(self) -> str:
        return self.rows[0].key if self.rows else ""


def debugger_page(
    source: Source,
    *,
    search: str = "",
    after_event: int = 0,
    after_refusal: int = 0,
    limit: int = DEBUGGER_ROWS,
) -> DebuggerPage:
    """The newest ``limit`` events and refusals of ``source``, newest first; with ``after_*``
    only those newer than what the page already shows."""
    events = debugger_events(source, search=search, after=after_event, limit=limit + 1)
    refusals = debugger_refusals(source, search=search, after=after_refusal, limit=limit + 1)
    rows = newest_first([*map(event_row, events), *map(refusal_row, refusals)])
    return DebuggerPage(
        rows=rows[:limit],
        after_event=max([after_event, *(e.pk for e in events)]),
        after_refusal=max([after_refusal, *(r.pk for r in refusals)]),
        truncated=len(rows) > limit,
    )


def newest_first(rows: Iterable[DebuggerRow]) -> list[DebuggerRow]:
    """Events and refusals interleaved by time; the id breaks ties, so every poll agrees."""
    return sorted(rows, key=lambda row: (row.received_at, row_id(row)), reverse=True)


def row_id(row: DebuggerRow) -> int:
    if row.event is not None:
        return row.event.pk
    return row.refusal.pk if row.refusal is not None else 0


def search_filter(search: str) -> Q:
    term = search.strip()
    return Q(event=term) | Q(user_id=term) | Q(anonymous_id=term) | Q(message_id=term)


def debugger_events(source: Source, *, search: str, after: int, limit: int) -> list[Event]:
    events = Event.objects.filter(source=source)
    if after:
        events = events.filter(id__gt=after)
    if search.strip():
        events = events.filter(search_filter(search))
    return list(events.order_by("-id")[:limit])


def debugger_refusals(
    source: Source, *, search: str, after: int, limit: int
) -> list[IngestFailure]:
    refusals = IngestFailure.objects.filter(source=source)
    if after:
        refusals = refusals.filter(id__gt=after)
    term = search.strip()
    if term:
        newest = IngestFailure.objects.filter(source=source).order_by("-id").values("id")
        refusals = refusals.filter(
            Q(excerpt__contains=term) | Q(reason__contains=term),
            id__in=newest[:REFUSED_SEARCH_SCOPE],
        )
    return list(refusals.order_by("-id")[:limit])


# Pretty views ---------------------------------------------------------------------------------


def event_row(event: Event) -> DebuggerRow:
    payload = event.payload if isinstance(event.payload, dict) else {}
    return DebuggerRow(
        key=f"event-{event.pk}",
        received_at=event.received_at,
        headline=headline(event, payload),
        event=event,
        facts=event_facts(event, payload),
        sections=event_sections(payload),
        raw=indented_json(payload),
    )


def refusal_row(refusal: IngestFailure) -> DebuggerRow:
    """What was refused, and why. The excerpt is the start of what was sent: shown as JSON
    when it still parses, as text when it was cut or never was JSON."""
    facts = [
        PrettyField("Reason", refusal.reason),
        PrettyField("Endpoint", f"/v1/{refusal.endpoint}" if refusal.endpoint else "—"),
    ]
    if refusal.batch_index is not None:
        facts.append(PrettyField("Batch index", str(refusal.batch_index), "number"))
    sections: list[PrettySection] = []
    raw = readable(refusal.excerpt)
    sent = parsed_or_none(refusal.excerpt)
    if isinstance(sent, dict):
        sections.append(section("What was sent", flatten(sent)))
        raw = indented_json(sent)
    return DebuggerRow(
        key=f"refused-{refusal.pk}",
        received_at=refusal.received_at,
        headline=refusal.reason,
        refusal=refusal,
        facts=facts,
        sections=sections,
        raw=raw,
    )


def indented_json(value: Any) -> str:
    """As the event page shows it (sorted keys, two spaces), by orjson: the standard library
    encodes indented JSON in pure Python, the slowest part of a page of a hundred rows."""
    return pretty_json(value)


def event_facts(event: Event, payload: Mapping[str, Any]) -> list[PrettyField]:
    """The fields an operator reads first, in the order Segment's debugger shows them."""
    context = mapping_at(payload, "context")
    library = mapping_at(context, "library")
    pairs: list[tuple[str, Any]] = [("Type", event.type)]
    if event.type in NAMED_BY:
        label, attribute = NAMED_BY[event.type]
        pairs.append((label, getattr(event, attribute)))
    pairs += [
        ("User ID", event.user_id),
        ("Anonymous ID", event.anonymous_id),
        ("Message ID", event.message_id),
        ("Timestamp", moment_text(event.timestamp)),
        ("Received", moment_text(event.received_at)),
        ("Sent at", moment_text(event.sent_at)),
        ("Library", " ".join(str(v) for v in (library.get("name"), library.get("version")) if v)),
        ("IP", context.get("ip")),
    ]
    return [PrettyField(name, str(value)) for name, value in pairs if value not in (None, "")]


def moment_text(moment: datetime | None) -> str | None:
    """To the millisecond, in UTC like the rest of the dashboard: ingest corrects clock skew
    with these, so the fraction matters."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def headline(event: Event, payload: Mapping[str, Any]) -> str:
    """What the row says after its type: the event's own label, or for an identify (which has
    none) who it is about, by the traits people recognise."""
    if event.label:
        return event.label
    traits = mapping_at(payload, "traits") or mapping_at(mapping_at(payload, "context"), "traits")
    for key in ("email", "name"):
        if isinstance(traits.get(key), str) and traits[key]:
            return str(traits[key])
    return ""


def mapping_at(value: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    found = value.get(key)
    return found if isinstance(found, dict) else {}


def event_sections(payload: Mapping[str, Any]) -> list[PrettySection]:
    sections: list[PrettySection] = []
    for title, key in (("Properties", "properties"), ("Traits", "traits")):
        value = payload.get(key)
        if isinstance(value, dict) and value:
            sections.append(section(title, flatten(value)))
    context = payload.get("context")
    if isinstance(context, dict) and context:
        sections.append(section("Context", flatten(context)))
    integrations = payload.get("integrations")
    if isinstance(integrations, dict) and integrations:
        sections.append(section("Integrations", flatten(integrations)))
    return sections


def section(title: str, fields: list[PrettyField]) -> PrettySection:
    shown = fields[:PRETTY_FIELDS_SHOWN]
    return PrettySection(title, shown, hidden=len(fields) - len(shown))


def flatten(value: Mapping[str, Any], prefix: str = "") -> list[PrettyField]:
    """Nested objects as dotted paths (``address.city``), the way mapping rules name them."""
    fields: list[PrettyField] = []
    for name, item in value.items():
        path = f"{prefix}{name}"
        if isinstance(item, dict) and item:
            fields.extend(flatten(item, f"{path}."))
        else:
            fields.append(pretty_value(path, item))
    return fields


def pretty_value(name: str, value: Any) -> PrettyField:
    if value is None:
        return PrettyField(name, "null", "null")
    if isinstance(value, bool):
        return PrettyField(name, "true" if value else "false", "bool")
    if isinstance(value, int | float):
        return PrettyField(name, pretty_json(value, indent=None), "number")
    if isinstance(value, str):
        return PrettyField(name, cut(readable(value)))
    return PrettyField(name, cut(pretty_json(value, indent=None, sort_keys=False)), "json")


def cut(text: str) -> str:
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"
