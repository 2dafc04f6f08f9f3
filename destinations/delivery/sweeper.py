"""Find delivery work whose wake-up never came, and wake it.

The broker only carries wake-ups; the database says what is owed. Every few seconds (Celery
beat) the sweeper (1) turns claims whose lease expired, because the worker was killed mid-send,
back into retries, and (2) enqueues waiting rows that are due. It pushes their ``next_attempt_at``
forward by the re-queue grace while doing so, so a backlog larger than the workers can take in
one sweep is not enqueued again and again.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from destinations import dispatch
from destinations.delivery.enqueue import enqueue_deliveries
from destinations.models import (
    WAITING,
    AttemptOutcome,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Job,
    JobStatus,
    Upload,
)

logger = logging.getLogger(__name__)
SWEEP_LIMIT = 20_000
LOST_ATTEMPT = "no outcome: the worker stopped during the attempt (its claim expired)"


def sweep() -> int:
    """Returns how many deliveries were enqueued."""
    recover_expired_claims()
    recover_jobs()
    forget_old_uploads()
    now = timezone.now()
    with transaction.atomic():
        due = Delivery.objects.filter(
            status__in=WAITING,
            next_attempt_at__lte=now,
            destination__enabled=True,
            destination__paused_at__isnull=True,
        ).order_by("next_attempt_at")
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True, of=("self",))
        rows = list(due.values_list("id", "destination_id")[:SWEEP_LIMIT])
        if not rows:
            return 0
        grace = now + timedelta(seconds=settings.DELIVERY_REQUEUE_AFTER_SECONDS)
        # Pending: a wake-up is on its way now, so the claim takes it (a retrying row is only
        # taken once due, which keeps stray wake-ups from cutting a backoff short).
        Delivery.objects.filter(id__in=[pk for pk, _ in rows]).update(
            next_attempt_at=grace, status=DeliveryStatus.PENDING
        )
        by_destination: dict[int, list[int]] = defaultdict(list)
        for pk, destination_id in rows:
            by_destination[destination_id].append(pk)
        transaction.on_commit(lambda: enqueue_deliveries(by_destination), robust=True)
    return len(rows)


def recover_expired_claims() -> int:
    now = timezone.now()
    with transaction.atomic():
        expired = Delivery.objects.filter(
            status=DeliveryStatus.SENDING, lease_expires_at__lt=now
        ).order_by("id")
        if connection.features.has_select_for_update_skip_locked:
            expired = expired.select_for_update(skip_locked=True, of=("self",))
        rows = list(expired[:SWEEP_LIMIT])
        for delivery in rows:
            delivery.lease_expires_at = None
            delivery.last_error = LOST_ATTEMPT
            if now > delivery.retry_until:
                delivery.status = DeliveryStatus.FAILED
                delivery.reason = f"gave up after {delivery.attempts} attempts: {LOST_ATTEMPT}"
                delivery.finished_at = now
            else:
                delivery.status = DeliveryStatus.RETRYING
                delivery.reason = LOST_ATTEMPT
                delivery.next_attempt_at = now
        Delivery.objects.bulk_update(
            rows,
            [
                "status",
                "reason",
                "last_error",
                "lease_expires_at",
                "next_attempt_at",
                "finished_at",
            ],
        )
        DeliveryAttempt.objects.bulk_create(
            DeliveryAttempt(
                delivery_id=d.pk,
                number=d.attempts,
                outcome=AttemptOutcome.FAILED
                if d.status == DeliveryStatus.FAILED
                else AttemptOutcome.RETRY,
                error=LOST_ATTEMPT,
            )
            for d in rows
        )
    return len(rows)


def forget_old_uploads() -> int:
    """Uploaded files are kept for their job; one a failed or abandoned job left is dropped
    after a day."""
    old = timezone.now() - timedelta(days=1)
    deleted, _ = Upload.objects.filter(created_at__lt=old).delete()
    return deleted


def recover_jobs() -> int:
    """Jobs whose wake-up was lost, or whose worker died midway, are queued again. Every job
    kind resumes safely: retry-all and reprocessing continue from their cursor, an import
    re-applied changes nothing already imported, bulk merge continues with the groups left, a
    replay's lanes continue from their checkpoints."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.JOB_STALE_SECONDS)
    dead = list(
        Job.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=stale).values_list(
            "pk", flat=True
        )[:100]
    )
    Job.objects.filter(pk__in=dead, status=JobStatus.RUNNING).update(status=JobStatus.QUEUED)
    waiting = list(
        Job.objects.filter(status=JobStatus.QUEUED)
        .filter(
            Q(pk__in=dead)
            | Q(heartbeat_at__isnull=True, created_at__lt=stale)
            | Q(heartbeat_at__lt=stale)
        )
        .values_list("pk", "kind")[:100]
    )
    if not waiting:
        return 0
    # The heartbeat of a queued job marks its last wake-up, so it is not sent on every sweep.
    Job.objects.filter(pk__in=[pk for pk, _ in waiting]).update(heartbeat_at=now)
    for pk, kind in waiting:
        try:
            dispatch.send(dispatch.job_task(kind), pk)
        except Exception:
            logger.warning("could not enqueue job %s; the next sweep will", pk, exc_info=True)
    return len(waiting)
