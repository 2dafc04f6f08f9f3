"""Writing a destination's event filters (Segment's destination filters): drop rules, each a
list of conditions that must all match for an event to be kept from the destination.

Routing reads the filters at ingest (``destinations.delivery.routing.why_not_routed``) from a
per-process cache of destinations, so every save forgets that cache: this process routes by
the new filters at once, every other process within its cache's two seconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import transaction

from dashboard.selectors.mapping import drop_rule_fingerprint
from destinations.conditions import InvalidCondition, check_condition
from destinations.delivery.routing import forget_cached_destinations
from destinations.models import Destination

CONDITION_KEYS = ("path", "op", "value")


class InvalidFilter(ValueError):
    """The message names the filter and condition that are wrong, and how."""


def destinations_filters_save(
    destination: Destination, rules: Sequence[Sequence[Mapping[str, Any]]]
) -> list[list[dict[str, Any]]]:
    """Replace the destination's drop rules with ``rules``, validated; returns what was saved."""
    cleaned: list[list[dict[str, Any]]] = []
    for number, rule in enumerate(rules, start=1):
        try:
            cleaned.append(validate_drop_rule(rule))
        except InvalidFilter as exc:
            raise InvalidFilter(f"filter {number}: {exc}") from exc
    Destination.objects.filter(pk=destination.pk).update(event_filters=cleaned)
    destination.event_filters = cleaned
    forget_cached_destinations()
    return cleaned


def validate_drop_rule(rule: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if not rule:
        # An empty rule would match every event: the destination would receive nothing.
        raise InvalidFilter("a filter needs an event name or at least one condition")
    cleaned: list[dict[str, Any]] = []
    for index, condition in enumerate(rule, start=1):
        try:
            check_condition(condition)
        except InvalidCondition as exc:
            raise InvalidFilter(f"condition {index}: {exc}") from exc
        cleaned.append({k: condition[k] for k in CONDITION_KEYS if k in condition})
    return cleaned


def destination_filter_add(
    destination: Destination, rule: Sequence[Mapping[str, Any]]
) -> list[list[dict[str, Any]]]:
    """Append one drop rule. The row is locked while its filters are read and written, so two
    operators adding at once both keep their rule."""
    # Checked alone first, so a mistake is reported in the new rule's own terms.
    cleaned = validate_drop_rule(rule)
    with transaction.atomic():
        current = locked_filters(destination)
        return destinations_filters_save(destination, [*current, cleaned])


def destination_filter_remove(destination: Destination, *, number: int, fingerprint: str) -> bool:
    """Remove drop rule ``number`` (1-based) if it is still the rule the operator saw; False
    when the filters changed meanwhile and nothing was removed."""
    with transaction.atomic():
        current = locked_filters(destination)
        index = number - 1
        if not 0 <= index < len(current) or drop_rule_fingerprint(current[index]) != fingerprint:
            return False
        destinations_filters_save(destination, current[:index] + current[index + 1 :])
        return True


def locked_filters(destination: Destination) -> list[list[dict[str, Any]]]:
    row = Destination.objects.select_for_update().only("event_filters").get(pk=destination.pk)
    return list(row.event_filters or [])
