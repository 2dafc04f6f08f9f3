"""Store accepted messages: dedupe, resolve identities and insert events in one transaction."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from django.db import connection, transaction

from destinations.delivery.enqueue import enqueue_deliveries
from destinations.delivery.routing import plan_deliveries
from destinations.identity.resolve import IdentityResolver
from destinations.identity.suppression import without_suppressed
from destinations.ingest.signals import events_stored
from destinations.messages.message import Message
from destinations.models import Event, IngestFailure
from destinations.raw_reads import values_present

# Rows per INSERT statement: 15 parameters a row stays well under SQLite's variable limit.
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
        existing = values_present(Event, "message_id", unique, also=[("source", source_id)])
        fresh = [m for message_id, m in unique.items() if message_id not in existing]
        stored = 0
        if fresh:
            if not statement:
                subjects = IdentityResolver().resolve(fresh)
            elif owners is not None:
                subjects = [owners.get(m.message_id) for m in fresh]
            else:
                subjects = [owner] * len(fresh)
            ids = insert_events(source_id, fresh, subjects, received_at)
            stored = len(ids)
            new_events = [(ids[m.message_id], m.payload) for m in fresh if m.message_id in ids]
            planned = plan_deliveries(new_events, received_at, demo=demo, only=only_destinations)
            if planned:
                transaction.on_commit(lambda: enqueue_deliveries(planned), robust=True)
            if not statement and stored and events_stored.has_listeners():
                touched = {subjects[i] for i, m in enumerate(fresh) if m.message_id in ids}
                touched.discard(None)
                if touched:
                    transaction.on_commit(
                        partial(events_stored.send, sender=Event, profile_ids=touched),
                        robust=True,
                    )
    return StoreResult(stored=stored, duplicates=len(kept) - stored, suppressed=suppressed)


def insert_events(
    source_id: int,
    messages: Sequence[Message],
    owners: Sequence[int | None],
    received_at: datetime,
) -> dict[str, int]:
    """Multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING: ids of the rows actually stored.

    A concurrent request carrying the same messageId loses the race on the unique index and
    its row is simply not returned, so nothing downstream treats it as new.
    """
    ops = connection.ops
    vendor = connection.vendor
    json_placeholder = "%s::jsonb" if vendor == "postgresql" else "%s"
    row_placeholder = "(" + ", ".join(["%s"] * 14 + [json_placeholder]) + ")"
    received = ops.adapt_datetimefield_value(received_at)
    table = ops.quote_name(Event._meta.db_table)
    columns = ", ".join(ops.quote_name(c) for c in EVENT_COLUMNS)
    stored: dict[str, int] = {}
    with connection.cursor() as cursor:
        for start in range(0, len(messages), INSERT_CHUNK):
            chunk = messages[start : start + INSERT_CHUNK]
            params: list[Any] = []
            for message, owner in zip(chunk, owners[start : start + INSERT_CHUNK], strict=True):
                params.extend(
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
                        ops.adapt_datetimefield_value(message.timestamp),
                        ops.adapt_datetimefield_value(message.original_timestamp),
                        ops.adapt_datetimefield_value(message.sent_at),
                        received,
                        owner,
                        message.payload_json.decode(),
                    )
                )
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES "
                + ", ".join([row_placeholder] * len(chunk))
                + ' ON CONFLICT ("source_id", "message_id") DO NOTHING'
                + ' RETURNING "id", "message_id"',
                params,
            )
            stored.update((message_id, pk) for pk, message_id in cursor.fetchall())
    return stored


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
