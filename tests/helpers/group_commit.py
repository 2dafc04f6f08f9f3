"""The group-commit writer's inputs as the ingest view makes them, and a real writer thread that
records what it does (the groups it takes, the transactions it tries) and can be held back."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from destinations.ingest.group_commit import GroupWriter, PendingWrite
from destinations.ingest.store import RefusedMessage, StoreResult
from destinations.messages.message import Message, validate_message
from tests.helpers.worker import wait_until


def track_message(
    message_id: str,
    *,
    user_id: str = "u1",
    event: str = "Clicked",
    received_at: datetime | None = None,
) -> Message:
    """A track call as the view accepts it."""
    item = {"type": "track", "userId": user_id, "event": event, "messageId": message_id}
    return validate_message(item, call_type=None, received_at=received_at or timezone.now())


def pending_write(
    source_id: int,
    message_ids: Sequence[str],
    *,
    event: str = "Clicked",
    user_id: str = "u1",
    received_at: datetime | None = None,
    demo: bool = False,
    refused: Sequence[RefusedMessage] = (),
) -> PendingWrite:
    """One request's accepted track calls, as ``accept_batch`` hands them to the writer."""
    at = received_at or timezone.now()
    messages = [
        track_message(mid, user_id=user_id, event=event, received_at=at) for mid in message_ids
    ]
    return PendingWrite(
        source_id=source_id,
        messages=messages,
        received_at=at,
        demo=demo,
        refused=refused,
        endpoint="batch",
    )


class RecordingWriter(GroupWriter):
    """The real writer thread, which also records the size of every group it takes and of
    every transaction it tries (a failed group is tried again one write at a time), and the
    database connection it uses. While ``gate`` is clear it takes nothing: writes queue up as
    they do behind a slow transaction, or the writer cannot answer at all."""

    def __init__(self, max_messages: int = 1000, threads: int = 1) -> None:
        super().__init__(max_messages, threads)
        self.gate = threading.Event()
        self.gate.set()
        self.taken: list[int] = []
        self.committed: list[int] = []
        self.database: BaseDatabaseWrapper | None = None

    def take(self) -> list[PendingWrite]:
        self.gate.wait()
        group = super().take()
        self.taken.append(len(group))
        return group

    def commit(self, group: list[PendingWrite]) -> None:
        self.committed.append(len(group))
        # The writer thread's own connection (Django keeps one per thread).
        self.database = connections["default"]
        super().commit(group)

    def waiting(self) -> int:
        with self.ready:
            return len(self.pending)

    def wait_for_waiting(self, count: int, timeout: float = 10) -> None:
        wait_until(
            lambda: self.waiting() == count,
            timeout,
            lambda: f"{self.waiting()} writes waiting, expected {count}",
        )

    def open_once_waiting(self, count: int) -> None:
        """Let the writer go once ``count`` writes wait for it."""
        self.wait_for_waiting(count)
        self.gate.set()


def store_from_threads(
    writer: GroupWriter,
    writes: Sequence[PendingWrite],
    timeout: float = 30,
    meanwhile: Callable[[], None] = lambda: None,
) -> list[StoreResult | Exception]:
    """Each write stored from a thread of its own, all at once, as concurrent requests do;
    ``meanwhile`` runs while they wait. Each one's result, or the error ``store`` raised, in
    the order of ``writes``."""

    def store(write: PendingWrite) -> StoreResult | Exception:
        try:
            return writer.store(write, timeout=timeout)
        except Exception as error:
            return error

    with ThreadPoolExecutor(len(writes)) as pool:
        futures = [pool.submit(store, write) for write in writes]
        meanwhile()
        return [future.result() for future in futures]
