"""The roles that run inside Django, in a child process with the backend's environment
(``deliver.py setup PORT``, ``deliver.py seed PREFIX N``), and the events they store."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from measure.app import NO_LIMIT, django_setup
from measure.load import LIBRARY, iso
from measure.servers import HOST

from deliver_bench.config import API_KEY, DESTINATION_NAME, SOURCE_NAME, USERS


def create_source() -> str:
    """The bench's source, its rate limit lifted; its write key."""
    from destinations.sources import source_create

    return source_create(name=SOURCE_NAME, rate_limit_per_second=NO_LIMIT).write_key


def create_destination(port: int, name: str = DESTINATION_NAME) -> int:
    """A Refiner destination sending to the fake Refiner on ``port``, its rate limit lifted."""
    from destinations.delivery.services import destination_create
    from destinations.models import Destination

    destination = destination_create(
        kind="refiner",
        name=name,
        settings_values={"base_url": f"http://{HOST}:{port}/v1"},
        secret_values={"api_key": API_KEY},
    )
    Destination.objects.filter(pk=destination.pk).update(rate_limit_per_minute=NO_LIMIT)
    return destination.pk


def setup_role(argv: Sequence[str]) -> int:
    """``deliver.py setup PORT``: the source and the Refiner destination; prints their ids."""
    django_setup()
    write_key = create_source()
    destination_id = create_destination(int(argv[0]))
    print(json.dumps({"write_key": write_key, "destination_id": destination_id}))
    return 0


def event_document(
    message_id: str, number: int, users: int = USERS, at: datetime | None = None
) -> dict[str, Any]:
    """Three track calls for each identify, from ``users`` users, as a server-side SDK sends
    them; timestamped ``at`` (now if not given)."""
    user = f"user-{number * 7919 % users}"
    common: dict[str, Any] = {"messageId": message_id, "userId": user, "timestamp": iso(at)}
    common["context"] = {"library": dict(LIBRARY)}
    if number % 4 == 0:
        traits = {"email": f"{user}@example.com", "name": f"User {user}", "plan": "pro"}
        return {**common, "type": "identify", "traits": traits}
    properties = {"order_id": message_id, "revenue": 42.5, "currency": "USD"}
    return {**common, "type": "track", "event": "Order Completed", "properties": properties}


def store_events(
    prefix: str, total: int, document: Callable[[str, int], dict[str, Any]] = event_document
) -> int:
    """Store ``total`` events (``document(message_id, number)``) through the app's ingest
    path, as many at a time as it inserts at once; deliveries are planned in the same
    transaction and their tasks enqueued on commit. Django must be set up. Returns how many
    were stored."""
    from django.utils import timezone

    from destinations.ingest.store import INSERT_CHUNK, store_messages
    from destinations.messages.message import validate_message
    from destinations.models import Source

    source_id = Source.objects.get(name=SOURCE_NAME).pk
    stored = 0
    for start in range(0, total, INSERT_CHUNK):
        received_at = timezone.now()
        messages = [
            validate_message(document(f"{prefix}-{n}", n), call_type=None, received_at=received_at)
            for n in range(start, min(total, start + INSERT_CHUNK))
        ]
        result = store_messages(source_id=source_id, messages=messages, received_at=received_at)
        stored += result.stored
    return stored


def seed_role(argv: Sequence[str]) -> int:
    """``deliver.py seed PREFIX N``: store N events through the app's ingest path."""
    django_setup()
    total = int(argv[1])
    stored = store_events(argv[0], total)
    print(json.dumps({"stored": stored}))
    return 0 if stored == total else 1
