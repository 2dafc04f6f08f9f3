"""Reads for the Deliveries section of an event's page: what was sent where, every attempt,
what routing decided for a Kana delivery (feature, delta, the rule that named the feature),
and why each enabled destination without a delivery did not get one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import F, Prefetch

from destinations.conditions import describe
from destinations.connectors.kana import KIND as KANA_KIND
from destinations.delivery.routing import route_of, why_not_routed
from destinations.kinds import CONNECTORS
from destinations.models import (
    Delivery,
    DeliveryAttempt,
    Destination,
    Event,
    MappingRule,
)


@dataclass(frozen=True)
class NotRouted:
    destination: Destination
    reason: str


def event_deliveries(event: Event) -> list[Delivery]:
    """Each delivery of ``event`` with its destination, the Kana mapping rule that named its
    feature if one did, the replay that made it if one did, and its attempts (two queries).
    A destination may have several: the live one first, then one per replay, oldest first."""
    return list(
        Delivery.objects.filter(event=event)
        .select_related("destination", "mapping_rule", "replay")
        .prefetch_related(
            Prefetch("attempt_log", queryset=DeliveryAttempt.objects.order_by("number"))
        )
        .order_by("destination__name", "destination_id", F("replay_id").asc(nulls_first=True))
    )


@dataclass(frozen=True)
class KanaPlan:
    """What routing decided for a Kana delivery (``KanaConnector.plan``, kept on the delivery):
    for usage, the feature, the delta and what named the feature; for an identify, why the
    billing id is left out."""

    feature_id: str = ""
    delta: int = 1
    rule_id: int | None = None  # the rule that named the feature; None when the event did
    rule: MappingRule | None = None  # that rule, unless deleted since
    note: str = ""

    @property
    def rule_label(self) -> str:
        """A rule has no name: its event name, else its first condition, says which it is."""
        if self.rule is None:
            return ""
        if self.rule.event_name:
            return repr(self.rule.event_name)
        conditions = list(self.rule.conditions or [])
        return describe(conditions[0]) if conditions else f"rule {self.rule.pk}"


def kana_plan_of(delivery: Delivery) -> KanaPlan | None:
    """The plan of a Kana delivery in the page's terms; None for other destinations, and for
    a delivery routing decided nothing about (skipped, or an identify with nothing to say)."""
    if delivery.destination.kind != KANA_KIND:
        return None
    plan: dict[str, Any] = delivery.plan if isinstance(delivery.plan, dict) else {}
    feature, note = plan.get("featureId"), plan.get("note")
    if isinstance(feature, str) and feature:
        rule_id, delta = plan.get("ruleId"), plan.get("delta", 1)  # translate's default too
        return KanaPlan(
            feature_id=feature,
            delta=delta if isinstance(delta, int) else 1,
            rule_id=rule_id if isinstance(rule_id, int) else None,
            # The plan names the rule that applied; the link is kept unless it was deleted.
            rule=delivery.mapping_rule if delivery.mapping_rule_id == rule_id else None,
        )
    if isinstance(note, str) and note:
        return KanaPlan(note=note)
    return None


@dataclass(frozen=True)
class DeliveryRow:
    """A delivery as the event's page lists it."""

    delivery: Delivery
    kana: KanaPlan | None


def delivery_rows(deliveries: list[Delivery]) -> list[DeliveryRow]:
    return [DeliveryRow(delivery, kana_plan_of(delivery)) for delivery in deliveries]


def not_routed(event: Event, deliveries: list[Delivery]) -> list[NotRouted]:
    """Enabled destinations that have no delivery of ``event``, each with the reason, judged by
    the same rules ingest applies (call type, integrations object, drop filters)."""
    delivered_to = {delivery.destination_id for delivery in deliveries}
    missing = Destination.objects.filter(enabled=True).exclude(pk__in=delivered_to)
    found: list[NotRouted] = []
    for destination in missing:
        if destination.kind not in CONNECTORS:
            found.append(NotRouted(destination, f"no connector for {destination.kind} yet"))
            continue
        reason = why_not_routed(event.payload, route_of(destination))
        if reason is None:
            # Today's rules would send it: the destination was added, enabled or re-filtered
            # after the event arrived, and routing is decided once, at ingest.
            reason = (
                "created after this event was received"
                if destination.created_at > event.received_at
                else "not enabled, or filtered differently, when this event was received"
            )
        found.append(NotRouted(destination, reason))
    return found
