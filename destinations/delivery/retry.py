"""Retry all failed: the job that re-queues a destination's failed deliveries."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from destinations.delivery.enqueue import enqueue_deliveries
from destinations.delivery.services import retryable
from destinations.models import Delivery, DeliveryStatus, Job

CHUNK = 500


def retry_failed(job: Job) -> None:
    """Re-queue failed deliveries in id order, a chunk per transaction, except those a retry
    cannot change (``services.retryable``). Progress is the count re-queued so far; a retried
    row is no longer failed, so a re-run continues where it left."""
    destination_id = job.params["destination_id"]
    window = timedelta(seconds=settings.DELIVERY_RETRY_WINDOW_SECONDS)
    requeue = timedelta(seconds=settings.DELIVERY_REQUEUE_AFTER_SECONDS)
    last_id = 0
    while True:
        now = timezone.now()
        with transaction.atomic():
            ids = list(
                Delivery.objects.filter(retryable(), destination_id=destination_id, id__gt=last_id)
                .order_by("id")
                .values_list("id", flat=True)[:CHUNK]
            )
            if not ids:
                return
            last_id = ids[-1]
            Delivery.objects.filter(retryable(), id__in=ids).update(
                status=DeliveryStatus.PENDING,
                next_attempt_at=now + requeue,
                retry_until=now + window,
                finished_at=None,
                reason="",
            )
            done = job.done + len(ids)
            job.done = done
            Job.objects.filter(pk=job.pk).update(done=done, heartbeat_at=now)
            transaction.on_commit(partial(enqueue_deliveries, {destination_id: ids}), robust=True)
