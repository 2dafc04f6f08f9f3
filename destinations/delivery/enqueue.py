"""Wake workers for deliveries: one task per destination per chunk, never one per event.

Wake-ups are gathered per process for ``DELIVERY_COALESCE_SECONDS`` (100 ms) before they are
sent. A task costs a worker several milliseconds whatever it carries, so at 200 single-event
requests a second, one task per request would use the workers' CPU on overhead alone; gathered,
they become a few tasks a second carrying many deliveries each. A full chunk
(``DELIVERY_TASK_BATCH``) is sent at once. Wake-ups still gathered when a process dies are not
lost work: the rows are in the database and the sweeper wakes them.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Mapping, Sequence

from django.conf import settings

from destinations import dispatch

logger = logging.getLogger(__name__)


def enqueue_deliveries(by_destination: Mapping[int, Sequence[int]]) -> None:
    """Called after commit. If the broker cannot be reached the rows are still in the database,
    and the sweeper enqueues them once it can: the request that stored them is not failed."""
    if settings.DELIVERY_COALESCE_SECONDS <= 0:
        send_wakeups(chunked(by_destination))
        return
    _buffer.add(by_destination)


def chunked(by_destination: Mapping[int, Sequence[int]]) -> list[list[int]]:
    size = settings.DELIVERY_TASK_BATCH
    return [
        list(ids[start : start + size])
        for ids in by_destination.values()
        for start in range(0, len(ids), size)
    ]


def send_wakeups(chunks: Sequence[list[int]]) -> None:
    try:
        for ids in chunks:
            dispatch.deliver(ids)
    except Exception:
        logger.warning("could not enqueue deliveries; the sweeper will pick them up", exc_info=True)


class WakeupBuffer:
    """Delivery ids waiting to be sent as tasks, per destination, flushed by a timer."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waiting: dict[int, list[int]] = {}
        self.timer: threading.Timer | None = None

    def add(self, by_destination: Mapping[int, Sequence[int]]) -> None:
        size = settings.DELIVERY_TASK_BATCH
        full: list[list[int]] = []
        with self.lock:
            for destination_id, ids in by_destination.items():
                waiting = self.waiting.setdefault(destination_id, [])
                waiting.extend(ids)
                while len(waiting) >= size:
                    full.append(waiting[:size])
                    del waiting[:size]
            if self.timer is None and any(self.waiting.values()):
                self.timer = threading.Timer(settings.DELIVERY_COALESCE_SECONDS, self.flush)
                self.timer.daemon = True
                self.timer.start()
        if full:
            send_wakeups(full)

    def flush(self) -> None:
        with self.lock:
            taken, self.waiting, self.timer = self.waiting, {}, None
        chunks = [ids for ids in taken.values() if ids]
        if chunks:
            send_wakeups(chunks)

    def reset_after_fork(self) -> None:
        # A forked child inherits the parent's gathered ids (the parent sends them) and maybe
        # a held lock, but not the timer's thread.
        self.lock = threading.Lock()
        self.waiting = {}
        self.timer = None


_buffer = WakeupBuffer()
os.register_at_fork(after_in_child=_buffer.reset_after_fork)
# A short-lived process (a management command, a script) sends what it gathered as it exits.
atexit.register(_buffer.flush)


def flush_wakeups() -> None:
    """Send gathered wake-ups now (tests and commands that wait for delivery)."""
    _buffer.flush()
