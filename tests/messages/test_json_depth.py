"""The depth check every ingested message passes: measured as the JSON's plain definition
says, and stopped early (without deep recursion) on documents far past the limit."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from destinations.messages.body import MAX_JSON_DEPTH, json_depth

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
documents = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=60,
)


def depth_by_definition(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_by_definition(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_by_definition(v) for v in value), default=0)
    return 0


@given(documents, st.integers(min_value=0, max_value=8))
def test_depth_is_the_nesting_of_containers(document: Any, stop_after: int) -> None:
    expected = depth_by_definition(document)
    found = json_depth(document, stop_after=stop_after)
    if expected <= stop_after:
        assert found == expected
    else:
        assert found == stop_after + 1


def test_a_document_far_too_deep_stops_just_past_the_limit() -> None:
    document: Any = "leaf"
    for _ in range(100_000):
        document = [document]
    assert json_depth(document, stop_after=MAX_JSON_DEPTH) == MAX_JSON_DEPTH + 1
    assert json_depth({"a": [{"b": {}}], "c": 1}, stop_after=MAX_JSON_DEPTH) == 4
