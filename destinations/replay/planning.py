"""A page of stored events turned into replay deliveries, decided as live routing decides."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from destinations.delivery.contract import Skip
from destinations.delivery.routing import Route, apply_plan, why_not_routed
from destinations.kinds import CONNECTORS
from destinations.models import Delivery


@dataclass
class PlannedPage:
    rows: list[Delivery] = field(default_factory=list)
    # Not sent, and why: a drop filter, the integrations object, the connector's own rules.
    skipped: Counter[str] = field(default_factory=Counter)


def decide(payload: Mapping[str, Any], route: Route) -> Mapping[str, Any] | str:
    """The connector's plan for this event, or why it is not sent: the destination's current
    filters, the integrations object and the connector's rules (Kana's mapping rules) apply."""
    reason = why_not_routed(payload, route)
    if reason is not None:
        return reason
    plan = CONNECTORS[route.kind].plan(payload, route.context)
    if plan is None:
        return f"not an event this {route.display_name} destination is triggered by"
    if isinstance(plan, Skip):
        return plan.reason
    return plan


def plan_page(
    events: Sequence[tuple[int, Any]], route: Route, replay_id: int, now: datetime
) -> PlannedPage:
    """Delivery rows for the events of a page that are sent. Latency counts from ``now`` (when
    the replay planned them), so the destination's latency figures stay about live delivery."""
    page = PlannedPage()
    retry_until = now + timedelta(seconds=settings.DELIVERY_RETRY_WINDOW_SECONDS)
    # Sent by the replay's own lane at once; only if its worker dies does the sweeper take them.
    first_attempt = now + timedelta(seconds=settings.DELIVERY_REQUEUE_AFTER_SECONDS)
    for event_id, payload in events:
        decision = decide(payload, route)
        if isinstance(decision, str):
            page.skipped[decision[:300]] += 1
            continue
        delivery = Delivery(
            event_id=event_id,
            destination_id=route.id,
            replay_id=replay_id,
            received_at=now,
            next_attempt_at=first_attempt,
            retry_until=retry_until,
        )
        apply_plan(delivery, decision, now)
        page.rows.append(delivery)
    return page
