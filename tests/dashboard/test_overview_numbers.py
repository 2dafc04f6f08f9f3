"""The Overview's numbers per window, refreshed as a fragment, the per-destination chart
data, settled slots counted once, and a number of queries that does not grow."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from destinations.models import Delivery, DeliveryStatus, IngestFailure, Source
from tests.helpers.overview import Seeder, chart_data, kana, overview_page, refiner

pytestmark = pytest.mark.django_db

NUMBERS_REFRESH = {"HX-Request": "true", "HX-Target": "overview-numbers"}


# --- Overview ---------------------------------------------------------------------------------


@pytest.fixture
def traffic(source: Source) -> dict[str, Any]:
    """Deliveries to one destination at known ages: 10 minutes, 3 hours, 2 days, 10 days."""
    destination = refiner()
    seed = Seeder(source)
    minutes, hours, days, old = (
        timedelta(minutes=10),
        timedelta(hours=3),
        timedelta(days=2),
        timedelta(days=10),
    )
    rows: list[Delivery] = []
    for status, age, times in (
        ("delivered", minutes, 3),
        ("failed", minutes, 1),
        ("pending", minutes, 1),
        ("retrying", minutes, 1),
        ("delivered", hours, 2),
        ("failed", hours, 1),
        ("skipped", hours, 1),
        ("delivered", days, 4),
        ("failed", days, 2),
        ("delivered", old, 5),
    ):
        rows += [
            seed.delivery(destination, status, age, reason="HTTP 401" if status == "failed" else "")
            for _ in range(times)
        ]
    IngestFailure.objects.create(
        source=source, received_at=seed.now - minutes, endpoint="track", reason="bad"
    )
    IngestFailure.objects.create(
        source=source, received_at=seed.now - timedelta(days=3), endpoint="track", reason="bad"
    )
    return {"destination": destination, "rows": rows, "seed": seed}


@pytest.mark.parametrize(
    ("window", "received", "refused", "delivered", "failed", "skipped", "pending", "retrying"),
    [
        ("1h", 6, 1, 3, 1, 0, 2, 1),
        ("24h", 10, 1, 5, 2, 1, 2, 1),
        ("7d", 16, 2, 9, 4, 1, 2, 1),
    ],
)
def test_overview_numbers_for_each_window(
    staff_client: Client,
    traffic: dict[str, Any],
    window: str,
    received: int,
    refused: int,
    delivered: int,
    failed: int,
    skipped: int,
    pending: int,
    retrying: int,
) -> None:
    response = overview_page(staff_client, window)
    numbers = response.context["numbers"]
    totals = numbers.deliveries
    assert (numbers.events_received, numbers.refused_on_ingest) == (received, refused)
    assert (totals.delivered, totals.failed, totals.skipped, totals.pending, totals.retrying) == (
        delivered,
        failed,
        skipped,
        pending,
        retrying,
    )
    body = response.content.decode()
    assert f'<strong id="count-received">{received}</strong>' in body
    assert f'<strong id="count-delivered">{delivered}</strong>' in body
    assert f'<strong id="count-failed">{failed}</strong>' in body
    assert f'<strong id="count-pending">{pending}</strong>' in body
    assert f"{refused} refused on ingest" in body
    # The window selector marks the one shown, and every choice is a plain link.
    assert f'href="/?window={window}" aria-current="true"' in body
    # Without JavaScript the same numbers are in the table.
    row = re.search(r'<tr id="traffic-\d+">(.*?)</tr>', body, re.S)
    assert row is not None
    cells = re.findall(r'<td class="number[^"]*">(\d+)</td>', row.group(1))
    assert cells == [str(n) for n in (delivered, failed, skipped, pending)] + [
        str(delivered + failed + skipped + pending)
    ]


def test_numbers_refresh_as_a_fragment(staff_client: Client, traffic: dict[str, Any]) -> None:
    response = staff_client.get("/?window=1h", headers=NUMBERS_REFRESH)
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="overview-numbers"')
    assert "<html" not in body and "overview-chart-data" not in body
    assert 'hx-trigger="every 5s"' in body and 'hx-get="/?window=1h"' in body
    assert '<strong id="count-delivered">3</strong>' in body
    assert "HX-Request" in response["Vary"]


def slot_start(moment: datetime, seconds: int) -> int:
    stamp = int(moment.timestamp())
    return stamp - stamp % seconds


@pytest.mark.parametrize(
    ("window", "span", "size"),
    [("24h", timedelta(days=1), 3600), ("7d", timedelta(days=7), 6 * 3600)],
)
def test_chart_data_has_each_destinations_volume_and_failures_per_slot(
    staff_client: Client, traffic: dict[str, Any], window: str, span: timedelta, size: int
) -> None:
    quiet = kana("Quiet Kana")
    before = datetime.now(UTC)
    response = overview_page(staff_client, window)
    after = datetime.now(UTC)
    data = chart_data(response)
    assert data["slot_seconds"] == size
    # From the slot holding the window's start to the one holding now, on whole multiples.
    assert data["slots"][0] % size == 0
    assert data["slots"][0] <= (before - span).timestamp() < data["slots"][0] + size + 1
    assert data["slots"][-1] <= after.timestamp() < data["slots"][-1] + size
    assert all(b - a == size for a, b in zip(data["slots"], data["slots"][1:], strict=False))
    slots = len(data["slots"])
    assert slots in (span // timedelta(seconds=size), span // timedelta(seconds=size) + 1)

    expected_volume = [0] * slots
    expected_failed = [0] * slots
    for delivery in traffic["rows"]:
        start = slot_start(delivery.created_at, size)
        if start in data["slots"]:
            index = data["slots"].index(start)
            expected_volume[index] += 1
            expected_failed[index] += delivery.status == DeliveryStatus.FAILED
    busy = data["destinations"][str(traffic["destination"].pk)]
    assert busy["name"] == "Refiner"
    assert busy["volume"] == expected_volume
    assert busy["failed"] == expected_failed
    assert sum(busy["volume"]) == (10 if window == "24h" else 16)
    assert data["destinations"][str(quiet.pk)] == {
        "name": "Quiet Kana",
        "volume": [0] * slots,
        "failed": [0] * slots,
    }
    body = response.content.decode()
    assert f'data-series="{traffic["destination"].pk}"' in body
    assert 'data-chart-data="overview-chart-data"' in body
    assert "vendor/uplot-1.6.32/uPlot.iife.min.js" in body
    assert "<script>" not in body  # nothing inline: the Content-Security-Policy forbids it


def test_settled_slots_are_counted_once_then_reused(staff_client: Client, source: Source) -> None:
    """Slots older than the retry window are done changing: their counts are kept for a minute,
    and only the recent slots are counted on each load."""
    destination = refiner()
    seed = Seeder(source)
    seed.delivery(destination, "delivered", timedelta(hours=10))
    seed.delivery(destination, "delivered", timedelta(minutes=10))
    # In the oldest slot, which is partly outside the window: counted, never twice.
    seed.delivery(destination, "delivered", timedelta(hours=23, minutes=55))
    first = overview_page(staff_client).context["numbers"].deliveries
    assert first.delivered == 3
    # A change inside a settled slot waits for the cache to expire; a recent one shows at once.
    seed.delivery(destination, "failed", timedelta(hours=10, minutes=1), reason="late retry")
    seed.delivery(destination, "failed", timedelta(minutes=11), reason="just now")
    second = overview_page(staff_client)
    totals = second.context["numbers"].deliveries
    assert (totals.delivered, totals.failed) == (3, 1)
    assert sum(chart_data(second)["destinations"][str(destination.pk)]["volume"]) == 4
    cache.clear()
    totals = overview_page(staff_client).context["numbers"].deliveries
    assert (totals.delivered, totals.failed) == (3, 2)
    # The tiles' refresh reads the same counts.
    fragment = staff_client.get("/", headers=NUMBERS_REFRESH).content.decode()
    assert '<strong id="count-failed">2</strong>' in fragment


def test_overview_query_count_does_not_grow_with_destinations(
    staff_client: Client, source: Source, django_assert_max_num_queries: Any
) -> None:
    seed = Seeder(source)
    for n in range(25):
        destination = kana(f"Kana {n:02d}") if n % 2 else refiner(f"Refiner {n:02d}")
        for status in ("delivered", "failed", "pending", "skipped"):
            seed.delivery(destination, status, timedelta(minutes=n + 1), reason="why")
    with django_assert_max_num_queries(15):
        response = overview_page(staff_client)
    assert len(response.context["report"].destinations) == 25
    assert len(chart_data(response)["destinations"]) == 25
    with django_assert_max_num_queries(8):
        staff_client.get("/", headers=NUMBERS_REFRESH)
