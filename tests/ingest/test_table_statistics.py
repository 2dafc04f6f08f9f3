"""A fast-growing events table gets fresh PostgreSQL statistics without waiting for autovacuum."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from destinations.ingest import table_statistics
from destinations.ingest.store import store_messages, stored_message_ids
from destinations.messages.message import validate_message
from destinations.models import Source


def test_statistics_are_stale_once_more_rows_changed_than_they_describe() -> None:
    assert table_statistics.stale(described=0, changed=1000)
    assert table_statistics.stale(described=5000, changed=5001)
    assert not table_statistics.stale(described=5000, changed=5000)
    assert not table_statistics.stale(described=0, changed=999)  # autovacuum's business


def store(source: Source, prefix: str, count: int) -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    messages = [
        validate_message(
            {"type": "track", "userId": f"u-{n}", "event": "E", "messageId": f"{prefix}-{n}"},
            call_type=None,
            received_at=now,
        )
        for n in range(count)
    ]
    store_messages(source_id=source.pk, messages=messages, received_at=now)


def described_rows() -> float:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = 'destinations_event'")
        return float(cursor.fetchone()[0])


def flush_my_statistics() -> None:
    """Make this connection's row counts visible to others now (PostgreSQL sends them at most
    once a second otherwise)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def message_id_check_plan(source: Source, message_ids: list[str]) -> str:
    with CaptureQueriesContext(connection) as queries:
        assert stored_message_ids(source.pk, message_ids) == {"second-7"}
    [check] = queries.captured_queries
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + check["sql"])
        return "\n".join(row[0] for row in cursor.fetchall())


def add_events(source: Source, prefix: str, count: int) -> None:
    """``count`` more events, inserted by the database itself (the ORM would take seconds)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO destinations_event (source_id, message_id, type, event, timestamp,"
            " received_at, payload) SELECT %s, %s || n, 'track', 'E', now(), now(), '{}'"
            " FROM generate_series(1, %s) AS n",
            [source.pk, prefix, count],
        )


@pytest.mark.django_db(transaction=True)
def test_the_events_are_analyzed_once_the_table_has_outgrown_its_statistics() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite: no statistics unless ANALYZE is asked for")
    source = Source.objects.create(name="Stats")
    store(source, "first", 5)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE destinations_event")
    add_events(source, "second-", 30_000)
    flush_my_statistics()
    table_statistics.keeper.refresh()
    assert described_rows() == 30_005
    # What the statistics are for: ingest's messageId check for a batch probes the unique
    # index (with the statistics of 5 rows it read the whole table).
    asked = ["second-7", *(f"unknown-{n}" for n in range(99))]
    assert "event_source_message_uniq" in message_id_check_plan(source, asked)
    add_events(source, "third-", 20_000)  # fewer than the statistics describe: left alone
    flush_my_statistics()
    table_statistics.keeper.refresh()
    assert described_rows() == 30_005


def test_a_check_runs_on_its_own_thread_every_so_many_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keeper = table_statistics.StatisticsKeeper()
    checks: list[str] = []
    monkeypatch.setattr(table_statistics, "CHECK_EVERY_EVENTS", 20)
    monkeypatch.setattr(keeper, "refresh", lambda: checks.append(threading.current_thread().name))
    keeper.events_stored(15)
    keeper.wait()
    assert checks == []
    keeper.events_stored(10)
    keeper.wait()
    assert checks == ["events-statistics"]
    keeper.events_stored(19)
    keeper.wait()
    assert checks == ["events-statistics"]
