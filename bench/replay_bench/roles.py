"""The roles that run inside Django, in a child process with the backend's environment
(``replay.py ROLE ARGS``); each prints one line of JSON. The live events are the delivery
benchmark's ``seed`` role."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from deliver_bench.app import (
    create_destination,
    create_source,
    event_document,
    seed_role,
    store_events,
)
from measure.app import django_setup

from replay_bench.config import HISTORY_DAYS

CANCEL_TRIES = 3


def source_role(argv: Sequence[str]) -> int:
    """``replay.py source``: the bench's source (no destination yet); prints its write key."""
    django_setup()
    print(json.dumps({"write_key": create_source()}))
    return 0


def history_role(argv: Sequence[str]) -> int:
    """``replay.py history N USERS``: N events from USERS users, their timestamps spread
    evenly over the HISTORY_DAYS days before now and the users interleaved, stored through
    the app's ingest path; prints how many were stored and the last event's id."""
    django_setup()
    from django.utils import timezone

    from destinations.models import Event

    total, users = int(argv[0]), int(argv[1])
    first = timezone.now() - timedelta(days=HISTORY_DAYS)
    step = timedelta(days=HISTORY_DAYS) / total

    def document(message_id: str, number: int) -> dict[str, Any]:
        return event_document(message_id, number, users=users, at=first + number * step)

    stored = store_events("history", total, document)
    last = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    print(json.dumps({"stored": stored, "last_event_id": last}))
    return 0 if stored == total else 1


def destination_role(argv: Sequence[str]) -> int:
    """``replay.py destination PORT``: the Refiner destination, sending to the fake Refiner on
    PORT, its rate limit lifted; prints its id."""
    django_setup()
    print(json.dumps({"destination_id": create_destination(int(argv[0]))}))
    return 0


def replay_role(argv: Sequence[str]) -> int:
    """``replay.py replay DESTINATION_ID INCLUDE_RECEIVED``: start a replay of everything
    stored until now (``services.start``, as the dashboard does); prints its ids and total."""
    django_setup()
    from django.utils import timezone

    from destinations.models import Destination
    from destinations.replay.definition import ReplayDefinition
    from destinations.replay.services import start

    destination = Destination.objects.get(pk=int(argv[0]))
    definition = ReplayDefinition(until=timezone.now(), include_received=argv[1] == "1")
    replay = start(destination, definition, actor=None)
    print(json.dumps({"replay_id": replay.pk, "job_id": replay.job_id, "total": replay.job.total}))
    return 0


def cancel_role(argv: Sequence[str]) -> int:
    """``replay.py cancel REPLAY_ID``: cancel a replay as an operator does (what it has not
    sent is skipped), trying again, as an operator would, if the database refuses; prints
    whether it was cancelled and the errors met on the way."""
    django_setup()
    from django.db import DatabaseError

    from destinations.models import Replay
    from destinations.replay.services import cancel_replay

    replay = Replay.objects.select_related("job").get(pk=int(argv[0]))
    errors: list[str] = []
    for _ in range(CANCEL_TRIES):
        try:
            print(json.dumps({"cancelled": cancel_replay(replay, actor=None), "errors": errors}))
            return 0
        except DatabaseError as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:500])
            time.sleep(1)
    print(json.dumps({"cancelled": False, "errors": errors}))
    return 0


# ``replay.py ROLE ARGS``: what the run starts in child processes.
ROLES: dict[str, Callable[[Sequence[str]], int]] = {
    "source": source_role,
    "history": history_role,
    "destination": destination_role,
    "seed": seed_role,
    "replay": replay_role,
    "cancel": cancel_role,
}
