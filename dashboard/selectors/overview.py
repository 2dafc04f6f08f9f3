"""Reads for the Overview (the landing page): what came in, what went out, what needs a look.

Everything is counted over one window (1 h, 24 h or 7 d) through indexed columns: events by
``received_at``, deliveries by ``(destination, created_at)``, the backlog by ``(status, ...)``.
Deliveries are aggregated in SQL once, per destination and time slot; the tiles, the charts,
the per-destination table and the unmapped counts are all folded from those few rows, so the
page costs the same handful of queries whatever the number of destinations or events.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Count, Q
from django.db.models.functions import Trunc
from django.utils import timezone

from dashboard.selectors.delivery_stats import DeliveryWindow, floor_to
from dashboard.selectors.destinations import BACKLOG_STATUSES
from destinations.connectors.kana import UNMAPPED
from destinations.models import (
    Delivery,
    DeliveryStatus,
    Destination,
    DestinationKind,
    Event,
    IngestFailure,
)

RECENT_FAILURES_SHOWN = 10

# What each delivery row adds to, counted in the database. Each count is limited to rows
# created inside the window proper: the chart's oldest slot may start a little earlier.
WINDOW_COUNTS = {
    "delivered": Q(status=DeliveryStatus.DELIVERED),
    "failed": Q(status=DeliveryStatus.FAILED),
    "skipped": Q(status=DeliveryStatus.SKIPPED),
    "pending": Q(status__in=BACKLOG_STATUSES),
    "retrying": Q(status=DeliveryStatus.RETRYING),
    "unmapped": Q(status=DeliveryStatus.SKIPPED, reason=UNMAPPED),
}


@dataclass
class DeliveryTotals:
    delivered: int = 0
    failed: int = 0
    skipped: int = 0
    pending: int = 0
    retrying: int = 0  # part of pending: tried at least once, waiting for the next try
    unmapped: int = 0  # part of skipped: Kana got no feature for the event

    @property
    def total(self) -> int:
        return self.delivered + self.failed + self.skipped + self.pending

    def add(self, row: Mapping[str, Any]) -> None:
        for name in WINDOW_COUNTS:
            setattr(self, name, getattr(self, name) + row[name])


@dataclass(frozen=True)
class OverviewNumbers:
    events_received: int
    refused_on_ingest: int
    deliveries: DeliveryTotals


@dataclass
class DestinationOverview:
    destination: Destination
    totals: DeliveryTotals = field(default_factory=DeliveryTotals)
    volume: list[int] = field(default_factory=list)  # deliveries created per slot
    failures: list[int] = field(default_factory=list)  # of those, permanently failed
    backlog: int = 0  # still owed, whenever created: pending, retrying or being sent

    @property
    def failing(self) -> bool:
        """The newest outcome was an error: no success since the last error."""
        last_error = self.destination.last_error_at
        last_success = self.destination.last_success_at
        return last_error is not None and (last_success is None or last_error > last_success)

    @property
    def state(self) -> str:
        """One word for the health column, the most pressing first."""
        if not self.destination.enabled:
            return "disabled"
        if self.destination.paused_at is not None:
            return "paused"
        if self.failing:
            return "failing"
        if self.backlog:
            return "backlog"
        return "healthy"

    @property
    def is_kana(self) -> bool:
        return self.destination.kind == DestinationKind.KANA


@dataclass(frozen=True)
class Overview:
    window: DeliveryWindow
    since: datetime
    slots: list[datetime]  # start of each chart slot, oldest first
    numbers: OverviewNumbers
    destinations: list[DestinationOverview]
    recent_failures: list[Delivery]

    def chart_data(self) -> dict[str, Any]:
        """What ``charts.js`` draws: rendered with ``json_script``, so nothing is executed."""
        return {
            "slots": [int(slot.timestamp()) for slot in self.slots],
            "slot_seconds": int(self.window.bucket.total_seconds()),
            "destinations": {
                str(row.destination.pk): {
                    "name": row.destination.name,
                    "volume": row.volume,
                    "failed": row.failures,
                }
                for row in self.destinations
            },
        }

    @property
    def kana_destinations(self) -> list[DestinationOverview]:
        return [row for row in self.destinations if row.is_kana]


def chart_slots(window: DeliveryWindow, now: datetime) -> list[datetime]:
    """Slots on whole multiples of their size in UTC, the newest holding ``now``: a bar means
    the same thing on every reload (as on the Event delivery page)."""
    count = math.ceil(window.span / window.bucket)
    end = floor_to(now, window.bucket.total_seconds()) + window.bucket
    start = end - count * window.bucket
    return [start + i * window.bucket for i in range(count)]


def overview(*, window: DeliveryWindow, now: datetime | None = None) -> Overview:
    now = now or timezone.now()
    since = now - window.span
    slots = chart_slots(window, now)
    destinations = list(Destination.objects.order_by("name"))
    rows = {
        d.pk: DestinationOverview(d, volume=[0] * len(slots), failures=[0] * len(slots))
        for d in destinations
    }
    totals = DeliveryTotals()
    size = window.bucket.total_seconds()
    for slot_row in delivery_rows(list(rows), since=since, start=slots[0], unit=window.trunc_unit):
        row = rows[slot_row["destination_id"]]
        row.totals.add(slot_row)
        totals.add(slot_row)
        index = int((slot_row["slot"] - slots[0]).total_seconds() // size)
        if 0 <= index < len(slots):
            row.volume[index] += slot_row["volume"]
            row.failures[index] += slot_row["volume_failed"]
    for destination_id, backlog in backlog_by_destination():
        if destination_id in rows:
            rows[destination_id].backlog = backlog
    return Overview(
        window=window,
        since=since,
        slots=slots,
        numbers=OverviewNumbers(
            events_received=events_received(since),
            refused_on_ingest=refused_on_ingest(since),
            deliveries=totals,
        ),
        destinations=list(rows.values()),
        recent_failures=recent_failures(since),
    )


def overview_numbers(*, window: DeliveryWindow, now: datetime | None = None) -> OverviewNumbers:
    """The tiles alone, for their refresh every few seconds: no chart slots, no lists."""
    since = (now or timezone.now()) - window.span
    totals = DeliveryTotals()
    destination_ids = list(Destination.objects.values_list("pk", flat=True))
    for row in delivery_rows(destination_ids, since=since, start=since, unit=None):
        totals.add(row)
    return OverviewNumbers(
        events_received=events_received(since),
        refused_on_ingest=refused_on_ingest(since),
        deliveries=totals,
    )


def delivery_rows(
    destination_ids: Sequence[int], *, since: datetime, start: datetime, unit: str | None
) -> Iterable[Mapping[str, Any]]:
    """Deliveries created from ``start``, counted per destination (and per ``unit`` of
    creation time when given) in one GROUP BY. Naming the destinations lets the database range
    over the ``(destination, created_at)`` index once per destination instead of reading every
    delivery ever made."""
    if not destination_ids:
        return []
    in_window = Q(created_at__gte=since)
    rows = Delivery.objects.filter(destination_id__in=destination_ids, created_at__gte=start)
    group = ["destination_id"]
    if unit:
        rows = rows.annotate(slot=Trunc("created_at", unit))
        group.append("slot")
    return (
        rows.values(*group)
        .annotate(
            volume=Count("id"),
            volume_failed=Count("id", filter=Q(status=DeliveryStatus.FAILED)),
            **{name: Count("id", filter=in_window & q) for name, q in WINDOW_COUNTS.items()},
        )
        .order_by()
    )


def backlog_by_destination() -> list[tuple[int, int]]:
    """What each destination is still owed, however old: the ``(status, next_attempt_at)``
    index holds only the waiting rows, which a healthy system keeps few."""
    return list(
        Delivery.objects.filter(status__in=BACKLOG_STATUSES)
        .values_list("destination_id")
        .annotate(count=Count("id"))
        .order_by()
    )


def events_received(since: datetime) -> int:
    return Event.objects.filter(received_at__gte=since).count()


def refused_on_ingest(since: datetime) -> int:
    return IngestFailure.objects.filter(received_at__gte=since).count()


def recent_failures(since: datetime, limit: int = RECENT_FAILURES_SHOWN) -> list[Delivery]:
    """The newest permanent failures in the window, with their destination and event (less the
    payload: the list shows the event's name and user, the samples are one click away)."""
    return list(
        Delivery.objects.filter(status=DeliveryStatus.FAILED, created_at__gte=since)
        .select_related("destination", "event")
        .defer("event__payload", "plan", "destination__settings", "destination__secrets_encrypted")
        .order_by("-finished_at", "-id")[:limit]
    )
