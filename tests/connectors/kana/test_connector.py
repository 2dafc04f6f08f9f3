"""The Kana connector's planning, translation (pure) and GraphQL answer classification."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import requests

from destinations.connectors.kana.connector import (
    NEEDS_USER_ID,
    UNMAPPED,
    KanaConnector,
    RuleView,
    billing_id_problem,
)
from destinations.delivery.contract import DeliveryContext, OutboundRequest, Skip

kana = KanaConnector()
CONFIG = {"api_key": "prv_key", "api_url": "https://kana.test/graphql"}
RULES = (
    RuleView(
        id=7,
        feature_id="exports",
        conditions=(
            {"path": "event", "op": "equals", "value": "Report Exported"},
            {"path": "properties.object.name", "op": "equals", "value": "invoice"},
        ),
    ),
    RuleView(
        id=8,
        feature_id="any-export",
        conditions=({"path": "event", "op": "contains", "value": "Export"},),
    ),
)


def track(**properties: Any) -> dict[str, Any]:
    return {"type": "track", "userId": "u1", "event": "Report Exported", "properties": properties}


def only(result: list[OutboundRequest] | Skip) -> OutboundRequest:
    assert isinstance(result, list), result
    [request] = result
    return request


def test_identify_keeps_only_name_email_and_billing_id() -> None:
    payload = {
        "type": "identify",
        "userId": "u1",
        "traits": {"name": "Ada", "email": "ada@x.co", "billingUserId": "cus_123", "plan": "pro"},
    }
    create = only(kana.translate(payload, DeliveryContext(config=CONFIG)))
    assert create.url == "https://kana.test/graphql"
    assert create.headers == {"Authorization": "prv_key"}
    assert create.json["variables"] == {
        "input": {"id": "u1", "name": "Ada", "email": "ada@x.co", "billingId": "cus_123"}
    }
    [update] = create.fallback
    assert update.json["variables"] == {"id": "u1", "input": {"name": "Ada"}}


def test_billing_id_key_is_accepted_too_and_invalid_ones_are_not_sent() -> None:
    payload = {"type": "identify", "userId": "u1", "traits": {"billingId": "AzZTZgSs9sXh71Xo"}}
    create = only(kana.translate(payload, DeliveryContext(config=CONFIG)))
    assert create.json["variables"]["input"]["billingId"] == "AzZTZgSs9sXh71Xo"
    bad = {"type": "identify", "userId": "u1", "traits": {"billingId": "ada@x.co"}}
    assert (
        "billingId"
        not in only(kana.translate(bad, DeliveryContext(config=CONFIG))).json["variables"]["input"]
    )
    assert kana.plan(bad, RULES) == {
        "note": "billing id 'ada@x.co' is not a Stripe (cus_...) or Chargebee customer id"
    }


@pytest.mark.parametrize(
    ("value", "ok"),
    [("cus_Nffrw2", True), ("AzZTZgSs9sXh71Xo", True), ("sub_123", False), ("a b", False)],
)
def test_billing_id_rules(value: str, ok: bool) -> None:
    assert (billing_id_problem(value) is None) is ok


def test_feature_id_property_wins_over_rules() -> None:
    assert kana.plan(track(featureId="seats", delta=3), RULES) == {"featureId": "seats", "delta": 3}


def test_first_matching_rule_in_order_names_the_feature() -> None:
    assert kana.plan(track(object={"name": "invoice"}), RULES) == {
        "featureId": "exports",
        "ruleId": 7,
        "delta": 1,
    }
    assert kana.plan(track(object={"name": "memo"}), RULES) == {
        "featureId": "any-export",
        "ruleId": 8,
        "delta": 1,
    }


def test_unmapped_anonymous_and_bad_delta_are_decided_at_routing() -> None:
    assert kana.plan({**track(), "event": "Viewed"}, RULES) == Skip(UNMAPPED)
    assert kana.plan({"type": "track", "anonymousId": "a", "event": "E"}, RULES) == Skip(
        NEEDS_USER_ID
    )
    for bad in (1.5, "2", True):
        refusal = kana.plan(track(featureId="seats", delta=bad), RULES)
        assert isinstance(refusal, Skip) and refusal.failed
        assert refusal.reason == f"properties.delta must be a whole number, got {bad!r}"
    huge = kana.plan(track(featureId="seats", delta=2**31), RULES)
    assert huge == Skip("properties.delta 2147483648 is outside Kana's range (32-bit)", failed=True)


def test_usage_waits_for_the_user_then_creates_it() -> None:
    plan = {"featureId": "seats", "delta": 2}
    payload = {**track(), "context": {"traits": {"email": "ada@x.co"}}}
    early = only(kana.translate(payload, DeliveryContext(config=CONFIG, plan=plan, attempt=1)))
    assert early.json["variables"] == {"input": {"userId": "u1", "featureId": "seats", "delta": 2}}
    assert early.fallback == ()
    late = only(kana.translate(payload, DeliveryContext(config=CONFIG, plan=plan, attempt=3)))
    create, record = late.fallback
    assert create.json["variables"] == {"input": {"id": "u1", "email": "ada@x.co"}}
    assert record.json == late.json


def answer(body: Any, status: int = 200) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = orjson.dumps(body)
    return response


def request(query: str, fallback: tuple[OutboundRequest, ...] = ()) -> OutboundRequest:
    return OutboundRequest(
        "POST", "https://kana.test/graphql", json={"query": query}, fallback=fallback
    )


CREATE = "mutation CreateUser($input: CreateUserInput!) { createUser(input: $input) { id } }"
USAGE = "mutation RecordUsage($input: CreateUsageEventInput!) { recordUsage(input: $input) { x } }"


def error(code: str, message: str) -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": code}}], "data": None}


def test_graphql_errors_are_classified_into_retry_and_permanent() -> None:
    assert kana.classify(answer({"data": {"createUser": {"id": "u1"}}}), request(CREATE)).delivered
    retry = kana.classify(answer(error("INTERNAL_SERVER_ERROR", "boom")), request(USAGE))
    assert not retry.delivered and not retry.permanent
    bad = kana.classify(answer(error("BAD_USER_INPUT", "delta must be Int")), request(USAGE))
    assert bad.permanent and bad.reason == "Kana refused recordUsage: delta must be Int"
    key = kana.classify(answer(error("UNAUTHENTICATED", "Unauthorized")), request(USAGE))
    assert key.permanent and key.reason == "Kana refused the API key: Unauthorized"
    assert not kana.classify(answer({}, status=503), request(USAGE)).permanent


def test_existing_user_means_update_for_identify_and_fine_before_usage() -> None:
    conflict = answer(error("CONFLICT", "User with id u1 already exists"))
    update = request("mutation UpdateUser { updateUser(id: $id) { id } }")
    for_identify = kana.classify(conflict, request(CREATE, fallback=(update,)))
    assert for_identify.use_fallback and not for_identify.delivered
    assert kana.classify(conflict, request(CREATE)).delivered


def test_unknown_user_on_usage_asks_for_the_fallback_and_not_recorded_fails() -> None:
    missing = kana.classify(answer(error("NOT_FOUND", "User u1 not found")), request(USAGE))
    assert missing.use_fallback and not missing.permanent
    refused = kana.classify(
        answer({"data": {"recordUsage": {"recorded": False, "reason": "over budget"}}}),
        request(USAGE),
    )
    assert refused.permanent and refused.reason == "Kana did not record the usage: over budget"
