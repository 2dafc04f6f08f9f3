"""An audience's key and definition: what is accepted, and the words a refusal uses."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from destinations.audiences.definition import (
    InvalidDefinition,
    clean_definition,
    describe,
    has_window,
    referenced_audiences,
)
from destinations.audiences.keys import snake_key


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Power users (EU)", "power_users_eu"),
        ("Order Completed last 30 days", "order_completed_last_30_days"),
        ("trialUsers", "trial_users"),
        ("  Café  crème ", "cafe_creme"),
        ("***", ""),
    ],
)
def test_the_key_is_the_name_snake_cased(name: str, key: str) -> None:
    assert snake_key(name) == key


@given(st.text(max_size=300))
def test_any_name_gives_a_key_destinations_can_take(name: str) -> None:
    key = snake_key(name)
    assert re.fullmatch(r"([a-z0-9]+(_[a-z0-9]+)*)?", key)
    assert len(key) <= 100
    assert snake_key(key) == key


def event(**extra: Any) -> dict[str, Any]:
    return {"type": "event", "event": "Report Exported", **extra}


def test_a_definition_is_stored_reduced_to_what_it_means() -> None:
    cleaned = clean_definition(
        {
            "match": "all",
            "conditions": [
                {"type": "trait", "path": "traits.plan", "op": "equals", "value": "trial", "x": 1},
                event(count="at_least", times="3", within_days="7", where=[]),
                {"type": "group", "match": "any", "conditions": [
                    {"type": "account", "path": "traits.plan", "op": "exists", "value": "?"},
                    {"type": "audience", "audience": "4", "in": False},
                ]},
            ],
        }
    )  # fmt: skip
    assert cleaned == {
        "match": "all",
        "conditions": [
            {"type": "trait", "path": "traits.plan", "op": "equals", "value": "trial"},
            {
                "type": "event",
                "event": "Report Exported",
                "where": [],
                "count": "at_least",
                "times": 3,
                "within_days": 7,
            },
            {
                "type": "group",
                "match": "any",
                "conditions": [
                    {"type": "account", "path": "traits.plan", "op": "exists"},
                    {"type": "audience", "audience": 4, "in": False},
                ],
            },
        ],
    }
    assert has_window(cleaned)
    assert referenced_audiences(cleaned) == {4}
    assert [describe(c) for c in cleaned["conditions"]] == [
        "user traits.plan equals 'trial'",
        "performed 'Report Exported' at least 3 times in the last 7 days",
        "(account traits.plan exists or not in audience #4)",
    ]


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ([], "must be an object"),
        ({"match": "most", "conditions": [event()]}, "match must be all or any"),
        ({"conditions": []}, "add at least one condition"),
        ({"conditions": [{"type": "mood"}]}, "condition 1: type must be one of"),
        ({"conditions": [event(count="often")]}, "condition 1: count must be one of"),
        ({"conditions": [event(times=-1)]}, "times must be a whole number"),
        ({"conditions": [event(times=True)]}, "times must be a whole number"),
        ({"conditions": [event(within_days=0)]}, "within must be 1 to 3650 days"),
        ({"conditions": [event(within_days="9" * 40)]}, "within must be 1 to 3650 days"),
        ({"conditions": [{"type": "event", "event": " "}]}, "name the event"),
        ({"conditions": [event(where=[{"path": "", "op": "equals"}])]}, "where 1: path must"),
        (
            {"conditions": [{"type": "trait", "path": "traits.n", "op": "gt", "value": "x"}]},
            "condition 1: is greater than needs a number",
        ),
        ({"conditions": [{"type": "audience", "audience": "x"}]}, "choose an audience"),
        (
            {
                "conditions": [
                    {"type": "group", "conditions": [{"type": "group", "conditions": []}]}
                ]
            },
            "condition 1: condition 1: groups cannot hold groups",
        ),
    ],
)
def test_a_bad_definition_is_refused_naming_the_condition(definition: Any, message: str) -> None:
    with pytest.raises(InvalidDefinition, match=re.escape(message)):
        clean_definition(definition)


def test_an_account_audience_has_no_user_traits() -> None:
    with pytest.raises(InvalidDefinition, match="an account audience has no user traits"):
        clean_definition(
            {"conditions": [{"type": "trait", "path": "email", "op": "exists"}]},
            subject="accounts",
        )


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(["type", "match", "conditions", "event",
                                                       "count", "times", "within_days", "where",
                                                       "path", "op", "value", "audience", "in"]),
                                      inner, max_size=6),
                    max_leaves=20))  # fmt: skip
def test_any_input_is_cleaned_or_refused_with_a_reason(definition: Any) -> None:
    try:
        cleaned = clean_definition(definition)
    except InvalidDefinition as exc:
        assert str(exc)
    else:
        assert clean_definition(cleaned) == cleaned
