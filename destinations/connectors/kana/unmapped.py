"""Stored events Kana got no feature for: the rows a new rule is applied to."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from django.db import connection
from django.db.models import QuerySet

from destinations.conditions import matches_all
from destinations.connectors.kana.connector import UNMAPPED
from destinations.models import Delivery, DeliveryStatus, Destination, MappingRule

SCAN_CHUNK = 5000


def unmapped_deliveries(destination: Destination | int) -> QuerySet[Delivery]:
    return Delivery.objects.filter(
        destination=destination, status=DeliveryStatus.SKIPPED, reason=UNMAPPED
    )


def rule_scope(rule: MappingRule) -> QuerySet[Delivery]:
    """Unmapped rows the rule could match, narrowed in SQL where that is exact: by the event
    name, and on PostgreSQL by plain string equalities (JSONB containment). Every condition is
    still checked in Python on what comes back, so SQL only ever removes non-matches."""
    rows = unmapped_deliveries(rule.destination_id)
    if rule.event_name:
        rows = rows.filter(event__event=rule.event_name)
    if connection.vendor == "postgresql":
        for condition in rule.conditions or []:
            contained = containment(condition)
            if contained is not None:
                rows = rows.filter(event__payload__contains=contained)
    return rows


def containment(condition: Mapping[str, Any]) -> dict[str, Any] | None:
    """``{"properties": {"plan": "pro"}}`` for ``properties.plan equals "pro"``, when JSONB
    containment means exactly what the condition means: the value is a string that the lenient
    comparison would not also match as a number, a boolean or null."""
    value = condition.get("value")
    if condition.get("op") != "equals" or not isinstance(value, str) or not value:
        return None
    if value.lower() in ("true", "false", "none", "null") or _looks_numeric(value):
        return None
    nested: dict[str, Any] = {}
    cursor = nested
    parts = str(condition["path"]).split(".")
    for part in parts[:-1]:
        cursor[part] = {}
        cursor = cursor[part]
    cursor[parts[-1]] = value
    return nested


def _looks_numeric(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def scan(
    rows: QuerySet[Delivery], conditions: Sequence[Mapping[str, Any]], after_id: int = 0
) -> Iterator[tuple[list[int], list[tuple[int, Mapping[str, Any]]]]]:
    """Walk ``rows`` in id order, a chunk at a time (memory stays flat): yields the ids scanned
    and the (id, payload) pairs that match every condition."""
    while True:
        chunk = list(
            rows.filter(id__gt=after_id)
            .order_by("id")
            .values_list("id", "event__payload")[:SCAN_CHUNK]
        )
        if not chunk:
            return
        after_id = chunk[-1][0]
        yield (
            [pk for pk, _ in chunk],
            [(pk, payload) for pk, payload in chunk if matches_all(payload, conditions)],
        )


PREVIEW_SCAN_LIMIT = 100_000


def preview(
    rule: MappingRule, examples: int = 5, limit: int = PREVIEW_SCAN_LIMIT
) -> tuple[int, list[Mapping[str, Any]], bool]:
    """How many stored unmapped events ``rule`` would match, with a few examples, and whether
    every unmapped event was looked at. It runs inside a web request, so it stops after
    ``limit`` rows; the count is then a lower bound (the job itself has no limit)."""
    count = scanned = 0
    samples: list[Mapping[str, Any]] = []
    for ids, matched in scan(rule_scope(rule), rule.all_conditions()):
        scanned += len(ids)
        count += len(matched)
        samples.extend(payload for _, payload in matched[: examples - len(samples)])
        if scanned >= limit:
            return count, samples, False
    return count, samples, True
