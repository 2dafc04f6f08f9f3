"""Which destinations an event goes to, decided once in the ingest transaction.

Order of checks: the destination is enabled, its kind accepts the call type, the message's
integrations object lets it through, and none of the destination's drop filters match.
Demo data (ADR 15) goes to demo destinations only: the stand-ins, never a real account.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from destinations.conditions import describe, matches_all
from destinations.delivery.contract import Skip
from destinations.kinds import CONNECTORS
from destinations.models import Delivery, DeliveryStatus, Destination

# Looked up on every ingest request; a short per-process cache keeps that off the database.
# A destination added or changed is routed to within this many seconds in every web process.
DESTINATION_CACHE_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Route:
    id: int
    kind: str
    name: str
    display_name: str
    accepts: frozenset[str]
    event_filters: tuple[tuple[Mapping[str, Any], ...], ...]
    # What the connector reads once for planning (Kana: its mapping rules).
    context: Any = None
    demo: bool = False


_cache: tuple[float, tuple[Route, ...]] | None = None


def enabled_routes() -> tuple[Route, ...]:
    global _cache
    now = time.monotonic()
    if _cache and _cache[0] > now:
        return _cache[1]
    # A row of a kind this version has no connector for (made in the admin, or left by a
    # downgrade) must not stop ingest: it is simply not routed to.
    routes = tuple(
        route_of(d) for d in Destination.objects.filter(enabled=True) if d.kind in CONNECTORS
    )
    _cache = (now + DESTINATION_CACHE_SECONDS, routes)
    return routes


def routes_for(*, demo: bool) -> tuple[Route, ...]:
    """The enabled routes data may take: demo data only the demo destinations'."""
    routes = enabled_routes()
    return tuple(r for r in routes if r.demo) if demo else routes


def forget_cached_destinations() -> None:
    global _cache
    _cache = None


def route_of(destination: Destination) -> Route:
    connector = CONNECTORS[destination.kind]
    return Route(
        id=destination.pk,
        kind=destination.kind,
        name=destination.name,
        display_name=connector.display_name,
        accepts=connector.accepts,
        event_filters=tuple(tuple(rule) for rule in destination.event_filters or []),
        context=connector.route_context(destination),
        demo=destination.demo,
    )


def why_not_routed(
    payload: Mapping[str, Any], route: Route, *, check_plan: bool = False
) -> str | None:
    """None when the event goes to ``route``; otherwise the reason, in the operator's words.
    ``check_plan`` also asks the connector (a webhook's trigger), for the event page."""
    kind = payload.get("type", "")
    if kind not in route.accepts:
        return f"{route.display_name} does not accept {kind} calls"
    integrations = payload.get("integrations")
    if isinstance(integrations, Mapping):
        if route.display_name in integrations:
            if not integrations[route.display_name]:
                return f'integrations object has "{route.display_name}": false'
        elif integrations.get("All", True) is False:
            return 'integrations object has "All": false'
    for index, rule in enumerate(route.event_filters, start=1):
        if rule and matches_all(payload, rule):
            conditions = " and ".join(describe(c) for c in rule)
            return f"dropped by filter {index}: {conditions}"
    if check_plan and CONNECTORS[route.kind].plan(payload, route.context) is None:
        return f"not an event this {route.display_name} destination is triggered by"
    return None


def plan_deliveries(
    events: Sequence[tuple[int, Mapping[str, Any]]],
    received_at: datetime,
    *,
    demo: bool = False,
    only: Collection[int] | None = None,
) -> dict[int, list[int]]:
    """Create the Delivery rows for freshly stored events; returns delivery ids per destination.
    ``demo``: the events are demo data, for the demo destinations only. ``only``: to these
    destinations and no others.

    Runs inside the ingest transaction, so an event and its deliveries commit together.
    """
    routes = routes_for(demo=demo)
    if only is not None:
        routes = tuple(r for r in routes if r.id in only)
    if not routes or not events:
        return {}
    retry_until = received_at + timedelta(seconds=settings.DELIVERY_RETRY_WINDOW_SECONDS)
    # The wake-up is enqueued on commit; only if it is lost does the sweeper pick the row up.
    first_attempt = received_at + timedelta(seconds=settings.DELIVERY_REQUEUE_AFTER_SECONDS)
    rows: list[Delivery] = []
    for event_id, payload in events:
        for route in routes:
            if why_not_routed(payload, route) is not None:
                continue
            plan = CONNECTORS[route.kind].plan(payload, route.context)
            if plan is None:
                continue
            delivery = Delivery(
                event_id=event_id,
                destination_id=route.id,
                received_at=received_at,
                next_attempt_at=first_attempt,
                retry_until=retry_until,
            )
            apply_plan(delivery, plan, received_at)
            rows.append(delivery)
    if not rows:
        return {}
    # SQLite 3.35+ and PostgreSQL return the new ids from a bulk insert.
    created = Delivery.objects.bulk_create(rows, batch_size=500)
    by_destination: dict[int, list[int]] = {}
    for delivery in created:
        if delivery.status == DeliveryStatus.PENDING:
            by_destination.setdefault(delivery.destination_id, []).append(delivery.pk)
    return by_destination


def apply_plan(delivery: Delivery, plan: Mapping[str, Any] | Skip, now: datetime) -> None:
    """A Skip decided at routing is final at once; a plan is kept for ``translate``."""
    if isinstance(plan, Skip):
        delivery.status = DeliveryStatus.FAILED if plan.failed else DeliveryStatus.SKIPPED
        delivery.reason = plan.reason[:300]
        delivery.last_error = plan.reason if plan.failed else ""
        delivery.finished_at = now
        return
    delivery.plan = dict(plan)
    delivery.mapping_rule_id = plan.get("ruleId")
