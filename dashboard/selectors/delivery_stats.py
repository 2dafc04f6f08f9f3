"""Reads for a destination's Event delivery page, after Segment's view of the same name.

Every number, the chart's included, is for deliveries *created* in the chosen window, from
``now - span`` to ``now`` (created_at is indexed together with the destination), so each read
is a range scan of one destination's recent rows, and the chart's bars add up to the tiles.
The traffic filter narrows them all to live deliveries or to those replays made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db.models import Count, F, Max, Q, QuerySet
from django.db.models.expressions import Window
from django.db.models.functions import RowNumber, Trunc
from django.utils import timezone

from destinations.delivery.health import BACKLOG_STATUSES
from destinations.models import Delivery, DeliveryAttempt, DeliveryStatus, Destination

NOT_DELIVERED = (DeliveryStatus.FAILED, DeliveryStatus.SKIPPED)
# p95 is computed in Python from at most this many of the newest delivered rows: enough for a
# stable percentile, bounded so a busy destination's page stays fast on any database.
LATENCY_SAMPLE_LIMIT = 10_000
ERROR_GROUPS_SHOWN = 20
SAMPLES_PER_ERROR = 3


@dataclass(frozen=True)
class DeliveryWindow:
    key: str
    label: str
    span: timedelta
    bucket: timedelta
    # The database truncates to this unit; buckets are whole multiples of it.
    trunc_unit: str
    bucket_label: str


WINDOWS = {
    w.key: w
    for w in (
        DeliveryWindow(
            "1h", "Last hour", timedelta(hours=1), timedelta(minutes=5), "minute", "5 minutes"
        ),
        DeliveryWindow(
            "24h", "Last 24 hours", timedelta(days=1), timedelta(hours=1), "hour", "hour"
        ),
        DeliveryWindow(
            "7d", "Last 7 days", timedelta(days=7), timedelta(hours=6), "hour", "6 hours"
        ),
    )
}
DEFAULT_WINDOW = "24h"


@dataclass(frozen=True)
class Traffic:
    key: str
    label: str


TRAFFIC = {
    t.key: t
    for t in (
        Traffic("all", "All"),
        Traffic("live", "Live"),
        Traffic("replay", "Replays"),
    )
}
DEFAULT_TRAFFIC = "all"


def delivery_traffic(key: str | None) -> Traffic:
    return TRAFFIC.get(key or "", TRAFFIC[DEFAULT_TRAFFIC])


def delivery_window(key: str | None) -> DeliveryWindow:
    return WINDOWS.get(key or "", WINDOWS[DEFAULT_WINDOW])


@dataclass(frozen=True)
class DeliveryCounts:
    delivered: int
    not_delivered: int
    pending: int
    retrying: int  # part of pending: tried at least once and waiting for the next try

    @property
    def total(self) -> int:
        return self.delivered + self.not_delivered + self.pending


@dataclass(frozen=True)
class Latency:
    p95_seconds: float | None
    sample_size: int
    capped: bool  # the sample is the newest LATENCY_SAMPLE_LIMIT rows, not the whole window


@dataclass(frozen=True)
class VolumeBucket:
    start: datetime
    end: datetime
    delivered: int = 0
    not_delivered: int = 0
    pending: int = 0

    @property
    def total(self) -> int:
        return self.delivered + self.not_delivered + self.pending


@dataclass(frozen=True)
class ErrorSample:
    delivery: Delivery  # with its event loaded: the payload is "You sent"
    attempt: DeliveryAttempt | None  # the latest attempt: request and response as exchanged


@dataclass
class ErrorGroup:
    reason: str
    count: int
    last_seen: datetime | None
    samples: list[ErrorSample] = field(default_factory=list)


@dataclass(frozen=True)
class DeliveryReport:
    window: DeliveryWindow
    traffic: Traffic
    since: datetime
    counts: DeliveryCounts
    latency: Latency
    buckets: list[VolumeBucket]
    error_groups: list[ErrorGroup]


def delivery_report(
    destination: Destination,
    *,
    window: DeliveryWindow,
    traffic: Traffic | None = None,
    now: datetime | None = None,
) -> DeliveryReport:
    now = now or timezone.now()
    traffic = traffic or TRAFFIC[DEFAULT_TRAFFIC]
    since = now - window.span
    in_window = created_between(destination, since, now, traffic)
    return DeliveryReport(
        window=window,
        traffic=traffic,
        since=since,
        counts=delivery_counts(in_window),
        latency=delivery_latency(in_window),
        buckets=volume_buckets(destination, window=window, now=now, traffic=traffic),
        error_groups=error_groups(in_window),
    )


def created_between(
    destination: Destination, since: datetime, now: datetime, traffic: Traffic | None = None
) -> QuerySet[Delivery]:
    """The window's deliveries (live ones, or a replay's, if asked). Bounded at ``now`` too,
    so a delivery created while the page is read is in every number or in none."""
    rows = Delivery.objects.filter(
        destination=destination, created_at__gte=since, created_at__lte=now
    )
    if traffic is not None and traffic.key != DEFAULT_TRAFFIC:
        rows = rows.filter(replay__isnull=traffic.key == "live")
    return rows


def delivery_counts(in_window: QuerySet[Delivery]) -> DeliveryCounts:
    counts = in_window.aggregate(
        delivered=Count("id", filter=Q(status=DeliveryStatus.DELIVERED)),
        not_delivered=Count("id", filter=Q(status__in=NOT_DELIVERED)),
        pending=Count("id", filter=Q(status__in=BACKLOG_STATUSES)),
        retrying=Count("id", filter=Q(status=DeliveryStatus.RETRYING)),
    )
    return DeliveryCounts(**counts)


def delivery_latency(in_window: QuerySet[Delivery]) -> Latency:
    """End to end: from the event's receipt by ingest to the destination's 2xx (a replay's
    delivery is "received" when the replay planned it: its ``received_at`` says so)."""
    rows = list(
        in_window.filter(status=DeliveryStatus.DELIVERED, finished_at__isnull=False)
        .order_by("-created_at")
        .values_list("received_at", "finished_at")[:LATENCY_SAMPLE_LIMIT]
    )
    seconds = sorted(
        max(0.0, (finished - received).total_seconds())
        for received, finished in rows
        if finished is not None
    )
    return Latency(
        p95_seconds=percentile(seconds, 95),
        sample_size=len(seconds),
        capped=len(seconds) >= LATENCY_SAMPLE_LIMIT,
    )


def percentile(ordered: list[float], percent: float) -> float | None:
    """Nearest-rank percentile of an ascending list: a value that was actually observed."""
    if not ordered:
        return None
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


def volume_buckets(
    destination: Destination,
    *,
    window: DeliveryWindow,
    now: datetime,
    traffic: Traffic | None = None,
) -> list[VolumeBucket]:
    """Deliveries per bucket across the window, for the chart. Buckets sit on whole multiples
    of their size (5 min, 1 h, 6 h in UTC) so a bar means the same thing on every reload. The
    window rarely starts on such a multiple, so the oldest bar starts before it (and the newest
    ends after now): one bar more than the span holds, e.g. 25 for 24 hours. Only the window's
    deliveries are counted, the same rows as the tiles, so the oldest bar is a partial one."""
    size = window.bucket.total_seconds()
    since = now - window.span
    start = floor_to(since, size)
    end = floor_to(now, size) + window.bucket
    count = round((end - start) / window.bucket)
    slots = (
        created_between(destination, since, now, traffic)
        .annotate(slot=Trunc("created_at", window.trunc_unit))
        .values("slot")
        .annotate(
            delivered=Count("id", filter=Q(status=DeliveryStatus.DELIVERED)),
            not_delivered=Count("id", filter=Q(status__in=NOT_DELIVERED)),
            pending=Count("id", filter=Q(status__in=BACKLOG_STATUSES)),
        )
        .order_by()
    )
    totals = [[0, 0, 0] for _ in range(count)]
    for slot in slots:
        # Every slot lies in [start, end), the window being inside the buckets' span; clamped
        # all the same, so that no row the tiles count can fall off the chart.
        index = int((slot["slot"] - start).total_seconds() // size)
        bucket = totals[min(max(index, 0), count - 1)]
        bucket[0] += slot["delivered"]
        bucket[1] += slot["not_delivered"]
        bucket[2] += slot["pending"]
    return [
        VolumeBucket(
            start=start + i * window.bucket,
            end=start + (i + 1) * window.bucket,
            delivered=delivered,
            not_delivered=not_delivered,
            pending=pending,
        )
        for i, (delivered, not_delivered, pending) in enumerate(totals)
    ]


def floor_to(moment: datetime, seconds: float) -> datetime:
    stamp = moment.timestamp()
    return datetime.fromtimestamp(stamp - stamp % seconds, tz=UTC)


def error_groups(in_window: QuerySet[Delivery]) -> list[ErrorGroup]:
    """Deliveries that were not made, grouped by reason, most frequent first, each with its
    newest few samples. Three queries whatever the number of groups."""
    not_delivered = in_window.filter(status__in=NOT_DELIVERED)
    groups = [
        ErrorGroup(reason=row["reason"], count=row["count"], last_seen=row["last_seen"])
        for row in not_delivered.values("reason")
        .annotate(count=Count("id"), last_seen=Max("finished_at"))
        .order_by("-count", "-last_seen")[:ERROR_GROUPS_SHOWN]
    ]
    if not groups:
        return []
    by_reason = {group.reason: group for group in groups}
    samples = list(
        not_delivered.filter(reason__in=list(by_reason))
        .annotate(
            sample_rank=Window(RowNumber(), partition_by=[F("reason")], order_by=F("id").desc())
        )
        .filter(sample_rank__lte=SAMPLES_PER_ERROR)
        .select_related("event", "replay")
        .order_by("-id")
    )
    latest = latest_attempts([d.pk for d in samples])
    for delivery in samples:
        by_reason[delivery.reason].samples.append(
            ErrorSample(delivery=delivery, attempt=latest.get(delivery.pk))
        )
    return groups


def latest_attempts(delivery_ids: list[int]) -> dict[int, DeliveryAttempt]:
    if not delivery_ids:
        return {}
    attempts = (
        DeliveryAttempt.objects.filter(delivery_id__in=delivery_ids)
        .annotate(
            attempt_rank=Window(
                RowNumber(), partition_by=[F("delivery_id")], order_by=F("number").desc()
            )
        )
        .filter(attempt_rank=1)
    )
    return {attempt.delivery_id: attempt for attempt in attempts}
