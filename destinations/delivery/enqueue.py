"""Wake workers for deliveries: one task per destination per chunk, never one per event.

Wake-ups are gathered per process for ``DELIVERY_COALESCE_SECONDS`` (100 ms) before they are
sent (``destinations.coalesce``); a full chunk (``DELIVERY_TASK_BATCH``) is sent at once.
Wake-ups still gathered when a process dies are not lost work: the rows are in the database and
the sweeper wakes them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from django.conf import settings

from destinations import dispatch
from destinations.coalesce import Coalescer

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


def new_buffer() -> Coalescer:
    # ``send_wakeups`` is looked up when sending, so a test can capture what would be sent.
    return Coalescer(
        lambda chunks: send_wakeups(chunks),
        batch=lambda: settings.DELIVERY_TASK_BATCH,
        delay=lambda: settings.DELIVERY_COALESCE_SECONDS,
    )


_buffer = new_buffer()


def flush_wakeups() -> None:
    """Send gathered wake-ups now (tests and commands that wait for delivery)."""
    _buffer.flush()
