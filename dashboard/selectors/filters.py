"""Reads for a destination's event filters page: its drop rules, described."""

from __future__ import annotations

from dataclasses import dataclass

from destinations.conditions import describe
from destinations.delivery.filters import fingerprint
from destinations.models import Destination


@dataclass(frozen=True)
class DropRule:
    number: int  # 1-based, as the event page's "dropped by filter N" counts
    conditions: list[str]  # each described
    fingerprint: str  # names this rule's content, so a removal cannot hit a rule changed since


def drop_rules(destination: Destination) -> list[DropRule]:
    return [
        DropRule(
            number=number,
            conditions=[describe(condition) for condition in rule],
            fingerprint=fingerprint(rule),
        )
        for number, rule in enumerate(destination.event_filters or [], start=1)
    ]
