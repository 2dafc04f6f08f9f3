"""Long operations run by a worker, reported through a Job row the dashboard polls."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from destinations.delivery.enqueue import enqueue_deliveries
from destinations.models import Delivery, DeliveryStatus, Job, JobKind, JobStatus

logger = logging.getLogger(__name__)
CHUNK = 500


def run_job(job_id: int) -> None:
    # Claimed like a delivery, so a job enqueued twice runs once.
    started = Job.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING, started_at=timezone.now(), heartbeat_at=timezone.now()
    )
    if not started:
        return
    job = Job.objects.get(pk=job_id)
    try:
        runner(job.kind)(job)
    except Exception as exc:
        logger.exception("job %s failed", job_id)
        Job.objects.filter(pk=job_id).update(
            status=JobStatus.FAILED, error=str(exc)[:2000], finished_at=timezone.now()
        )
        return
    Job.objects.filter(pk=job_id).update(status=JobStatus.DONE, finished_at=timezone.now())


def runner(kind: str) -> Callable[[Job], None]:
    # Imported when needed: each area's job code depends on the engine, not the reverse.
    if kind == JobKind.RETRY_FAILED:
        return retry_failed
    if kind == JobKind.REPROCESS:
        from destinations.mapping.reprocess import reprocess

        return reprocess
    if kind == JobKind.IMPORT:
        from destinations.identity.jobs import run_import

        return run_import
    if kind == JobKind.BULK_MERGE:
        from destinations.identity.jobs import run_bulk_merge

        return run_bulk_merge
    raise ValueError(f"unknown job kind {kind!r}")


def retry_failed(job: Job) -> None:
    """Re-queue failed deliveries in id order, a chunk per transaction, except those a retry
    cannot change (``services.retryable``). Progress is the count re-queued so far; a retried
    row is no longer failed, so a re-run continues where it left."""
    from destinations.delivery.services import retryable

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
