"""Webhooks: POST an event as JSON to any URL, when it matches the webhook's trigger.

Triggers: events received (optionally one call type and one event name), survey completed (the
"Survey Completed" events Refiner receivers store), a user merged or deleted, and a delivery
that failed permanently. The last two are Switchboard's own system events (track "User Merged",
"User Deleted", "Delivery Failed") marked ``context.switchboard.system`` and routed to webhooks
only. The body is the stored event. ``Authorization: Bearer <Secret Auth-Token>`` when a token
is set; Standard Webhooks headers (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``)
when a signing secret is set. Private and loopback addresses are refused at connect time, as
for every destination (``destinations.delivery.http``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

import orjson
import requests

from destinations.delivery.contract import (
    ConnectionFailed,
    Connector,
    DeliveryContext,
    OutboundRequest,
    SettingField,
    Skip,
    Verdict,
    classify_http,
    connection_test_timeout,
)
from destinations.system_events import (
    AUDIENCE_ENTERED,
    AUDIENCE_EXITED,
    DELIVERY_FAILED,
    SYSTEM_EVENTS,
    USER_CHANGED,
    is_system_event,
)

EVENTS = "events"
SURVEY_COMPLETED = "Survey Completed"
TRIGGERS = (
    (EVENTS, "Events received"),
    (SURVEY_COMPLETED, "Survey completed"),
    (USER_CHANGED, "User merged or deleted"),
    (DELIVERY_FAILED, "Delivery failed permanently"),
    (AUDIENCE_ENTERED, "User or account entered an audience"),
    (AUDIENCE_EXITED, "User or account left an audience"),
)
CALL_TYPES = (
    ("", "any call"),
    *((t, t) for t in ("identify", "track", "page", "screen", "group", "alias")),
)


class WebhookConnector(Connector):
    kind = "webhook"
    display_name = "Webhooks"
    test_label = "Send test"
    accepts = frozenset({"identify", "track", "page", "screen", "group", "alias"})
    settings_fields = (
        SettingField("url", "Destination URL"),
        SettingField("trigger", "Trigger Event", default=EVENTS, choices=TRIGGERS),
        SettingField(
            "event_type",
            "Event type",
            required=False,
            choices=CALL_TYPES,
            help="With Events received: only this call type",
        ),
        SettingField(
            "event_name",
            "Event name",
            required=False,
            help="With Events received: only track events of this name",
        ),
        SettingField(
            "auth_token",
            "Secret Auth-Token",
            secret=True,
            required=False,
            help="Sent as Authorization: Bearer <token>",
        ),
        SettingField(
            "signing_secret",
            "Signing secret",
            secret=True,
            required=False,
            help="Standard Webhooks secret (whsec_...): adds webhook-signature headers",
        ),
    )

    def route_context(self, destination: Any) -> Mapping[str, str]:
        return dict(destination.settings or {})

    def plan(self, payload: Mapping[str, Any], route_context: Any) -> Mapping[str, Any] | None:
        return {} if triggered(payload, route_context or {}) else None

    def translate(
        self, payload: Mapping[str, Any], context: DeliveryContext
    ) -> list[OutboundRequest] | Skip:
        return [webhook_request(payload, context.config)]

    def classify(self, response: requests.Response, request: OutboundRequest) -> Verdict:
        return classify_http(response, "the webhook URL")

    def check_config(self, config: Mapping[str, str]) -> None:
        super().check_config(config)
        secret = config.get("signing_secret")
        if secret and not signing_key(secret):
            raise ValueError(
                "Signing secret must be whsec_ followed by base64 (Standard Webhooks), "
                "so receivers can verify it; use Generate for a new one"
            )

    def test_connection(self, config: Mapping[str, str], session: requests.Session) -> str:
        """Send test: a sample event, signed and authorised as real ones are."""
        outbound = webhook_request(test_event(), config)
        try:
            response = session.post(
                outbound.url,
                data=outbound.body,
                headers=dict(outbound.headers),
                timeout=connection_test_timeout(),
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise ConnectionFailed.unreachable(outbound.url, exc) from exc
        verdict = self.classify(response, outbound)
        if not verdict.delivered:
            raise ConnectionFailed(f"The test was not accepted: {verdict.reason}")
        elapsed = int(response.elapsed.total_seconds() * 1000)
        return f"Test event accepted: HTTP {response.status_code} in {elapsed} ms"


def test_event() -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Switchboard Test",
        "userId": "switchboard-test",
        "messageId": f"switchboard-test-{int(time.time() * 1000)}",
        "properties": {"note": "Sent with Send test from the Switchboard dashboard"},
        "context": {"switchboard": {"test": True}},
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def triggered(payload: Mapping[str, Any], config: Mapping[str, str]) -> bool:
    trigger = config.get("trigger") or EVENTS
    if trigger in SYSTEM_EVENTS:
        return is_system_event(payload) and payload.get("event") in SYSTEM_EVENTS[trigger]
    if is_system_event(payload):
        return False
    if trigger == SURVEY_COMPLETED:
        return payload.get("type") == "track" and payload.get("event") == SURVEY_COMPLETED
    wanted_type, wanted_name = config.get("event_type"), config.get("event_name")
    if wanted_type and payload.get("type") != wanted_type:
        return False
    return not wanted_name or payload.get("event") == wanted_name


def webhook_request(
    payload: Mapping[str, Any], config: Mapping[str, str], *, now: float | None = None
) -> OutboundRequest:
    body = orjson.dumps(payload)
    headers = {"Content-Type": "application/json"}
    if config.get("auth_token"):
        headers["Authorization"] = f"Bearer {config['auth_token']}"
    if config.get("signing_secret"):
        # The same id on every retry, as Standard Webhooks asks, so receivers can dedupe.
        message_id = f"msg_{payload.get('messageId', '')}"
        timestamp = str(int(now if now is not None else time.time()))
        headers.update(
            {
                "webhook-id": message_id,
                "webhook-timestamp": timestamp,
                "webhook-signature": sign(config["signing_secret"], message_id, timestamp, body),
            }
        )
    return OutboundRequest(method="POST", url=config.get("url", ""), body=body, headers=headers)


def sign(secret: str, message_id: str, timestamp: str, body: bytes) -> str:
    """Standard Webhooks: ``v1,`` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"));
    the key is the base64 after ``whsec_``."""
    key = signing_key(secret) or secret.encode()
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signing_key(secret: str) -> bytes | None:
    """The HMAC key of a ``whsec_<base64>`` secret; None when it is not one."""
    if not secret.startswith("whsec_"):
        return None
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except ValueError:
        return None
    return key or None


def new_signing_secret() -> str:
    import secrets

    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


CONNECTOR = WebhookConnector()
