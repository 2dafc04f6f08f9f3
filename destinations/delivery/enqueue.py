"""Wake workers for deliveries: one task per destination per chunk, never one per event."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from django.conf import settings

logger = logging.getLogger(__name__)


def enqueue_deliveries(by_destination: Mapping[int, Sequence[int]]) -> None:
    """Called after commit. If the broker cannot be reached the rows are still in the database,
    and the sweeper enqueues them once it can: the request that stored them is not failed."""
    from destinations.tasks import deliver_task

    size = settings.DELIVERY_TASK_BATCH
    try:
        for ids in by_destination.values():
            for start in range(0, len(ids), size):
                deliver_task.delay(list(ids[start : start + size]))
    except Exception:
        logger.warning("could not enqueue deliveries; the sweeper will pick them up", exc_info=True)
