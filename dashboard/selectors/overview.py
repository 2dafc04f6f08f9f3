"""Reads for the Overview (the landing page): what came in, what went out, what needs a look.

Everything is counted over one window (1 h, 24 h or 7 d) through indexed columns: events by
``received_at``, deliveries by ``(destination, created_at)``, the backlog by ``(status, ...)``.
Deliveries are counted in SQL, per destination, time slot and status, in one GROUP BY; the
tiles, the charts, the per-destination table and the unmapped counts are all folded from those
few rows, so the page costs the same handful of queries whatever the number of destinations.

Slots older than the retry window hold deliveries that are done (delivered, failed or skipped):
their counts are kept in the cache for ``SETTLED_SLOT_SECONDS`` and only the window's recent
slots are counted on every load. On a 7-day window that is a few hours of rows instead of a week.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import BooleanField, Count, ExpressionWrapper, Q
from django.db.models.functions import Trunc
from django.utils import timezone

from dashboard.selectors.delivery_stats import DeliveryWindow, floor_to
from destinations.connectors.kana import KIND as KANA_KIND
from destinations.connectors.kana.connector import UNMAPPED
from destinations.delivery.health import BACKLOG_STATUSES
from destinations.models import (
    Delivery,
    DeliveryStatus,
    Destination,
    Event,
    IngestFailure,
)
from destinations.web.freshness import counts_stamp

RECENT_FAILURES_SHOWN = 10
# How long a settled slot's counts are reused. They change only when an operator retries old
# failures or resumes a paused destination; the Overview may then lag by this much (the Event
# delivery page never does). Deleting deliveries (``counts_changed``) counts them again at once.
SETTLED_SLOT_SECONDS = 60


@dataclass(frozen=True)
class SlotCount:
    """Deliveries to one destination, created in one slot of the window, in one status."""

    destination_id: int
    slot: int  # index into the window's slots, oldest first
    status: str
    unmapped: bool  # skipped because Kana got no feature for the event
    count: int


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

    def add(self, row: SlotCount) -> None:
        if row.status == DeliveryStatus.DELIVERED:
            self.delivered += row.count
        elif row.status == DeliveryStatus.FAILED:
            self.failed += row.count
        elif row.status == DeliveryStatus.SKIPPED:
            self.skipped += row.count
            self.unmapped += row.count if row.unmapped else 0
        elif row.status in BACKLOG_STATUSES:
            self.pending += row.count
            self.retrying += row.count if row.status == DeliveryStatus.RETRYING else 0


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
        return self.destination.kind == KANA_KIND


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
    """Slots on whole multiples of their size in UTC, from the one holding the window's start
    to the one holding ``now``: a bar means the same thing on every reload (as on the Event
    delivery page), and the bars add up to the window's numbers. The oldest and the newest bars
    are partial: the first counts only what is inside the window, the last what came so far."""
    size = window.bucket.total_seconds()
    first = floor_to(now - window.span, size)
    count = int((floor_to(now, size) - first) / window.bucket) + 1
    return [first + i * window.bucket for i in range(count)]


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
    for count in delivery_counts(list(rows), window=window, since=since, slots=slots, now=now):
        row = rows[count.destination_id]
        row.totals.add(count)
        totals.add(count)
        row.volume[count.slot] += count.count
        if count.status == DeliveryStatus.FAILED:
            row.failures[count.slot] += count.count
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
    """The tiles alone, for their refresh every few seconds: no lists, no chart."""
    now = now or timezone.now()
    since = now - window.span
    destination_ids = list(Destination.objects.values_list("pk", flat=True))
    slots = chart_slots(window, now)
    totals = DeliveryTotals()
    for count in delivery_counts(destination_ids, window=window, since=since, slots=slots, now=now):
        totals.add(count)
    return OverviewNumbers(
        events_received=events_received(since),
        refused_on_ingest=refused_on_ingest(since),
        deliveries=totals,
    )


def delivery_counts(
    destination_ids: Sequence[int],
    *,
    window: DeliveryWindow,
    since: datetime,
    slots: Sequence[datetime],
    now: datetime,
) -> list[SlotCount]:
    """Deliveries created in the window, per destination, slot and status. Settled slots come
    from the cache when all of them are there; otherwise the whole window is counted and the
    settled slots are put in the cache for the next loads."""
    if not destination_ids:
        return []
    size = window.bucket
    settled_before = now - timedelta(seconds=settings.DELIVERY_RETRY_WINDOW_SECONDS)
    settled = [
        i for i, start in enumerate(slots) if since <= start and start + size <= settled_before
    ]
    stamp = counts_stamp()
    keys = {i: settled_slot_key(slots[i], size, stamp) for i in settled}
    cached = cache.get_many(list(keys.values())) if keys else {}
    wanted = set(destination_ids)
    if keys and len(cached) == len(keys):
        # Count only around the settled slots: before the first (the oldest, partial slot)
        # and from the end of the last (the slots still changing).
        first, end = slots[settled[0]], slots[settled[-1]] + size
        fresh = counted(
            destination_ids,
            Q(created_at__gte=since, created_at__lt=first) | Q(created_at__gte=end),
            window,
            slots,
        )
        reused = [
            SlotCount(destination_id, i, status, unmapped, count)
            for i, key in keys.items()
            for destination_id, status, unmapped, count in cached[key]
            if destination_id in wanted
        ]
        return reused + fresh
    fresh = counted(destination_ids, Q(created_at__gte=since), window, slots)
    if keys:
        by_slot: dict[int, list[tuple[int, str, bool, int]]] = {i: [] for i in settled}
        for row in fresh:
            if row.slot in by_slot:
                by_slot[row.slot].append((row.destination_id, row.status, row.unmapped, row.count))
        cache.set_many({keys[i]: rows for i, rows in by_slot.items()}, SETTLED_SLOT_SECONDS)
    return fresh


def settled_slot_key(start: datetime, size: timedelta, stamp: str) -> str:
    # Stamped: deleting deliveries (a user's events, the demo data) counts them again at once.
    return f"overview:slot:{int(size.total_seconds())}:{int(start.timestamp())}:{stamp}"


def counted(
    destination_ids: Sequence[int], created: Q, window: DeliveryWindow, slots: Sequence[datetime]
) -> list[SlotCount]:
    """One GROUP BY over the ``(destination, created_at)`` index: naming the destinations lets
    the database range over it once per destination instead of reading every delivery ever
    made. Grouping by status (rather than a filtered count per status) is about twice as fast
    on PostgreSQL: one hash per row instead of a condition per count."""
    size = window.bucket.total_seconds()
    rows = (
        Delivery.objects.filter(created, destination_id__in=destination_ids)
        .annotate(
            slot=Trunc("created_at", window.trunc_unit),
            unmapped=ExpressionWrapper(
                Q(status=DeliveryStatus.SKIPPED, reason=UNMAPPED), output_field=BooleanField()
            ),
        )
        .values_list("destination_id", "slot", "status", "unmapped")
        .annotate(count=Count("id"))
        .order_by()
    )
    last = len(slots) - 1
    return [
        # The slots cover the whole window; only a clock running ahead on another server could
        # date a delivery past the newest slot.
        SlotCount(
            destination_id,
            min(last, int((slot - slots[0]).total_seconds() // size)),
            status,
            bool(unmapped),
            count,
        )
        for destination_id, slot, status, unmapped, count in rows
    ]


def backlog_by_destination() -> Iterable[tuple[int, int]]:
    """What each destination is still owed, however old: the ``(status, next_attempt_at)``
    index holds only the waiting rows, which a healthy system keeps few."""
    return (
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
    """The newest permanent failures, those created in the window, with their destination
    and event (less the payload: the samples are one click away). Newest by id: the primary
    key walked backwards stops after ``limit`` failures, where a filter on the window would
    make the database read every failure ever recorded first."""
    newest = (
        Delivery.objects.filter(status=DeliveryStatus.FAILED)
        .select_related("destination", "event")
        .defer("event__payload", "plan", "destination__settings", "destination__secrets_encrypted")
        .order_by("-id")[:limit]
    )
    return [delivery for delivery in newest if delivery.created_at >= since]
