"""Stored events Kana got no feature for: the rows a new rule is applied to."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from django.db.models import QuerySet

from destinations.conditions import matches_all
from destinations.connectors.kana import UNMAPPED
from destinations.models import Delivery, DeliveryStatus, Destination, MappingRule

SCAN_CHUNK = 5000


def unmapped_deliveries(destination: Destination | int) -> QuerySet[Delivery]:
    return Delivery.objects.filter(
        destination=destination, status=DeliveryStatus.SKIPPED, reason=UNMAPPED
    )


def rule_scope(rule: MappingRule) -> QuerySet[Delivery]:
    """Unmapped rows the rule could match, narrowed in SQL by the event name when it has one."""
    rows = unmapped_deliveries(rule.destination_id)
    if rule.event_name:
        rows = rows.filter(event__event=rule.event_name)
    return rows


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


def preview(rule: MappingRule, examples: int = 5) -> tuple[int, list[Mapping[str, Any]]]:
    """How many stored unmapped events ``rule`` would match, with a few examples."""
    count = 0
    samples: list[Mapping[str, Any]] = []
    for _, matched in scan(rule_scope(rule), rule.all_conditions()):
        count += len(matched)
        samples.extend(payload for _, payload in matched[: examples - len(samples)])
    return count, samples
