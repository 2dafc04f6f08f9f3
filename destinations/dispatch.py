"""Tasks are sent by name, through here: services never import the task module, so the tasks
(which call services) and the services (which send tasks) cannot form an import cycle.

Each name is a task in ``destinations.tasks``; a test checks that every name here has one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from celery import current_app
from django.db import transaction

DELIVER = "destinations.deliver"
SWEEP = "destinations.sweep"
RUN_JOB = "destinations.run_job"
DELETE_REFINER_CONTACTS = "destinations.delete_refiner_contacts"
REEVALUATE_AUDIENCES = "destinations.reevaluate_audiences"
AUDIENCE_WINDOWS = "destinations.audience_windows"
# A replay's job runs on the replay queue (settings.CELERY_TASK_ROUTES), apart from live work.
RUN_REPLAY = "destinations.run_replay"
TASK_NAMES = frozenset(
    {
        DELIVER,
        SWEEP,
        RUN_JOB,
        RUN_REPLAY,
        DELETE_REFINER_CONTACTS,
        REEVALUATE_AUDIENCES,
        AUDIENCE_WINDOWS,
    }
)
# Job kinds whose job is not run by RUN_JOB.
JOB_TASKS = {"replay": RUN_REPLAY}


def send(name: str, *args: Any) -> None:
    """Send task ``name`` now, with positional ``args`` (ids and plain data, never rows)."""
    if name not in TASK_NAMES:
        raise LookupError(f"no task named {name!r}")
    current_app.send_task(name, args=args)


def send_on_commit(name: str, *args: Any) -> None:
    """Send task ``name`` once the current transaction commits (at once outside one); a broker
    that cannot be reached then does not undo what was committed."""
    transaction.on_commit(lambda: send(name, *args), robust=True)


def deliver(delivery_ids: Sequence[int]) -> None:
    send(DELIVER, list(delivery_ids))


def reevaluate_audiences(profile_ids: Sequence[int]) -> None:
    send(REEVALUATE_AUDIENCES, list(profile_ids))


def run_job_on_commit(job_id: int, kind: str = "") -> None:
    send_on_commit(job_task(kind), job_id)


def job_task(kind: str) -> str:
    """The task that runs a job of ``kind``."""
    return JOB_TASKS.get(kind, RUN_JOB)


def delete_refiner_contacts_on_commit(
    entry_id: int, people: Sequence[Mapping[str, str | None]]
) -> None:
    """After a merge or delete that asked for it: the people's Refiner contacts are deleted
    (by user id, else email; someone with neither has no contact to find)."""
    wanted = [dict(p) for p in people if p.get("user_id") or p.get("email")]
    if wanted:
        send_on_commit(DELETE_REFINER_CONTACTS, entry_id, wanted)
