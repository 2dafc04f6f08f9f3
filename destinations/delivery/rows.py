"""The engine's per-task statements on the delivery table, in plain SQL.

Every task claims its rows, loads them and writes their outcomes. Through the ORM those
statements cost a worker about 8 ms of CPU per task, however few rows it carried (query
compilation, a lock-then-update pair of statements each time), which at 200 single-event
requests a second was most of the workers' CPU. Here each is one statement with bound
parameters: ``UPDATE ... RETURNING id`` both checks and takes a row, so no separate locking
read is needed. SQLite gained ``RETURNING`` in 3.35; on an older one the rows are read first,
inside the same write transaction (which SQLite holds for the whole of it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import connection

from destinations.models import Delivery, DeliveryStatus, Destination, Event
from destinations.raw_reads import placeholders

_quote = connection.ops.quote_name
DELIVERY = _quote(Delivery._meta.db_table)
DESTINATION = _quote(Destination._meta.db_table)
EVENT = _quote(Event._meta.db_table)
PAYLOAD_FIELD = Event._meta.get_field("payload")


def returning_supported() -> bool:
    return bool(connection.features.can_return_columns_from_insert)


def column(field_name: str) -> str:
    return str(Delivery._meta.get_field(field_name).column)  # type: ignore[union-attr]


def db_value(field_name: str, value: Any) -> Any:
    """A value as the ORM would send it for that column (datetimes as text on SQLite)."""
    return Delivery._meta.get_field(field_name).get_db_prep_save(value, connection)  # type: ignore[union-attr]


def update_returning_ids(
    assignments: str, params: list[Any], where: str, where_params: list[Any]
) -> list[int]:
    """``UPDATE delivery SET <assignments> WHERE <where>``; the ids of the rows it changed."""
    with connection.cursor() as cursor:
        if returning_supported():
            cursor.execute(
                f"UPDATE {DELIVERY} SET {assignments} WHERE {where} RETURNING id",
                [*params, *where_params],
            )
            return [row[0] for row in cursor.fetchall()]
        cursor.execute(f"SELECT id FROM {DELIVERY} WHERE {where}", where_params)
        ids = [row[0] for row in cursor.fetchall()]
        if ids:
            cursor.execute(
                f"UPDATE {DELIVERY} SET {assignments} WHERE id IN {placeholders(len(ids))}",
                [*params, *ids],
            )
        return ids


def take(delivery_ids: Sequence[int], *, now: datetime, lease: datetime) -> list[int]:
    """Move those of ``delivery_ids`` that wait and may be sent now to ``sending``, with
    ``lease``; returns the ids taken. Call inside a transaction.

    A retry waits out its backoff (and Retry-After) even if a stray or duplicate wake-up names
    it early; a row the sweeper woke is handed back as pending, so it is taken. On PostgreSQL
    two workers handed the same ids each take what the other has not locked."""
    if not delivery_ids:
        return []
    skip_locked = (
        " FOR UPDATE OF d SKIP LOCKED"
        if connection.features.has_select_for_update_skip_locked
        else ""
    )
    waiting = (
        f"SELECT d.id FROM {DELIVERY} d JOIN {DESTINATION} t ON t.id = d.destination_id "
        f"WHERE d.id IN {placeholders(len(delivery_ids))} "
        "AND (d.status = %s OR (d.status = %s AND d.next_attempt_at <= %s)) "
        f"AND t.enabled = %s AND t.paused_at IS NULL{skip_locked}"
    )
    return update_returning_ids(
        "status = %s, lease_expires_at = %s, attempts = attempts + 1",
        [DeliveryStatus.SENDING.value, db_value("lease_expires_at", lease)],
        f"id IN ({waiting})",
        [
            *delivery_ids,
            DeliveryStatus.PENDING.value,
            DeliveryStatus.RETRYING.value,
            db_value("next_attempt_at", now),
            True,
        ],
    )


def load_claimed(ids: Sequence[int], lease: datetime) -> list[Delivery]:
    """The rows this claim took, each with its event's payload (the only column of the event
    that is sent; the others would be decoded for every row and not read)."""
    columns = ", ".join(f"d.{_quote(f.column)}" for f in Delivery._meta.concrete_fields)
    rows = list(
        Delivery.objects.raw(
            f"SELECT {columns}, e.{_quote(PAYLOAD_FIELD.column)} AS event_payload "  # type: ignore[union-attr]
            f"FROM {DELIVERY} d JOIN {EVENT} e ON e.id = d.event_id "
            f"WHERE d.id IN {placeholders(len(ids))} AND d.lease_expires_at = %s ORDER BY d.id",
            [*ids, db_value("lease_expires_at", lease)],
        )
    )
    for delivery in rows:
        payload = PAYLOAD_FIELD.from_db_value(delivery.event_payload, None, connection)  # type: ignore[union-attr,attr-defined,arg-type]
        # The other columns load on first use (the failure notice reads a few).
        event = Event.from_db(connection.alias, ["id", "payload"], [delivery.event_id, payload])
        delivery.event = event
    return rows


def write_outcome(ids: Sequence[int], lease: datetime, values: Mapping[str, Any]) -> list[int]:
    """Set ``values`` on those of ``ids`` still held by this claim; returns their ids. A row
    whose lease the sweeper took back (its worker seemed dead) keeps the newer claim's state."""
    names = list(values)
    assignments = ", ".join(f"{_quote(column(name))} = %s" for name in names)
    return update_returning_ids(
        assignments,
        [db_value(name, values[name]) for name in names],
        f"id IN {placeholders(len(ids))} AND status = %s AND lease_expires_at = %s",
        [*ids, DeliveryStatus.SENDING.value, db_value("lease_expires_at", lease)],
    )
