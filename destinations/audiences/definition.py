"""What an audience is: conditions combined with all of / any of, one level of nesting.

    {"match": "all", "conditions": [
        {"type": "trait", "path": "traits.plan", "op": "equals", "value": "trial"},
        {"type": "event", "event": "Report Exported", "where": [<condition>...],
         "count": "at_least", "times": 3, "within_days": 7},
        {"type": "account", "path": "traits.plan", "op": "equals", "value": "enterprise"},
        {"type": "audience", "audience": 12, "in": true},
        {"type": "group", "match": "any", "conditions": [<any of the above>...]}]}

A trait, account and ``where`` condition is the mapping rules' condition
(``destinations.conditions``: path, operator, value) plus "is true" and "is false"; a trait path
reads the user (``traits.plan``, ``email``, ``name``, ``user_id``, ``billing_id``), an account path
the account (``traits.plan``, ``name``, ``group_id``). ``count`` is at_least, at_most or exactly
``times``, or none ("has not performed"); ``within_days`` is a window ending now, or absent for
ever. For an account audience, an event condition counts the account's users who performed the
event, and an account condition reads the account itself; trait conditions do not apply.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from destinations.conditions import OPERATORS, InvalidCondition, check_condition

LEAF_OPERATORS = {**OPERATORS, "is_true": "is true", "is_false": "is false"}
COUNTS = {"at_least": "at least", "at_most": "at most", "exactly": "exactly", "none": "never"}
MATCHES = {"all": "all of", "any": "any of"}
TYPES = ("trait", "event", "account", "audience", "group")
MAX_CONDITIONS = 50
MAX_TIMES = 1_000_000
MAX_DAYS = 3650


class InvalidDefinition(ValueError):
    """The message names the condition (by number) and what is wrong with it."""


def clean_definition(definition: Any, *, subject: str = "users") -> dict[str, Any]:
    """The definition checked and reduced to what is stored."""
    if not isinstance(definition, Mapping):
        raise InvalidDefinition("the definition must be an object with match and conditions")
    return _clean_group(definition, subject=subject, nested=False, label="")


def _clean_group(
    group: Mapping[str, Any], *, subject: str, nested: bool, label: str
) -> dict[str, Any]:
    match = group.get("match", "all")
    if not _one_of(match, MATCHES):
        raise InvalidDefinition(f"{label}match must be all or any, got {match!r}")
    conditions = group.get("conditions")
    if not isinstance(conditions, list) or not conditions:
        raise InvalidDefinition(f"{label}add at least one condition")
    if len(conditions) > MAX_CONDITIONS:
        raise InvalidDefinition(f"{label}at most {MAX_CONDITIONS} conditions")
    cleaned = []
    for number, condition in enumerate(conditions, start=1):
        where = f"{label}condition {number}: "
        if not isinstance(condition, Mapping):
            raise InvalidDefinition(f"{where}must be an object")
        cleaned.append(_clean_condition(condition, subject=subject, nested=nested, label=where))
    return {"match": match, "conditions": cleaned}


def _clean_condition(
    condition: Mapping[str, Any], *, subject: str, nested: bool, label: str
) -> dict[str, Any]:
    kind = condition.get("type")
    if not _one_of(kind, TYPES):
        raise InvalidDefinition(f"{label}type must be one of {', '.join(TYPES)}, got {kind!r}")
    if kind == "group":
        if nested:
            raise InvalidDefinition(f"{label}groups cannot hold groups (one level of nesting)")
        inner = _clean_group(condition, subject=subject, nested=True, label=label)
        return {"type": "group", **inner}
    if kind == "trait":
        if subject == "accounts":
            raise InvalidDefinition(f"{label}an account audience has no user traits")
        return {"type": "trait", **clean_leaf(condition, label=label)}
    if kind == "account":
        return {"type": "account", **clean_leaf(condition, label=label)}
    if kind == "audience":
        return _clean_audience_ref(condition, label=label)
    return _clean_event(condition, label=label)


def clean_leaf(condition: Mapping[str, Any], *, label: str = "") -> dict[str, Any]:
    op = condition.get("op")
    if not _one_of(op, LEAF_OPERATORS):
        choices = ", ".join(LEAF_OPERATORS)
        raise InvalidDefinition(f"{label}unknown operator {op!r}; expected one of {choices}")
    leaf = {"path": condition.get("path"), "op": op}
    if op in ("is_true", "is_false"):
        probe = {"path": leaf["path"], "op": "exists"}
    else:
        leaf["value"] = condition.get("value")
        probe = leaf
    try:
        check_condition(probe)
    except InvalidCondition as exc:
        raise InvalidDefinition(f"{label}{exc}") from exc
    if op == "exists":
        leaf.pop("value", None)
    return leaf


def _clean_event(condition: Mapping[str, Any], *, label: str) -> dict[str, Any]:
    name = condition.get("event")
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise InvalidDefinition(f"{label}name the event (up to 255 characters)")
    count = condition.get("count", "at_least")
    if not _one_of(count, COUNTS):
        raise InvalidDefinition(f"{label}count must be one of {', '.join(COUNTS)}, got {count!r}")
    times = _whole(condition.get("times", 1 if count != "none" else 0))
    if times is None or not 0 <= times <= MAX_TIMES:
        raise InvalidDefinition(f"{label}times must be a whole number from 0 to {MAX_TIMES:,}")
    days = condition.get("within_days")
    if days in (None, ""):
        days = None
    else:
        days = _whole(days)
        if days is None or not 1 <= days <= MAX_DAYS:
            raise InvalidDefinition(f"{label}within must be 1 to {MAX_DAYS} days, or ever")
    where = condition.get("where") or []
    if not isinstance(where, list) or len(where) > MAX_CONDITIONS:
        raise InvalidDefinition(f"{label}where must be a list of up to {MAX_CONDITIONS} conditions")
    cleaned_where = []
    for number, leaf in enumerate(where, start=1):
        if not isinstance(leaf, Mapping):
            raise InvalidDefinition(f"{label}where {number} must be an object")
        cleaned_where.append(clean_leaf(leaf, label=f"{label}where {number}: "))
    return {
        "type": "event",
        "event": name.strip(),
        "where": cleaned_where,
        "count": count,
        "times": 0 if count == "none" else times,
        "within_days": days,
    }


def _clean_audience_ref(condition: Mapping[str, Any], *, label: str) -> dict[str, Any]:
    audience = _whole(condition.get("audience"))
    if audience is None or audience <= 0:
        raise InvalidDefinition(f"{label}choose an audience")
    return {"type": "audience", "audience": audience, "in": bool(condition.get("in", True))}


def _one_of(value: Any, options: Iterable[str]) -> bool:
    return isinstance(value, str) and value in options


def _whole(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 10:
        return int(value.strip())
    return None


def leaves(definition: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    """Every condition that is not a group, at either level."""
    for condition in definition.get("conditions", []):
        if condition.get("type") == "group":
            yield from leaves(condition)
        else:
            yield condition


def referenced_audiences(definition: Mapping[str, Any]) -> set[int]:
    return {c["audience"] for c in leaves(definition) if c.get("type") == "audience"}


def has_window(definition: Mapping[str, Any]) -> bool:
    """Whether time alone can change who matches: an event condition with a window."""
    return any(c.get("type") == "event" and c.get("within_days") for c in leaves(definition))


def describe_leaf(leaf: Mapping[str, Any]) -> str:
    words = f"{leaf['path']} {LEAF_OPERATORS.get(leaf['op'], leaf['op'])}"
    return (
        words
        if leaf["op"] in ("exists", "is_true", "is_false")
        else f"{words} {leaf.get('value')!r}"
    )


def describe(condition: Mapping[str, Any]) -> str:
    """A condition in the operator's words, for lists and the audit log."""
    kind = condition.get("type")
    if kind == "group":
        joint = " or " if condition["match"] == "any" else " and "
        return "(" + joint.join(describe(c) for c in condition["conditions"]) + ")"
    if kind == "trait":
        return f"user {describe_leaf(condition)}"
    if kind == "account":
        return f"account {describe_leaf(condition)}"
    if kind == "audience":
        return f"{'in' if condition['in'] else 'not in'} audience #{condition['audience']}"
    if condition["count"] == "none":
        text = f"has not performed {condition['event']!r}"
    else:
        how = COUNTS[condition["count"]]
        text = f"performed {condition['event']!r} {how} {condition['times']} times"
    if condition.get("where"):
        text += " where " + " and ".join(describe_leaf(w) for w in condition["where"])
    if condition.get("within_days"):
        text += f" in the last {condition['within_days']} days"
    return text
