"""Pure decisions: conditions on payloads, and whether an event goes to a destination."""

from __future__ import annotations

from typing import Any

import pytest

from destinations.conditions import InvalidCondition, check_condition, describe, matches
from destinations.delivery.routing import Route, why_not_routed

PAYLOAD: dict[str, Any] = {
    "type": "track",
    "event": "Report Exported",
    "properties": {"format": "csv", "rows": 120, "object": {"name": "invoice"}, "tags": ["a"]},
}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"path": "event", "op": "equals", "value": "Report Exported"}, True),
        ({"path": "properties.object.name", "op": "equals", "value": "invoice"}, True),
        ({"path": "properties.rows", "op": "equals", "value": "120"}, True),
        ({"path": "properties.format", "op": "not_equals", "value": "pdf"}, True),
        ({"path": "properties.missing", "op": "not_equals", "value": "pdf"}, True),
        ({"path": "properties.format", "op": "contains", "value": "cs"}, True),
        ({"path": "properties.tags", "op": "contains", "value": "a"}, True),
        ({"path": "properties.object", "op": "exists"}, True),
        ({"path": "properties.nope", "op": "exists"}, False),
        ({"path": "properties.rows", "op": "gt", "value": "100"}, True),
        ({"path": "properties.rows", "op": "lt", "value": 100}, False),
        ({"path": "properties.format", "op": "gt", "value": 1}, False),
    ],
)
def test_condition_operators(condition: dict[str, Any], expected: bool) -> None:
    check_condition(condition)
    assert matches(PAYLOAD, condition) is expected


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ({"path": "", "op": "equals"}, "path must be dotted names"),
        ({"path": "a..b", "op": "equals"}, "path must be dotted names"),
        ({"path": "event", "op": "like"}, "unknown operator 'like'"),
        ({"path": "properties.rows", "op": "gt", "value": "many"}, "needs a number"),
    ],
)
def test_invalid_conditions_name_the_problem(condition: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidCondition, match=message):
        check_condition(condition)


def route(filters: tuple[tuple[dict[str, Any], ...], ...] = ()) -> Route:
    return Route(
        id=1,
        kind="refiner",
        name="Refiner",
        display_name="Refiner",
        accepts=frozenset({"identify", "track"}),
        event_filters=filters,
    )


@pytest.mark.parametrize(
    ("integrations", "reason"),
    [
        (None, None),
        ({"All": True}, None),
        ({"Refiner": False}, 'integrations object has "Refiner": false'),
        ({"All": False}, 'integrations object has "All": false'),
        ({"All": False, "Refiner": True}, None),
        ({"All": False, "Refiner": {"someOption": 1}}, None),
        ({"refiner": False}, None),  # keys are case-sensitive, as in Segment
    ],
)
def test_integrations_object(integrations: dict[str, Any] | None, reason: str | None) -> None:
    payload = {**PAYLOAD, "integrations": integrations}
    assert why_not_routed(payload, route()) == reason


def test_call_types_the_destination_does_not_accept() -> None:
    assert why_not_routed({"type": "alias"}, route()) == "Refiner does not accept alias calls"


def test_drop_filters_name_the_rule_that_matched() -> None:
    noisy = ({"path": "event", "op": "equals", "value": "Report Exported"},)
    other = ({"path": "event", "op": "equals", "value": "Heartbeat"},)
    assert why_not_routed(PAYLOAD, route((other,))) is None
    assert (
        why_not_routed(PAYLOAD, route((other, noisy)))
        == "dropped by filter 2: event equals 'Report Exported'"
    )
    assert describe({"path": "properties.x", "op": "exists"}) == "properties.x exists"
