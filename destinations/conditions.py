"""Conditions on an event's payload: destination filters now, Kana mapping rules later.

A condition is ``{"path": "properties.plan", "op": "equals", "value": "pro"}``. Paths are dotted
into the stored payload (``event``, ``type``, ``properties.object.name``...). A list of
conditions matches when every one of them does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

OPERATORS = {
    "equals": "equals",
    "not_equals": "does not equal",
    "contains": "contains",
    "exists": "exists",
    "gt": "is greater than",
    "lt": "is less than",
}
_MISSING = object()
MISSING = _MISSING  # what ``lookup`` returns for a path the payload does not have


class InvalidCondition(ValueError):
    """A condition that cannot be evaluated; the message names what is wrong."""


def lookup(payload: Mapping[str, Any], path: str) -> Any:
    value: Any = payload
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            return _MISSING
    return value


def check_condition(condition: Mapping[str, Any]) -> None:
    path, op = condition.get("path"), condition.get("op")
    if not isinstance(path, str) or not path.strip() or any(not p for p in path.split(".")):
        raise InvalidCondition(f"path must be dotted names like properties.plan, got {path!r}")
    if op not in OPERATORS:
        raise InvalidCondition(f"unknown operator {op!r}; expected one of {', '.join(OPERATORS)}")
    if op in ("gt", "lt") and _number(condition.get("value")) is None:
        raise InvalidCondition(f"{OPERATORS[op]} needs a number, got {condition.get('value')!r}")


CONDITION_KEYS = ("path", "op", "value")


def clean_conditions(conditions: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Checked and reduced to what is stored; the error names the condition by number."""
    cleaned: list[dict[str, Any]] = []
    for number, condition in enumerate(conditions, start=1):
        try:
            check_condition(condition)
        except InvalidCondition as exc:
            raise InvalidCondition(f"condition {number}: {exc}") from exc
        cleaned.append({k: condition[k] for k in CONDITION_KEYS if k in condition})
    return cleaned


def matches(payload: Mapping[str, Any], condition: Mapping[str, Any]) -> bool:
    op = condition["op"]
    actual = lookup(payload, condition["path"])
    if op == "exists":
        return actual is not _MISSING and actual is not None
    if actual is _MISSING:
        return op == "not_equals"
    expected = condition.get("value")
    if op == "equals":
        return _same(actual, expected)
    if op == "not_equals":
        return not _same(actual, expected)
    if op == "contains":
        if isinstance(actual, str):
            return str(expected) in actual
        if isinstance(actual, list):
            return any(_same(item, expected) for item in actual)
        return False
    left, right = _number(actual), _number(expected)
    if left is None or right is None:
        return False
    return left > right if op == "gt" else left < right


def matches_all(payload: Mapping[str, Any], conditions: Iterable[Mapping[str, Any]]) -> bool:
    return all(matches(payload, condition) for condition in conditions)


def describe(condition: Mapping[str, Any]) -> str:
    words = f"{condition['path']} {OPERATORS.get(condition['op'], condition['op'])}"
    return words if condition["op"] == "exists" else f"{words} {condition.get('value')!r}"


def _same(actual: Any, expected: Any) -> bool:
    # Form inputs arrive as text: "3" equals 3 and "true" equals True, as an operator would mean.
    if actual == expected:
        return True
    if isinstance(actual, bool) or isinstance(expected, bool):
        return str(actual).lower() == str(expected).lower()
    left, right = _number(actual), _number(expected)
    if left is not None and right is not None:
        return left == right
    return str(actual) == str(expected)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None
