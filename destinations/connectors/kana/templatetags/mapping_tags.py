"""Template helpers for mapping rules and event filters."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django import template

from destinations.conditions import describe
from destinations.connectors.kana import KIND
from destinations.connectors.kana.selectors import rule_count, unmapped_total
from destinations.models import Destination

register = template.Library()


@register.filter
def described(conditions: Iterable[Mapping[str, Any]] | None) -> list[str]:
    """Each condition in words, with its full path: ``properties.plan equals 'pro'``."""
    return [describe(condition) for condition in conditions or []]


@register.inclusion_tag("mapping/destination_links.html")
def destination_links(destination: Destination) -> dict[str, Any]:
    """The destination page's links to its event filters and, for Kana, its mapping rules and
    unmapped events with their counts (two small queries, for Kana only)."""
    is_kana = destination.kind == KIND
    return {
        "destination": destination,
        "filter_count": len(destination.event_filters or []),
        "is_kana": is_kana,
        "rule_count": rule_count(destination) if is_kana else 0,
        "unmapped_total": unmapped_total(destination) if is_kana else 0,
    }
