"""A destination's Event delivery page: counts, latency and the volume chart per window,
errors grouped by reason with samples, its query budget, and the chart's pure helpers."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from dashboard.charts import nice_ceiling, volume_chart
from dashboard.selectors.delivery_stats import (
    VolumeBucket,
    delivery_report,
    delivery_window,
    percentile,
)
from destinations.models import Delivery, DeliveryStatus, Destination, Source
from tests.helpers.delivery_rows import make_event, seed_attempt, seed_delivery
from tests.helpers.pages import text_of

# --- the Event delivery page ---------------------------------------------------------------


# The page's queries, whatever the number of rows: the Replays section adds one.
PAGE_QUERIES = 15


def delivery_page(client: Client, destination: Destination, window: str = "24h") -> Any:
    url = reverse("destination-delivery", args=[destination.pk])
    return client.get(f"{url}?window={window}")


def test_event_delivery_counts_latency_and_chart(
    staff_client: Client, seeded: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(PAGE_QUERIES):
        response = delivery_page(staff_client, seeded["destination"])
    report = response.context["report"]
    assert report.window.key == "24h"
    assert (report.counts.delivered, report.counts.not_delivered, report.counts.pending) == (
        20,
        8,
        3,
    )
    assert report.counts.retrying == 1
    # Latencies 1..19 s and 90 s: the nearest-rank 95th percentile of 20 values is the 19th.
    assert report.latency.p95_seconds == 19.0
    assert report.latency.sample_size == 20
    assert sum(b.delivered for b in report.buckets) == 20
    assert sum(b.not_delivered for b in report.buckets) == 8
    assert sum(b.pending for b in report.buckets) == 3
    assert len(report.buckets) == 25  # the window's first and last hours are partial
    assert response.context["failed_total"] == 8  # every failed one, whatever the window
    body = text_of(response)
    assert '<strong id="count-delivered">20</strong>' in body
    assert '<strong id="latency-p95">19.0 s</strong>' in body
    assert body.count('<rect class="delivered"') == 2  # two hourly bars: 30 min and 3 h ago
    assert "Retry all failed (8)" in body

    hour = delivery_page(staff_client, seeded["destination"], "1h").context["report"]
    assert (hour.counts.delivered, hour.counts.not_delivered, hour.counts.pending) == (19, 3, 3)
    assert hour.latency.p95_seconds == 19.0
    assert len(hour.buckets) == 13
    week = delivery_page(staff_client, seeded["destination"], "7d").context["report"]
    assert (week.counts.delivered, week.counts.not_delivered) == (21, 9)
    assert len(week.buckets) == 29
    assert sum(b.total for b in week.buckets) == 33


def seed_delivered_at(destination: Destination, source: Source, moments: list[datetime]) -> None:
    for n, moment in enumerate(moments):
        Delivery.objects.create(
            event=make_event(source, n),
            destination=destination,
            status=DeliveryStatus.DELIVERED,
            created_at=moment,
            received_at=moment,
            retry_until=moment + timedelta(hours=4),
            finished_at=moment,
        )


@pytest.mark.parametrize("key", ["1h", "24h", "7d"])
def test_the_chart_counts_what_the_tiles_count_from_the_windows_first_minute(
    refiner_destination: Destination, source: Source, key: str
) -> None:
    window = delivery_window(key)
    # The window starts half a bucket into its oldest bucket.
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC) + window.bucket / 2
    since = now - window.span
    seed_delivered_at(
        refiner_destination,
        source,
        [
            since + timedelta(seconds=1),
            since + window.bucket / 4,
            now - window.span / 2,
            now,
            since - timedelta(seconds=1),  # before the window: in neither
        ],
    )
    report = delivery_report(refiner_destination, window=window, now=now)
    assert report.counts.delivered == 4
    assert sum(b.delivered for b in report.buckets) == 4
    oldest, newest = report.buckets[0], report.buckets[-1]
    assert oldest.start < since < oldest.end and oldest.delivered == 2
    assert newest.start <= now < newest.end and newest.delivered == 1
    assert all(a.end == b.start for a, b in itertools.pairwise(report.buckets))
    assert len(report.buckets) == window.span / window.bucket + 1


def test_a_delivery_created_after_now_is_in_no_number(
    refiner_destination: Destination, source: Source
) -> None:
    now = datetime(2026, 3, 10, 12, 59, 59, tzinfo=UTC)
    seed_delivered_at(refiner_destination, source, [now, now + timedelta(seconds=2)])
    report = delivery_report(refiner_destination, window=delivery_window("24h"), now=now)
    assert report.counts.delivered == sum(b.delivered for b in report.buckets) == 1


def test_errors_are_grouped_by_reason_with_three_samples(
    staff_client: Client, seeded: dict[str, Any]
) -> None:
    response = delivery_page(staff_client, seeded["destination"])
    groups = response.context["report"].error_groups
    assert [(g.reason, g.count) for g in groups] == [
        (seeded["rejected"], 5),
        (seeded["gave_up"], 2),
        ("no userId or email: Refiner cannot identify this user", 1),
    ]
    rejected, gave_up, skipped = groups
    newest_three = sorted((d.pk for d in seeded["failed"][:5]), reverse=True)[:3]
    assert [s.delivery.pk for s in rejected.samples] == newest_three
    assert rejected.last_seen == max(d.finished_at for d in seeded["failed"][:5])
    # The sample shows the latest attempt, not the first.
    assert [s.attempt.number for s in gave_up.samples] == [9, 9]
    assert gave_up.samples[0].attempt.request["json"]["event"] == "attempt-9"
    assert skipped.samples[0].attempt is None

    body = text_of(response)
    assert body.count("<h3>You sent</h3>") == 6
    assert body.count("<h3>Request to destination</h3>") == 6
    assert body.count("<h3>Response from destination</h3>") == 6
    assert '"Authorization": "Bearer ••••7788"' in body
    assert "HTTP 404\nContent-Type: application/json" in body
    assert '"message": "API key not valid"' in body
    assert f'"messageId": "{rejected.samples[0].delivery.event.message_id}"' in body
    assert "No request was made." in body
    assert body.count(">Retry</button>") == 5  # not on the skipped one: it would skip again


def test_event_delivery_page_stays_within_a_query_budget(
    staff_client: Client,
    refiner_destination: Destination,
    source: Source,
    django_assert_max_num_queries: Any,
) -> None:
    for n in range(60):
        delivery = seed_delivery(
            refiner_destination, make_event(source, n), "failed", reason=f"reason {n % 15}"
        )
        seed_attempt(delivery, 1, status=400)
        seed_attempt(delivery, 2, status=400)
    with django_assert_max_num_queries(PAGE_QUERIES):
        response = delivery_page(staff_client, refiner_destination)
    groups = response.context["report"].error_groups
    assert len(groups) == 15 and all(len(g.samples) == 3 for g in groups)


def test_htmx_refresh_renders_only_the_stats(staff_client: Client, seeded: dict[str, Any]) -> None:
    url = reverse("destination-delivery", args=[seeded["destination"].pk])
    response = staff_client.get(f"{url}?window=1h", headers={"HX-Request": "true"})
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="delivery-stats"')
    assert "<html" not in body
    assert "HX-Request" in response["Vary"]
    # Deliveries are in flight, so the numbers refresh themselves.
    assert 'hx-trigger="job-done from:body, every 2s"' in body


# --- pure helpers ------------------------------------------------------------------------


def test_percentile_and_chart_geometry() -> None:
    assert percentile([], 95) is None
    assert percentile([1.0], 95) == 1.0
    assert percentile([float(n) for n in range(1, 101)], 95) == 95.0
    assert [nice_ceiling(n) for n in (0, 1, 3, 7, 11, 260, 999)] == [1, 1, 5, 10, 20, 500, 1000]
    start = timezone.now().replace(microsecond=0)
    buckets = [
        VolumeBucket(start=start, end=start + timedelta(hours=1), delivered=8, not_delivered=2),
        VolumeBucket(start=start + timedelta(hours=1), end=start + timedelta(hours=2)),
    ]
    chart = volume_chart(buckets)
    first, empty = chart.bars
    assert [r.css_class for r in first.rects] == ["delivered", "not-delivered"]
    # Ten deliveries against a scale of ten: the stack fills the plot exactly.
    assert first.rects[-1].y == pytest.approx(chart.plot_top)
    assert empty.rects == []
    assert "8 delivered, 2 not delivered, 0 pending" in first.title
    assert not chart.empty
