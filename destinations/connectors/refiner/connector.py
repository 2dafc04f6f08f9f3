"""Refiner (https://refiner.io): identify, group as account, track, and page/screen as a ping.

Requests, all ``POST`` with JSON and ``Authorization: Bearer <API key>``:
- identify -> ``/identify-user`` ``{id, email, ...traits flat}``
- group -> ``/identify-user`` ``{id, email, account: {id: groupId, ...group traits}}``
- track -> ``/track-event`` ``{id, email, event}``; properties are not sent (Refiner drops them)
- page, screen -> ``/identify-user`` with only ``id``/``email``: Refiner's Segment destination
  uses a page call only as a ping that refreshes the user's last-seen time, and its REST API
  has no ping endpoint, so the identifier-only identify is that ping (no page name or URL).
alias is not accepted: Refiner has no way to merge two ids.

An audience's sync (an identify) to a destination that keeps a manual segment for that audience
is followed by ``POST /sync-segment`` (entered) or ``DELETE /sync-segment`` (left) with
``{id or email, segment_uuid}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
    error_text,
    subject_of,
)
from destinations.models import AudienceTarget
from destinations.traits import message_traits

DEFAULT_BASE_URL = "https://api.refiner.io/v1"
NO_SUBJECT = "no userId or email: Refiner cannot identify this user"
# Keys Refiner reads as the identifier or the account: a trait of the same name must not
# overwrite them.
RESERVED = frozenset({"id", "email", "account"})


class RefinerConnector(Connector):
    kind = "refiner"
    display_name = "Refiner"
    accepts = frozenset({"identify", "group", "track", "page", "screen"})
    settings_fields = (
        SettingField("api_key", "API Key", secret=True, help="Refiner > Settings > API key"),
        SettingField("base_url", "Base URL", default=DEFAULT_BASE_URL, required=False),
    )
    # Refiner answers 429 past about 4,000 requests a minute per key and 100 per user.
    requests_per_minute = 4000
    subject_requests_per_minute = 100

    def route_context(self, destination: Any) -> Mapping[int, str]:
        """The manual segment this destination keeps in step with each audience that has one
        (read once per routing-cache refresh)."""
        targets = AudienceTarget.objects.filter(destination_id=destination.pk).exclude(
            refiner_segment=""
        )
        return dict(targets.values_list("audience_id", "refiner_segment"))

    def plan(self, payload: Mapping[str, Any], route_context: Any) -> Mapping[str, Any]:
        """An audience's sync to a destination that keeps a segment for that audience carries
        the segment on its delivery, for ``translate``."""
        audience = audience_of(payload).get("id")
        segments = route_context if isinstance(route_context, Mapping) else {}
        segment = segments.get(audience) if isinstance(audience, int) else None
        return {"segment": segment} if segment else {}

    def translate(
        self, payload: Mapping[str, Any], context: DeliveryContext
    ) -> list[OutboundRequest] | Skip:
        requests_ = self._translate(payload, context)
        segment = context.plan.get("segment")
        if isinstance(requests_, Skip) or not segment or payload.get("type") != "identify":
            return requests_
        # After the identify (which creates the contact), into or out of the segment.
        entered = bool(audience_of(payload).get("entered"))
        body = {**requests_[0].json, "segment_uuid": segment}
        body = {k: v for k, v in body.items() if k in ("id", "email", "segment_uuid")}
        sync = OutboundRequest(
            method="POST" if entered else "DELETE",
            url=base_url(context.config) + "/sync-segment",
            json=body,
            headers=auth_headers(context.config),
            subject=requests_[0].subject,
        )
        return [*requests_, sync]

    def _translate(
        self, payload: Mapping[str, Any], context: DeliveryContext
    ) -> list[OutboundRequest] | Skip:
        config = context.config
        user_id, email = subject_of(payload)
        if not user_id and not email:
            return Skip(NO_SUBJECT)
        who: dict[str, Any] = {"id": user_id} if user_id else {}
        if email:
            who["email"] = email
        kind = payload.get("type")
        if kind == "identify":
            traits = flat_traits(message_traits(dict(payload)))
            return [self._post(config, "/identify-user", {**traits, **who}, user_id or email)]
        if kind == "group":
            group_traits = payload.get("traits") if isinstance(payload.get("traits"), dict) else {}
            account = {**flat_traits(group_traits or {}), "id": payload.get("groupId")}
            body = {**who, "account": account}
            return [self._post(config, "/identify-user", body, user_id or email)]
        if kind == "track":
            body = {**who, "event": payload.get("event")}
            return [self._post(config, "/track-event", body, user_id or email)]
        if kind in ("page", "screen"):
            return [self._post(config, "/identify-user", who, user_id or email)]
        return Skip(f"Refiner does not accept {kind} calls")

    def classify(self, response: requests.Response, request: OutboundRequest) -> Verdict:
        text = error_text(response) if response.status_code in (401, 404) else ""
        if "key" in text.lower():
            # Refiner answers an unknown key with 404, which reads like a wrong path: say so.
            return Verdict.fail(
                f"Refiner refused the API key (HTTP {response.status_code}): {text}"
            )
        return classify_http(response, self.display_name)

    def test_connection(self, config: Mapping[str, str], session: requests.Session) -> str:
        url = base_url(config) + "/"
        try:
            response = session.get(
                url, headers=auth_headers(config), timeout=connection_test_timeout()
            )
        except requests.RequestException as exc:
            raise ConnectionFailed.unreachable(url, exc) from exc
        if response.status_code != 200:
            raise ConnectionFailed(
                f"Refiner answered HTTP {response.status_code}: {error_text(response)}"
            )
        try:
            data = response.json()
        except ValueError as exc:
            raise ConnectionFailed(f"{url} did not answer JSON: {response.text[:200]}") from exc
        name = data.get("project_name") if isinstance(data, dict) else None
        if not name:
            raise ConnectionFailed(f"{url} answered without a project name: {response.text[:200]}")
        return f"Connected to Refiner project {name!r}"

    def _post(
        self, config: Mapping[str, str], path: str, body: dict[str, Any], subject: str | None
    ) -> OutboundRequest:
        return OutboundRequest(
            method="POST",
            url=base_url(config) + path,
            json=body,
            headers=auth_headers(config),
            subject=subject,
        )


def audience_of(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    """What an audience sync says about its audience (``context.switchboard.audience``)."""
    context = payload.get("context")
    own = context.get("switchboard") if isinstance(context, Mapping) else None
    audience = own.get("audience") if isinstance(own, Mapping) else None
    return audience if isinstance(audience, Mapping) else {}


def base_url(config: Mapping[str, str]) -> str:
    return (config.get("base_url") or DEFAULT_BASE_URL).rstrip("/")


def auth_headers(config: Mapping[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {config.get('api_key', '')}"}


def flat_traits(traits: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Refiner keeps flat attributes: ``{"address": {"city": "Oslo"}}`` becomes
    ``{"address_city": "Oslo"}``. Lists and scalars pass through; Engage audience flags
    (``snake_cased_key: true``) are ordinary booleans here."""
    flat: dict[str, Any] = {}
    for key, value in traits.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flat_traits(value, prefix=f"{name}_"))
        elif not prefix and name in RESERVED:
            continue
        else:
            flat[name] = value
    return flat


CONNECTOR = RefinerConnector()
