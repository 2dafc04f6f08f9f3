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
from destinations.models import Destination, Event, Source
from destinations.replay.definition import ReplayDefinition
from destinations.replay.selection import after, in_scope, in_time_order
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


def sqlite_plan(statement: str) -> str:
    """EXPLAIN QUERY PLAN of a statement as logged (its values written in), on a connection
    of its own to the test database."""
    database = sqlite3.connect(connection.settings_dict["NAME"])
    try:
        rows = database.execute(f"EXPLAIN QUERY PLAN {statement}").fetchall()
    finally:
        database.close()
    return " | ".join(str(row[-1]) for row in rows)
