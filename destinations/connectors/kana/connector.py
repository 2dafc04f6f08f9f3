"""Kana (https://usekana.com): users with billing ids, and feature usage.

Kana's Admin API is GraphQL over ``POST`` to the API URL, with ``Authorization: <key>`` (no
``Bearer``). It answers HTTP 200 even when it fails; failures come in the ``errors`` array.

- identify -> ``createUser`` with only ``id`` (userId), ``name``, ``email`` and ``billingId``
  (``traits.billingUserId``, else ``traits.billingId``); every other trait is dropped. If Kana
  already has the user, ``updateUser`` sends the name (Kana's API cannot change email or billing
  id). A billing id that is not a Stripe or Chargebee customer id is not sent; the delivery and
  the user's page say why.
- track -> ``recordUsage`` ``{userId, featureId, delta}``: ``properties.featureId``, else the
  first matching mapping rule, names the feature; ``properties.delta`` (a whole number, default
  1) is the amount. Without userId the event is rejected, as Kana's own endpoint does with 400.
  Usage for a user Kana does not know yet is retried while that user's identify may still be on
  its way, then the user is created from what the event says, and the usage recorded.
- page, screen, group and alias are not accepted: no delivery is created for them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests

from destinations.conditions import matches_all
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
from destinations.identity.billing_ids import billing_id_problem
from destinations.traits import message_traits, trait_billing_id

DEFAULT_API_URL = "https://api.usekana.com/graphql"
NEEDS_USER_ID = "rejected: Kana needs a userId"
DELTA_FAULT = "properties.delta "
UNMAPPED = "unmapped: no featureId and no mapping rule matched"
# Attempts during which usage for an unknown user waits for that user's identify.
WAIT_FOR_USER_ATTEMPTS = 2

CREATE_USER = "mutation CreateUser($input: CreateUserInput!) { createUser(input: $input) { id } }"
UPDATE_USER = (
    "mutation UpdateUser($id: ID!, $input: UpdateUserInput!) "
    "{ updateUser(id: $id, input: $input) { id } }"
)
RECORD_USAGE = (
    "mutation RecordUsage($input: CreateUsageEventInput!) "
    "{ recordUsage(input: $input) { recorded reason } }"
)
FEATURES = "query Features { features { id name } }"

# Kana's words for usage of a user it does not know ("User u1 not found"), and only those: a
# missing feature ("Feature users not found") is a permanent refusal.
UNKNOWN_USER = re.compile(r"(?:^|; )User [^;]* not found")
# GraphQL error codes worth retrying; any other code is a permanent refusal.
RETRYABLE_CODES = frozenset(
    {"INTERNAL_SERVER_ERROR", "RATE_LIMITED", "SERVICE_UNAVAILABLE", "TIMEOUT", "UNAVAILABLE"}
)


@dataclass(frozen=True, slots=True)
class RuleView:
    id: int
    feature_id: str
    conditions: tuple[Mapping[str, Any], ...]


class KanaConnector(Connector):
    kind = "kana"
    display_name = "Kana"
    accepts = frozenset({"identify", "track"})
    settings_fields = (
        SettingField("api_key", "API Key", secret=True, help="Kana's Admin API (backend) key"),
        SettingField("api_url", "API URL", default=DEFAULT_API_URL, required=False),
    )
    event_fault_prefixes = (DELTA_FAULT,)

    def route_context(self, destination: Any) -> tuple[RuleView, ...]:
        return tuple(
            RuleView(
                id=rule.pk, feature_id=rule.feature_id, conditions=tuple(rule.all_conditions())
            )
            for rule in destination.mapping_rules.filter(enabled=True).order_by("position", "id")
        )

    def plan(self, payload: Mapping[str, Any], route_context: Any) -> Mapping[str, Any] | Skip:
        if not payload.get("userId"):
            return Skip(NEEDS_USER_ID)
        if payload.get("type") == "identify":
            problem = billing_id_problem(trait_billing_id(message_traits(dict(payload))))
            return {"note": problem} if problem else {}
        properties = payload.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        feature = properties.get("featureId")
        plan: dict[str, Any] = {}
        if isinstance(feature, str) and feature.strip():
            plan["featureId"] = feature.strip()
        else:
            rule = first_matching_rule(payload, route_context or ())
            if rule is None:
                return Skip(UNMAPPED)
            plan.update(featureId=rule.feature_id, ruleId=rule.id)
        delta = usage_delta(properties)
        if isinstance(delta, Skip):
            return delta
        plan["delta"] = delta
        return plan

    def translate(
        self, payload: Mapping[str, Any], context: DeliveryContext
    ) -> list[OutboundRequest] | Skip:
        user_id = str(payload.get("userId") or "")
        if not user_id:
            return Skip(NEEDS_USER_ID)
        config = context.config
        if payload.get("type") == "identify":
            user = user_fields(payload)
            update = graphql(config, UPDATE_USER, {"id": user_id, "input": updatable(user)})
            create = graphql(config, CREATE_USER, {"input": user}, fallback=(update,))
            return [create]
        if "featureId" not in context.plan:
            return Skip(UNMAPPED)
        usage = {
            "userId": user_id,
            "featureId": context.plan["featureId"],
            "delta": context.plan.get("delta", 1),
        }
        if context.attempt <= WAIT_FOR_USER_ATTEMPTS:
            return [graphql(config, RECORD_USAGE, {"input": usage}, subject=user_id)]
        # The user's identify has had its chance: create the user from what this event says
        # (an existing user is left as it is), then record the usage.
        create = graphql(config, CREATE_USER, {"input": user_fields(payload)})
        record = graphql(config, RECORD_USAGE, {"input": usage})
        return [graphql(config, RECORD_USAGE, {"input": usage}, fallback=(create, record))]

    def classify(self, response: requests.Response, request: OutboundRequest) -> Verdict:
        if response.status_code != 200:
            return classify_http(response, self.display_name)
        try:
            body = response.json()
        except ValueError:
            return Verdict.retry(f"Kana answered something other than JSON: {response.text[:200]}")
        errors = body.get("errors") if isinstance(body, dict) else None
        operation = operation_of(request)
        if errors:
            return classify_errors(errors, operation, has_fallback=bool(request.fallback))
        if operation == "recordUsage":
            result = ((body.get("data") or {}).get("recordUsage")) or {}
            if result.get("recorded") is False:
                return Verdict.fail(f"Kana did not record the usage: {result.get('reason')}")
        return Verdict.ok()

    def test_connection(self, config: Mapping[str, str], session: requests.Session) -> str:
        features = fetch_features(config, session)
        names = ", ".join(f["id"] for f in features[:5])
        more = f" and {len(features) - 5} more" if len(features) > 5 else ""
        return (
            f"Connected to Kana: {len(features)} features ({names}{more})"
            if features
            else ("Connected to Kana: no features defined yet")
        )


def fetch_features(config: Mapping[str, str], session: requests.Session) -> list[dict[str, Any]]:
    """Kana's feature list, for the rule editor's picker and Test connection."""
    request = graphql(config, FEATURES, {})
    try:
        response = session.post(
            request.url,
            json=request.json,
            headers=dict(request.headers),
            timeout=connection_test_timeout(5),
        )
    except requests.RequestException as exc:
        raise ConnectionFailed.unreachable(request.url, exc) from exc
    if response.status_code != 200:
        raise ConnectionFailed(f"Kana answered HTTP {response.status_code}: {error_text(response)}")
    try:
        body = response.json()
    except ValueError as exc:
        raise ConnectionFailed(f"{request.url} did not answer JSON: {response.text[:200]}") from exc
    if body.get("errors"):
        raise ConnectionFailed("Kana refused: " + "; ".join(error_messages(body["errors"])))
    features = (body.get("data") or {}).get("features")
    if not isinstance(features, list):
        raise ConnectionFailed(f"Kana's answer has no feature list: {response.text[:200]}")
    return [f for f in features if isinstance(f, dict) and f.get("id")]


def first_matching_rule(payload: Mapping[str, Any], rules: Sequence[RuleView]) -> RuleView | None:
    for rule in rules:
        if matches_all(payload, rule.conditions):
            return rule
    return None


def usage_delta(properties: Mapping[str, Any]) -> int | Skip:
    delta = properties.get("delta", 1)
    if delta is None:
        return 1
    if isinstance(delta, bool) or not isinstance(delta, int):
        return Skip(f"{DELTA_FAULT}must be a whole number, got {delta!r}", failed=True)
    if not -(2**31) <= delta < 2**31:
        # Kana's Int is 32 bits: refused here with the reason rather than by Kana later.
        return Skip(f"{DELTA_FAULT}{delta} is outside Kana's range (32-bit)", failed=True)
    return delta


def user_fields(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The only traits Kana keeps: name, email and a valid billing id."""
    traits = message_traits(dict(payload))
    user: dict[str, Any] = {"id": str(payload.get("userId"))}
    _, email = subject_of(payload)
    name = traits.get("name")
    if isinstance(name, str) and name.strip():
        user["name"] = name.strip()
    if email:
        user["email"] = email
    billing_id = trait_billing_id(traits)
    if billing_id and billing_id_problem(billing_id) is None:
        user["billingId"] = billing_id
    return user


def updatable(user: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": user["name"]} if "name" in user else {}


def graphql(
    config: Mapping[str, str],
    query: str,
    variables: Mapping[str, Any],
    *,
    subject: str | None = None,
    fallback: tuple[OutboundRequest, ...] = (),
) -> OutboundRequest:
    return OutboundRequest(
        method="POST",
        url=config.get("api_url") or DEFAULT_API_URL,
        json={"query": query, "variables": dict(variables)},
        headers={"Authorization": config.get("api_key", "")},
        subject=subject or subject_of_variables(variables),
        fallback=fallback,
    )


def subject_of_variables(variables: Mapping[str, Any]) -> str | None:
    """The user a request is about: ``recordUsage`` names it ``input.userId``, ``createUser``
    ``input.id``, ``updateUser`` ``id``. It decides the lane, so identify goes before usage."""
    given = variables.get("input") or {}
    value = given.get("userId") or given.get("id") or variables.get("id")
    return str(value) if value else None


def operation_of(request: OutboundRequest) -> str:
    query = (request.json or {}).get("query", "") if isinstance(request.json, dict) else ""
    match = re.search(r"\{\s*(\w+)", query)
    return match.group(1) if match else ""


def error_messages(errors: Any) -> list[str]:
    if not isinstance(errors, list):
        return [str(errors)[:200]]
    return [str(e.get("message", e))[:200] if isinstance(e, dict) else str(e)[:200] for e in errors]


def error_codes(errors: Any) -> set[str]:
    codes: set[str] = set()
    for error in errors if isinstance(errors, list) else []:
        extensions = error.get("extensions") if isinstance(error, dict) else None
        if isinstance(extensions, dict) and isinstance(extensions.get("code"), str):
            codes.add(extensions["code"])
    return codes


def classify_errors(errors: Any, operation: str, *, has_fallback: bool) -> Verdict:
    codes = error_codes(errors)
    text = "; ".join(error_messages(errors))
    reason = f"Kana refused {operation or 'the request'}: {text}"
    if "CONFLICT" in codes or "already exists" in text.lower():
        # identify: the user exists, so update it instead. Creating a user before recording
        # usage: it exists, which is all that was needed.
        return Verdict(delivered=not has_fallback, use_fallback=has_fallback, reason=reason)
    if operation == "recordUsage" and UNKNOWN_USER.search(text):
        return Verdict(
            delivered=False, use_fallback=True, reason=f"Kana does not know the user yet: {text}"
        )
    if codes & RETRYABLE_CODES:
        return Verdict.retry(reason)
    if "UNAUTHENTICATED" in codes or "FORBIDDEN" in codes:
        return Verdict.fail(f"Kana refused the API key: {text}")
    return Verdict.fail(reason)


CONNECTOR = KanaConnector()
