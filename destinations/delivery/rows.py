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

from destinations.models import Delivery, DeliveryAttempt, DeliveryStatus, Destination, Event
from destinations.raw_reads import column as raw_column
from destinations.raw_reads import instances, placeholders

_quote = connection.ops.quote_name
DELIVERY = _quote(Delivery._meta.db_table)
DELIVERY_FIELDS = list(Delivery._meta.concrete_fields)
DELIVERY_COLUMNS = ", ".join(_quote(f.column) for f in DELIVERY_FIELDS)
ATTEMPT = _quote(DeliveryAttempt._meta.db_table)
ATTEMPT_FIELDS = [f for f in DeliveryAttempt._meta.concrete_fields if not f.primary_key]
ATTEMPT_COLUMNS = ", ".join(_quote(f.column) for f in ATTEMPT_FIELDS)
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


def take(delivery_ids: Sequence[int], *, now: datetime, lease: datetime) -> list[Delivery]:
    """Move those of ``delivery_ids`` that wait and may be sent now to ``sending``, with
    ``lease``; returns the rows taken, as they are now (their ``event`` is not loaded). Call
    inside a transaction.

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
    assignments = "status = %s, lease_expires_at = %s, attempts = attempts + 1"
    params = [DeliveryStatus.SENDING.value, db_value("lease_expires_at", lease)]
    where_params = [
        *delivery_ids,
        DeliveryStatus.PENDING.value,
        DeliveryStatus.RETRYING.value,
        db_value("next_attempt_at", now),
        True,
    ]
    with connection.cursor() as cursor:
        if returning_supported():
            # The rows come back from the UPDATE itself: no second statement to read them.
            cursor.execute(
                f"UPDATE {DELIVERY} SET {assignments} WHERE id IN ({waiting}) "
                f"RETURNING {DELIVERY_COLUMNS}",
                [*params, *where_params],
            )
            return deliveries_from(cursor.fetchall())
    ids = update_returning_ids(assignments, params, f"id IN ({waiting})", where_params)
    if not ids:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {DELIVERY_COLUMNS} FROM {DELIVERY} WHERE id IN {placeholders(len(ids))}", ids
        )
        return deliveries_from(cursor.fetchall())


def deliveries_from(rows: Sequence[Sequence[Any]]) -> list[Delivery]:
    """Model instances from rows of ``DELIVERY_COLUMNS``, converted as the ORM would."""
    return sorted(instances(Delivery, rows), key=lambda delivery: delivery.pk)


def payloads(delivery_ids: Sequence[int]) -> dict[int, Any]:
    """The events' payloads of these deliveries, as stored (``with_event`` decodes one). A
    payload never changes once stored, so it may be read before the row is claimed."""
    if not delivery_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT d.id, e.{_quote(PAYLOAD_FIELD.column)} "
            f"FROM {DELIVERY} d JOIN {EVENT} e ON e.id = d.event_id "
            f"WHERE d.id IN {placeholders(len(delivery_ids))}",
            list(delivery_ids),
        )
        return dict(cursor.fetchall())


def with_event(delivery: Delivery, stored_payload: Any) -> Delivery:
    """Attach the event, with only its payload loaded: the only column of the event that is
    sent; the others load on first use (the failure notice reads a few)."""
    payload = PAYLOAD_FIELD.from_db_value(stored_payload, None, connection)  # type: ignore[arg-type]
    event = Event.from_db(connection.alias, ["id", "payload"], [delivery.event_id, payload])
    delivery.event = event
    return delivery


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


def renew(ids: Sequence[int], lease: datetime, new_lease: datetime) -> list[int]:
    """Extend the lease of those of ``ids`` still held by the claim ``lease``; returns their ids.
    The new lease is the claim's token from then on."""
    return update_returning_ids(
        f"{_quote(column('lease_expires_at'))} = %s",
        [db_value("lease_expires_at", new_lease)],
        f"id IN {placeholders(len(ids))} AND status = %s AND lease_expires_at = %s",
        [*ids, DeliveryStatus.SENDING.value, db_value("lease_expires_at", lease)],
    )


def insert_attempts(attempts: Sequence[DeliveryAttempt], batch_size: int = 500) -> None:
    """``INSERT`` the attempt rows, many per statement (``bulk_create`` compiled each one)."""
    row = "(" + ", ".join(["%s"] * len(ATTEMPT_FIELDS)) + ")"
    with connection.cursor() as cursor:
        for start in range(0, len(attempts), batch_size):
            batch = attempts[start : start + batch_size]
            params = [
                field.get_db_prep_save(getattr(attempt, field.attname), connection)
                for attempt in batch
                for field in ATTEMPT_FIELDS
            ]
            cursor.execute(
                f"INSERT INTO {ATTEMPT} ({ATTEMPT_COLUMNS}) VALUES {', '.join([row] * len(batch))}",
                params,
            )


def note_success(destination_id: int, now: datetime, unless_since: datetime) -> None:
    """Mark the destination healthy, unless it already is with a success since ``unless_since``
    (so that not every write of every worker rewrites the same row)."""
    success = raw_column(Destination, "last_success_at")
    failures = raw_column(Destination, "consecutive_failures")
    value = Destination._meta.get_field("last_success_at").get_db_prep_save
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {DESTINATION} SET {success} = %s, {failures} = 0 WHERE id = %s "
            f"AND ({failures} > 0 OR {success} IS NULL OR {success} < %s)",
            [value(now, connection), destination_id, value(unless_since, connection)],
        )
