"""A destination's event filters (Segment's destination filters): drop rules, each a list of
conditions that must all match for an event to be kept from the destination.

Routing reads the filters at ingest (``routing.why_not_routed``) from a per-process cache of
destinations, so every save forgets that cache: this process routes by the new filters at once,
every other process within its cache's two seconds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from destinations.conditions import InvalidCondition, clean_conditions, describe
from destinations.delivery.routing import forget_cached_destinations
from destinations.models import AuditAction, AuditEntry, Destination


class InvalidFilter(ValueError):
    """The message names the filter and condition that are wrong, and how."""


def fingerprint(rule: Sequence[Mapping[str, Any]]) -> str:
    """Names a rule as the operator saw it, so a removal cannot hit a rule changed meanwhile."""
    text = json.dumps(list(rule), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def validate_drop_rule(rule: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if not rule:
        # An empty rule would match every event: the destination would receive nothing.
        raise InvalidFilter("a filter needs an event name or at least one condition")
    try:
        return clean_conditions(rule)
    except InvalidCondition as exc:
        raise InvalidFilter(str(exc)) from exc


def filter_add(
    destination: Destination, rule: Sequence[Mapping[str, Any]], *, user: User | None = None
) -> list[list[dict[str, Any]]]:
    """Append one drop rule. The row is locked while its filters are read and written, so two
    operators adding at once both keep their rule."""
    cleaned = validate_drop_rule(rule)
    with transaction.atomic():
        current = locked_filters(destination)
        saved = save(destination, [*current, cleaned])
        audit(destination, user, "Added", cleaned)
    return saved


def filter_remove(
    destination: Destination, *, number: int, seen: str, user: User | None = None
) -> bool:
    """Remove drop rule ``number`` (1-based) if it is still the rule the operator saw (``seen``
    is its fingerprint); False when the filters changed meanwhile and nothing was removed."""
    with transaction.atomic():
        current = locked_filters(destination)
        index = number - 1
        if not 0 <= index < len(current) or fingerprint(current[index]) != seen:
            return False
        save(destination, current[:index] + current[index + 1 :])
        audit(destination, user, "Removed", current[index])
        return True


def save(
    destination: Destination, rules: Sequence[Sequence[Mapping[str, Any]]]
) -> list[list[dict[str, Any]]]:
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


def audit(destination: Destination, user: User | None, verb: str, rule: Sequence[Any]) -> None:
    words = " and ".join(describe(c) for c in rule)
    AuditEntry.objects.create(
        actor=user,
        action=AuditAction.RULE_CHANGED,
        summary=f"{verb} an event filter on {destination.name}: drop events where {words}",
        data={"destination": destination.pk, "rule": list(rule)},
    )


def locked_filters(destination: Destination) -> list[list[dict[str, Any]]]:
    row = Destination.objects.select_for_update().only("event_filters").get(pk=destination.pk)
    return list(row.event_filters or [])
