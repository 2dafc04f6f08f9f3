"""What a Refiner webhook call does: check the token, validate, store the call once, update the
user and store the event it describes (routed to destinations and webhooks like any other).

A completed survey becomes a "Survey Completed" track event whose properties are the answers,
the form and the response; "Saw Survey", "Dismissed Survey" and "Entered Segment" become events
of those names. Refiner's attributes are merged into the user's traits and the answers kept
under ``refiner_answers``. The event is not sent back to Refiner (``{"Refiner": false}``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import orjson
from django.db import IntegrityError, transaction
from django.utils import timezone

from destinations.connectors.refiner.receivers import token_matches
from destinations.ingest.store import store_messages
from destinations.messages.body import MAX_JSON_DEPTH, TOO_DEEP, json_depth, type_name
from destinations.messages.message import (
    ESCAPED_NUL,
    MAX_ID,
    MAX_NAME,
    InvalidMessage,
    validate_message,
)
from destinations.models import (
    CallOutcome,
    Event,
    Profile,
    RefinerCall,
    RefinerReceiver,
    RefinerTrigger,
)
from destinations.sources import internal_source
from destinations.traits import normalize_email

logger = logging.getLogger(__name__)
MAX_BODY = 256 * 1024
EXCERPT = 2000


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]


def refused(receiver: RefinerReceiver | None, status: int, reason: str, raw: bytes = b"") -> Answer:
    if receiver is not None:
        RefinerCall.objects.create(
            receiver=receiver,
            status_code=status,
            outcome=CallOutcome.REFUSED,
            detail=reason,
            excerpt=raw[:EXCERPT].decode("utf-8", "replace").replace("\x00", "\ufffd"),
        )
    logger.info("Refiner webhook refused (%s): %s", status, reason)
    return Answer(status, {"success": False, "error": reason})


def handle_call(receiver: RefinerReceiver | None, authorization: str, raw: bytes) -> Answer:
    if receiver is None:
        return refused(None, 404, "No such webhook receiver")
    if not receiver.enabled:
        # Logged: the operator should see that Refiner still calls a receiver turned off.
        return refused(receiver, 404, "This webhook receiver is disabled")
    if not authorization:
        return refused(receiver, 401, "Missing Authorization: Bearer <Secret Auth-Token>")
    if not token_matches(receiver, authorization):
        return refused(receiver, 401, "Wrong Secret Auth-Token")
    if len(raw) > MAX_BODY:
        return refused(receiver, 413, f"Body is over {MAX_BODY // 1024} KB", raw)
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return refused(receiver, 400, f"Invalid JSON: {exc}", raw)
    problem = shape_problem(payload) or storage_problem(raw, payload)
    if problem:
        return refused(receiver, 422, problem, raw)
    trigger = payload["triggered_event"]
    key = idempotency_key(payload, raw)
    if receiver.trigger not in (RefinerTrigger.ANY, trigger):
        why = f"this receiver listens for {receiver.trigger!r}, not {trigger!r}"
        return record(receiver, payload, key, CallOutcome.IGNORED, why)
    return accept(receiver, payload, key)


def shape_problem(payload: Any) -> str | None:
    if not isinstance(payload, dict):
        return f"Body must be a JSON object, got {type_name(payload)}"
    trigger = payload.get("triggered_event")
    if not isinstance(trigger, str) or not trigger.strip():
        return "triggered_event is missing"
    if len(trigger) > MAX_NAME:
        return f"triggered_event is {len(trigger):,} characters; the limit is {MAX_NAME}"
    if not payload.get("remote_id") and not payload.get("email"):
        return "neither remote_id nor email is set: the user cannot be identified"
    remote_id = payload.get("remote_id")
    if remote_id not in (None, "") and (
        isinstance(remote_id, bool) or not isinstance(remote_id, str | int)
    ):
        return f"remote_id must be a string, got {type_name(remote_id)}"
    if len(str(remote_id or "")) > MAX_ID:
        return f"remote_id is over {MAX_ID} characters"
    for name in ("email", "uuid"):
        value = payload.get(name)
        if value is not None and not isinstance(value, str):
            return f"{name} must be a string, got {type_name(value)}"
        if isinstance(value, str) and len(value) > MAX_ID:
            return f"{name} is over {MAX_ID} characters"
    for name in ("attributes", "account", "form", "response"):
        value = payload.get(name)
        if value is not None and not isinstance(value, dict):
            return f"{name} must be an object, got {type_name(value)}"
    segments = payload.get("segments")
    if segments is not None and not isinstance(segments, list):
        return f"segments must be an array, got {type_name(segments)}"
    response = payload.get("response") or {}
    if trigger == RefinerTrigger.SURVEY_COMPLETED and not isinstance(response.get("data"), dict):
        return "response.data (the answers) is missing for Survey Completed"
    return None


def storage_problem(raw: bytes, payload: Any) -> str | None:
    """What neither database could keep, refused the same way on both."""
    if json_depth(payload, stop_after=MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        return TOO_DEEP
    if ESCAPED_NUL.search(raw):
        return "a string contains a NUL character (\\u0000), which cannot be stored"
    return None


def idempotency_key(payload: dict[str, Any], raw: bytes) -> str:
    response_uuid = (payload.get("response") or {}).get("uuid")
    if isinstance(response_uuid, str) and response_uuid:
        return f"{payload['triggered_event']}:{response_uuid}"[:100]
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:64]


def record(
    receiver: RefinerReceiver,
    payload: dict[str, Any],
    key: str,
    outcome: str,
    detail: str,
    event: Event | None = None,
) -> Answer:
    RefinerCall.objects.create(
        receiver=receiver,
        # Only an accepted call claims the key: an ignored one may come again and be ignored.
        idempotency_key=key if outcome == CallOutcome.ACCEPTED else None,
        status_code=200,
        outcome=outcome,
        detail=detail,
        payload=payload,
        event=event,
    )
    return Answer(200, {"success": True, "outcome": outcome, "detail": detail})


def accept(receiver: RefinerReceiver, payload: dict[str, Any], key: str) -> Answer:
    if RefinerCall.objects.filter(receiver=receiver, idempotency_key=key).exists():
        return duplicate(receiver, key)
    try:
        with transaction.atomic():
            update_profile(payload)
            event = store_event(payload, key)
            who = event.user_id or event.anonymous_id
            detail = f"stored as {event.event!r} for {who}"
            return record(receiver, payload, key, CallOutcome.ACCEPTED, detail, event)
    except IntegrityError:
        # The same call arriving twice at once: the unique key lets one through.
        return duplicate(receiver, key)
    except InvalidMessage as exc:
        return refused(receiver, 422, f"cannot be stored as an event: {exc}")


def duplicate(receiver: RefinerReceiver, key: str) -> Answer:
    RefinerCall.objects.create(
        receiver=receiver,
        status_code=200,
        outcome=CallOutcome.DUPLICATE,
        detail=f"already received ({key})",
    )
    return Answer(200, {"success": True, "outcome": CallOutcome.DUPLICATE})


def update_profile(payload: dict[str, Any]) -> None:
    remote_id = str(payload.get("remote_id") or "") or None
    email = normalize_email(payload.get("email"))
    profile = None
    if remote_id:
        profile, _ = Profile.objects.get_or_create(user_id=remote_id, defaults={"email": email})
    elif email:
        profile = (
            Profile.objects.filter(email=email, merged_into__isnull=True).order_by("id").first()
        )
    if profile is None:
        return
    traits = dict(profile.traits or {})
    attributes = payload.get("attributes")
    if isinstance(attributes, dict):
        traits.update(attributes)
    response, form = payload.get("response") or {}, payload.get("form") or {}
    if isinstance(response.get("data"), dict):
        # Attributes are the customer's to name: refiner_answers may arrive there as anything.
        earlier = traits.get("refiner_answers")
        answers = dict(earlier) if isinstance(earlier, dict) else {}
        answers[str(form.get("name") or form.get("uuid") or "survey")] = response["data"]
        traits["refiner_answers"] = answers
    segments = payload.get("segments")
    if isinstance(segments, list):
        traits["refiner_segments"] = [s.get("name") for s in segments if isinstance(s, dict)]
    profile.traits = traits
    if email and not profile.email:
        profile.email = email
    profile.last_seen_at = timezone.now()
    profile.save(update_fields=["traits", "email", "last_seen_at"])


def store_event(payload: dict[str, Any], key: str) -> Event:
    response, form = payload.get("response") or {}, payload.get("form") or {}
    properties: dict[str, Any] = {}
    if isinstance(response.get("data"), dict):
        properties.update(response["data"])
    properties.update(
        {
            "form_uuid": form.get("uuid"),
            "form_name": form.get("name"),
            "response_uuid": response.get("uuid"),
            "completed_at": response.get("completed_at"),
            "contact_uuid": payload.get("uuid"),
        }
    )
    message: dict[str, Any] = {
        "type": "track",
        "event": payload["triggered_event"],
        "messageId": f"refiner-{key}"[:100],
        "properties": {k: v for k, v in properties.items() if v is not None},
        "context": {
            "library": {"name": "refiner-webhook"},
            "traits": {"email": payload["email"]} if payload.get("email") else {},
        },
        # Back to Refiner would only echo what Refiner already knows.
        "integrations": {"Refiner": False},
    }
    if payload.get("remote_id"):
        message["userId"] = str(payload["remote_id"])
    else:
        message["anonymousId"] = f"refiner-{payload.get('uuid') or payload['email']}"
    now = timezone.now()
    validated = validate_message(message, call_type=None, received_at=now)
    source = internal_source()
    store_messages(source_id=source.pk, messages=[validated], received_at=now)
    return Event.objects.get(source=source, message_id=validated.message_id)
