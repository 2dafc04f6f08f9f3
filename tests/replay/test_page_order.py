"""A replay page is the next events in event-time order, read along the timestamp index.

On SQLite, without table statistics, the planner took the source index for the page query and
sorted all of a source's events for every page; the page statement now names its index."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from destinations.delivery.services import destination_create
from destinations.models import Delivery, DeliveryStatus, Destination, Event, Source
from destinations.replay.definition import ReplayDefinition
from destinations.replay.selection import after, already_has, in_scope, in_time_order
from destinations.standins.refiner import FakeRefiner

pytestmark = pytest.mark.django_db

START = datetime(2026, 1, 1, tzinfo=UTC)
EVENTS = 60


@pytest.fixture
def refiner(fake_refiner: FakeRefiner, source: Source) -> Destination:
    # Stored out of event-time order, some sharing a timestamp (the id breaks the tie).
    for n in range(EVENTS):
        at = START + timedelta(minutes=(n * 37) % EVENTS // 2)
        Event.objects.create(
            source=source,
            message_id=f"m{n}",
            type="track",
            event="Clicked",
            user_id=f"u{n % 5}",
            timestamp=at,
            received_at=START,
            payload={"type": "track", "event": "Clicked", "messageId": f"m{n}", "n": n},
        )
    return destination_create(
        kind="refiner",
        name="Refiner",
        settings_values={"base_url": fake_refiner.base_url},
        secret_values={"api_key": "rk_test"},
    )


def test_pages_walk_the_events_in_event_time_order(refiner: Destination) -> None:
    events = in_scope(refiner, ReplayDefinition(until=START + timedelta(days=1)), START)
    expected = sorted(Event.objects.values_list("timestamp", "id", "payload"))
    walked: list[tuple[datetime, int, object]] = []
    checkpoint: tuple[datetime, int] | None = None
    while True:
        page = events if checkpoint is None else events.filter(after(*checkpoint))
        rows = in_time_order(page, 7)
        if not rows:
            break
        walked += [(timestamp, pk, payload) for pk, timestamp, payload in rows]
        checkpoint = (rows[-1][1], rows[-1][0])
    assert walked == expected
    assert all(isinstance(payload, dict) for _, _, payload in walked)


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's planner")
def test_on_sqlite_a_page_reads_the_timestamp_index_without_sorting(
    refiner: Destination,
) -> None:
    events = in_scope(refiner, ReplayDefinition(until=START + timedelta(days=1)), START)
    events = events.filter(after(START + timedelta(minutes=3), 0))
    with CaptureQueriesContext(connection) as queries:
        rows = in_time_order(events, 10)
    assert len(rows) == 10
    (statement,) = [q["sql"] for q in queries.captured_queries]
    assert 'INDEXED BY "event_timestamp_idx"' in statement

    plan = sqlite_plan(statement)
    assert "event_timestamp_idx" in plan
    assert "TEMP B-TREE" not in plan
    # The same query as the ORM writes it is what SQLite planned badly: the control.
    orm = events.order_by("timestamp", "id").values_list("id", "timestamp", "payload")[:10]
    with CaptureQueriesContext(connection) as queries:
        assert list(orm) == rows
    (unhinted,) = [q["sql"] for q in queries.captured_queries]
    assert "TEMP B-TREE FOR ORDER BY" in sqlite_plan(unhinted)


def deliveries(destination: Destination, statuses: dict[int, str]) -> list[int]:
    """A delivery of event ``m<n>`` in each given status; all the events' ids, by n."""
    ids = {int(m[1:]): pk for pk, m in Event.objects.values_list("id", "message_id")}
    for n, status in statuses.items():
        Delivery.objects.create(
            event_id=ids[n],
            destination=destination,
            status=status,
            received_at=START,
            retry_until=START + timedelta(days=1),
        )
    return [ids[n] for n in range(EVENTS)]


def test_already_has_names_the_events_with_a_delivery_in_those_statuses(
    refiner: Destination,
) -> None:
    delivered, failed = DeliveryStatus.DELIVERED.value, DeliveryStatus.FAILED.value
    ids = deliveries(refiner, {3: delivered, 5: failed, 8: delivered})
    assert already_has(ids, refiner.pk, (delivered,)) == {ids[3], ids[8]}
    assert already_has(ids[:4], refiner.pk, (delivered, failed)) == {ids[3]}
    assert already_has(ids, refiner.pk + 1, (delivered,)) == set()


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's planner")
def test_on_sqlite_already_has_reads_the_events_deliveries_not_the_destinations(
    refiner: Destination,
) -> None:
    delivered = DeliveryStatus.DELIVERED.value
    ids = deliveries(refiner, {n: delivered for n in range(0, EVENTS, 2)})
    with CaptureQueriesContext(connection) as queries:
        assert already_has(ids[:10], refiner.pk, (delivered,)) == set(ids[:10:2])
    (statement,) = [q["sql"] for q in queries.captured_queries]
    assert "delivery_event_destination_replay_uniq" in sqlite_plan(statement)
    # The control: as the ORM writes it, SQLite reads all the destination's delivered rows.
    orm = Delivery.objects.filter(
        event_id__in=ids[:10], destination_id=refiner.pk, status__in=(delivered,)
    ).values_list("event_id", flat=True)
    with CaptureQueriesContext(connection) as queries:
        assert set(orm) == set(ids[:10:2])
    (unhinted,) = [q["sql"] for q in queries.captured_queries]
    assert "delivery_destination_idx" in sqlite_plan(unhinted)


def sqlite_plan(statement: str) -> str:
    """EXPLAIN QUERY PLAN of a statement as logged (its values written in), on a connection
    of its own to the test database."""
    database = sqlite3.connect(connection.settings_dict["NAME"])
    try:
        rows = database.execute(f"EXPLAIN QUERY PLAN {statement}").fetchall()
    finally:
        database.close()
    return " | ".join(str(row[-1]) for row in rows)
