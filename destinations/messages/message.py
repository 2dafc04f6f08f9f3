"""Validate one Segment message and normalise it into what the store writes."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from destinations.messages.body import (
    MAX_EVENT_BYTES,
    MAX_JSON_DEPTH,
    TOO_DEEP,
    json_depth,
    type_name,
)
from destinations.traits import message_traits

CALL_TYPES = ("identify", "track", "page", "screen", "group", "alias")
MAX_MESSAGE_ID = 100
MAX_ID = 255
OBJECT_FIELDS = ("traits", "properties", "context", "integrations")
STRING_FIELDS = ("event", "name", "category")
# The event and page name columns hold 255 characters; PostgreSQL refuses a longer value (and
# with it the whole request), SQLite would keep it: refuse it per message on both.
MAX_NAME = 255
# What a timestamp may be once in UTC: Python's datetime (years 1 to 9999), less a day at either
# end so that showing it in any time zone, or correcting clock skew, cannot leave that range.
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)
STORABLE_RANGE = f"{EARLIEST.date().isoformat()} to {LATEST.date().isoformat()} in UTC"
ID_FIELDS = ("userId", "anonymousId", "groupId", "previousId")
# A \u0000 escape in serialised JSON that is not itself an escaped backslash followed by "u0000".
ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


class InvalidMessage(Exception):
    """One message refused; in a batch the others are still kept."""


@dataclass(slots=True)
class Message:
    type: str
    message_id: str
    user_id: str | None
    anonymous_id: str | None
    event: str | None
    name: str | None
    group_id: str | None
    previous_id: str | None
    timestamp: datetime
    original_timestamp: datetime | None
    sent_at: datetime | None
    payload: dict[str, Any]
    payload_json: bytes = field(repr=False, default=b"")

    @property
    def traits(self) -> dict[str, Any]:
        return message_traits(self.payload)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A batch's context, integrations and sentAt, which fill in what its items do not set,
    measured once for the whole batch."""

    fields: dict[str, Any]
    too_deep: bool

    @classmethod
    def of(cls, fields: dict[str, Any]) -> Envelope:
        return cls(fields, json_depth(fields, stop_after=MAX_JSON_DEPTH) > MAX_JSON_DEPTH)


def validate_message(
    item: Any,
    *,
    call_type: str | None,
    received_at: datetime,
    envelope: Envelope | None = None,
) -> Message:
    """Check one message against the Segment Spec and return it normalised.

    ``call_type`` comes from the endpoint (``/v1/track``); for batch items it is None and the
    item's own ``type`` decides. ``envelope`` holds the batch's context, integrations and sentAt,
    which fill in what the item does not set itself.
    """
    if not isinstance(item, dict):
        raise InvalidMessage(f"message must be a JSON object, got {type_name(item)}")
    if json_depth(item, stop_after=MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise InvalidMessage(TOO_DEEP)
    payload = dict(item)
    payload.pop("writeKey", None)
    if envelope and envelope.fields:
        merge_envelope(payload, envelope.fields)
        # The limit holds for what is stored: the item with the batch's context merged in.
        # That merge is shallow, so the result is no deeper than the deeper of the two: only
        # an envelope past the limit (rare, and small) makes the whole payload worth measuring.
        if envelope.too_deep and json_depth(payload, stop_after=MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
            raise InvalidMessage(f"{TOO_DEEP} once the batch's context is merged in")

    kind = call_type or payload.get("type")
    if kind is None or kind == "":
        raise InvalidMessage("missing type")
    if not isinstance(kind, str) or kind not in CALL_TYPES:
        raise InvalidMessage(f"unknown type {kind!r}; expected one of {', '.join(CALL_TYPES)}")
    payload["type"] = kind

    ids = {name: read_id(payload, name) for name in ID_FIELDS}
    for name in OBJECT_FIELDS:
        value = payload.get(name)
        if value is not None and not isinstance(value, dict):
            raise InvalidMessage(f"{name} must be an object, got {type_name(value)}")
    for name in STRING_FIELDS:
        value = payload.get(name)
        if value is not None and not isinstance(value, str):
            raise InvalidMessage(f"{name} must be a string, got {type_name(value)}")
        if isinstance(value, str) and len(value) > MAX_NAME:
            raise InvalidMessage(f"{name} is {len(value):,} characters; the limit is {MAX_NAME}")

    if not ids["userId"] and not ids["anonymousId"]:
        raise InvalidMessage("neither userId nor anonymousId is set")
    event_name = payload.get("event") or None
    if kind == "track" and not event_name:
        raise InvalidMessage("track call without event name")
    if kind == "group" and not ids["groupId"]:
        raise InvalidMessage("group call without groupId")
    if kind == "alias" and not ids["previousId"]:
        raise InvalidMessage("alias call without previousId")
    if kind == "alias" and not ids["userId"]:
        raise InvalidMessage("alias call without userId")

    message_id = payload.get("messageId")
    if message_id is None or message_id == "":
        message_id = f"switchboard-{uuid.uuid4()}"
    elif isinstance(message_id, bool) or not isinstance(message_id, (str, int)):
        raise InvalidMessage(f"messageId must be a string, got {type_name(message_id)}")
    message_id = str(message_id)
    if len(message_id) > MAX_MESSAGE_ID:
        raise InvalidMessage(
            f"messageId is {len(message_id)} characters; the limit is {MAX_MESSAGE_ID}"
        )
    payload["messageId"] = message_id

    original = read_time(payload, "originalTimestamp") or read_time(payload, "timestamp")
    sent_at = read_time(payload, "sentAt")
    if original and sent_at:
        # Segment's skew correction: trust the device's clock only for durations.
        timestamp = corrected_for_skew(received_at, sent_at=sent_at, original=original)
    else:
        timestamp = original or received_at
    payload["receivedAt"] = iso(received_at)
    payload["timestamp"] = iso(timestamp)
    if original:
        payload["originalTimestamp"] = iso(original)

    payload_json = orjson.dumps(payload)
    # The plain substring test first: the pattern, which tells an escaped backslash apart,
    # costs ten times as much, and almost no payload has the substring at all.
    if b"\\u0000" in payload_json and ESCAPED_NUL.search(payload_json):
        # PostgreSQL can store neither NUL in text nor \u0000 in jsonb; refuse it everywhere so
        # both backends keep the same events.
        raise InvalidMessage("a string contains a NUL character (\\u0000), which cannot be stored")
    if len(payload_json) > MAX_EVENT_BYTES:
        raise InvalidMessage(
            f"event is {len(payload_json):,} bytes; the limit is {MAX_EVENT_BYTES // 1024} KB"
        )

    return Message(
        type=kind,
        message_id=message_id,
        user_id=ids["userId"],
        anonymous_id=ids["anonymousId"],
        event=event_name if kind == "track" else None,
        name=(payload.get("name") or None) if kind in ("page", "screen") else None,
        group_id=ids["groupId"] if kind == "group" else None,
        previous_id=ids["previousId"] if kind == "alias" else None,
        timestamp=timestamp,
        original_timestamp=original,
        sent_at=sent_at,
        payload=payload,
        payload_json=payload_json,
    )


def merge_envelope(payload: dict[str, Any], envelope: dict[str, Any]) -> None:
    """Batch-level context and integrations apply to every item; the item's own keys win."""
    for name in ("context", "integrations"):
        outer = envelope.get(name)
        if isinstance(outer, dict) and outer:
            inner = payload.get(name)
            if inner is None:
                payload[name] = dict(outer)
            elif isinstance(inner, dict):
                payload[name] = {**outer, **inner}
    if "sentAt" not in payload and envelope.get("sentAt") is not None:
        payload["sentAt"] = envelope["sentAt"]


def read_id(payload: dict[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidMessage(f"{name} must be a string, got {type_name(value)}")
    text = str(value)
    if len(text) > MAX_ID:
        raise InvalidMessage(f"{name} is {len(text)} characters; the limit is {MAX_ID}")
    payload[name] = text
    return text


def read_time(payload: dict[str, Any], name: str) -> datetime | None:
    value = payload.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidMessage(f"{name} must be an ISO-8601 date-time string, got {type_name(value)}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidMessage(f"{name} is not an ISO-8601 date-time: {value[:40]!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        in_utc: datetime | None = moment.astimezone(UTC)
    except OverflowError:
        in_utc = None
    if in_utc is None or not EARLIEST <= in_utc <= LATEST:
        raise InvalidMessage(
            f"{name} {value[:40]!r} is outside the range Switchboard stores ({STORABLE_RANGE})"
        )
    return in_utc


def corrected_for_skew(received_at: datetime, *, sent_at: datetime, original: datetime) -> datetime:
    """When the event happened by the server's clock: received less the time the device says it
    waited between the event and sending it."""
    try:
        timestamp: datetime | None = received_at - (sent_at - original)
    except OverflowError:
        timestamp = None
    if timestamp is None or not EARLIEST <= timestamp <= LATEST:
        raise InvalidMessage(
            "sentAt and originalTimestamp are too far apart: correcting the clock skew between "
            f"them puts the event outside {STORABLE_RANGE}"
        )
    return timestamp


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Switchboard's own part of a message's context: system events, audience syncs and test calls
# mark themselves there, and what reads the marks (webhook triggers, Refiner's segment sync)
# must not be steered by a client. A message from outside never keeps it.
RESERVED_CONTEXT = "switchboard"


def without_reserved(document: Any) -> Any:
    """``document`` without ``context.switchboard`` (a shallow copy when there was one)."""
    if not isinstance(document, dict):
        return document
    context = document.get("context")
    if not isinstance(context, dict) or RESERVED_CONTEXT not in context:
        return document
    return {
        **document,
        "context": {k: v for k, v in context.items() if k != RESERVED_CONTEXT},
    }
