"""Store accepted messages: dedupe, resolve identities and insert events in one transaction."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache, partial

from django.db import connection, transaction

from destinations.binary_params import execute_binary
from destinations.db_values import moment_adapter
from destinations.delivery.enqueue import enqueue_deliveries
from destinations.delivery.routing import plan_deliveries
from destinations.identity.resolve import IdentityResolver
from destinations.identity.suppression import without_suppressed
from destinations.ingest.signals import events_stored
from destinations.ingest.table_statistics import keeper as statistics
from destinations.messages.message import Message
from destinations.models import Event, IngestFailure
from destinations.raw_reads import values_present

# Rows per INSERT statement on SQLite: 15 parameters a row stays under its variable limit.
INSERT_CHUNK = 500
EVENT_COLUMNS = (
    "source_id",
    "message_id",
    "type",
    "user_id",
    "anonymous_id",
    "event",
    "name",
    "group_id",
    "previous_id",
    "timestamp",
    "original_timestamp",
    "sent_at",
    "received_at",
    "profile_id",
    "payload",
)


@dataclass(frozen=True, slots=True)
class StoreResult:
    stored: int
    duplicates: int
    suppressed: int = 0


@dataclass(frozen=True, slots=True)
class RefusedMessage:
    index: int | None
    reason: str
    excerpt: str


def store_messages(
    *,
    source_id: int,
    messages: Sequence[Message],
    received_at: datetime,
    refused: Sequence[RefusedMessage] = (),
    endpoint: str = "",
    owner: int | None = None,
    statement: bool = False,
    demo: bool = False,
    owners: Mapping[str, int | None] | None = None,
    only_destinations: Collection[int] | None = None,
) -> StoreResult:
    """Keep each message once per (source, messageId); return when the rows are committed.

    A ``statement`` is Switchboard's own event (a re-send, a system event): it is stored as
    ``owner``'s without identity resolution or suppression, since it brings no news about
    anyone and must not recreate a user it reports deleted; ``owners`` may name each message's
    owner by messageId instead. ``demo``: the messages are demo data (a demo source's),
    delivered to demo destinations only. ``only_destinations``: routed to these and no others
    (an audience's sync goes to the destinations the audience picked).
    """
    kept, suppressed = (list(messages), 0) if statement else without_suppressed(messages)
    unique: dict[str, Message] = {}
    for message in kept:
        unique.setdefault(message.message_id, message)
    with transaction.atomic():
        if refused:
            record_refusals(source_id, refused, endpoint=endpoint, received_at=received_at)
        ids = store_unique(
            source_id,
            list(unique.values()),
            [received_at] * len(unique),
            statement=statement,
            owner=owner,
            owners=owners,
            demo=demo,
            only_destinations=only_destinations,
        )
    stored = len(ids)
    return StoreResult(stored=stored, duplicates=len(kept) - stored, suppressed=suppressed)


def store_unique(
    source_id: int,
    messages: Sequence[Message],
    received_ats: Sequence[datetime],
    *,
    statement: bool = False,
    owner: int | None = None,
    owners: Mapping[str, int | None] | None = None,
    demo: bool = False,
    only_destinations: Collection[int] | None = None,
) -> dict[str, int]:
    """Store messages of distinct messageIds, each received at its ``received_ats`` entry, in the
    caller's transaction: the ids of the events stored by messageId (one already stored is left
    out). Resolves identities, plans deliveries and announces the users touched on commit."""
    existing = stored_message_ids(source_id, [m.message_id for m in messages])
    fresh_at = [(m, at) for m, at in zip(messages, received_ats, strict=True)]
    fresh_at = [(m, at) for m, at in fresh_at if m.message_id not in existing]
    if not fresh_at:
        return {}
    fresh = [m for m, _ in fresh_at]
    if not statement:
        subjects = IdentityResolver().resolve(fresh)
    elif owners is not None:
        subjects = [owners.get(m.message_id) for m in fresh]
    else:
        subjects = [owner] * len(fresh)
    ids = insert_events(source_id, fresh, subjects, [at for _, at in fresh_at])
    new_events = [(ids[m.message_id], m.payload) for m in fresh if m.message_id in ids]
    latest = max(at for _, at in fresh_at)
    planned = plan_deliveries(new_events, latest, demo=demo, only=only_destinations)
    if ids and connection.vendor == "postgresql":
        transaction.on_commit(partial(statistics.events_stored, len(ids)), robust=True)
    if planned:
        transaction.on_commit(lambda: enqueue_deliveries(planned), robust=True)
    if not statement and ids and events_stored.has_listeners():
        touched = {subjects[i] for i, m in enumerate(fresh) if m.message_id in ids}
        touched.discard(None)
        if touched:
            transaction.on_commit(
                partial(events_stored.send, sender=Event, profile_ids=touched), robust=True
            )
    return ids


def stored_message_ids(source_id: int, message_ids: Sequence[str]) -> set[str]:
    """Which of ``message_ids`` the source already has events for: a probe of the (source,
    messageId) unique index each, as long as PostgreSQL's statistics of the events are not
    far behind the table (destinations/ingest/table_statistics.py)."""
    return values_present(Event, "message_id", message_ids, also=[("source", source_id)])


def insert_events(
    source_id: int,
    messages: Sequence[Message],
    owners: Sequence[int | None],
    received_ats: Sequence[datetime],
) -> dict[str, int]:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING: ids of the rows actually stored.

    A concurrent request carrying the same messageId loses the race on the unique index and
    its row is simply not returned, so nothing downstream treats it as new.
    """
    adapt = moment_adapter(connection)
    rows = [
        (
            source_id,
            message.message_id,
            message.type,
            message.user_id,
            message.anonymous_id,
            message.event,
            message.name,
            message.group_id,
            message.previous_id,
            adapt(message.timestamp),
            adapt(message.original_timestamp),
            adapt(message.sent_at),
            adapt(received_at),
            owner,
            message.payload_json.decode(),
        )
        for message, owner, received_at in zip(messages, owners, received_ats, strict=True)
    ]
    stored: dict[str, int] = {}
    if connection.vendor == "postgresql":
        arrays = [list(column) for column in zip(*rows, strict=True)]
        _, returned = execute_binary(unnest_insert_sql(), arrays, fetch=True)
        stored.update((message_id, pk) for pk, message_id in returned)
        return stored
    with connection.cursor() as cursor:
        for start in range(0, len(rows), INSERT_CHUNK):
            chunk = rows[start : start + INSERT_CHUNK]
            values = ", ".join(["(" + ", ".join(["%s"] * len(EVENT_COLUMNS)) + ")"] * len(chunk))
            cursor.execute(
                insert_sql(f"VALUES {values}"), [value for row in chunk for value in row]
            )
            stored.update((message_id, pk) for pk, message_id in cursor.fetchall())
    return stored


def insert_sql(rows: str) -> str:
    quote = connection.ops.quote_name
    columns = ", ".join(quote(c) for c in EVENT_COLUMNS)
    return (
        f"INSERT INTO {quote(Event._meta.db_table)} ({columns}) {rows}"
        ' ON CONFLICT ("source_id", "message_id") DO NOTHING RETURNING "id", "message_id"'
    )


@cache
def unnest_insert_sql() -> str:
    """PostgreSQL's INSERT of the events, built once: its text does not depend on the rows."""
    return insert_sql(unnest_source())


def unnest_source() -> str:
    """``SELECT * FROM unnest(CAST(%b AS bigint[]), ...)``: each column's array, in binary
    (destinations/binary_params.py), cast to the column's own type (jsonb for the payload,
    sent as text)."""
    by_column = {field.column: field for field in Event._meta.concrete_fields}
    arrays = ", ".join(
        f"CAST(%b AS {by_column[name].db_type(connection)}[])" for name in EVENT_COLUMNS
    )
    return f"SELECT * FROM unnest({arrays})"


def record_refusals(
    source_id: int,
    refused: Sequence[RefusedMessage],
    *,
    endpoint: str,
    received_at: datetime,
) -> None:
    IngestFailure.objects.bulk_create(
        IngestFailure(
            source_id=source_id,
            received_at=received_at,
            endpoint=endpoint,
            batch_index=r.index,
            reason=r.reason,
            excerpt=r.excerpt,
        )
        for r in refused
    )
