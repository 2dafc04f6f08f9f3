"""Long operations run by a worker, reported through a Job row the dashboard polls; which
function runs each kind of job is named in ``RUNNERS``."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.utils import timezone
from django.utils.module_loading import import_string

from destinations.models import Job, JobKind, JobStatus

logger = logging.getLogger(__name__)


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
        Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
            status=JobStatus.FAILED, error=str(exc)[:2000], finished_at=timezone.now()
        )
        return
    # Only a job still running is done: a replay paused or cancelled while it ran stays so.
    Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
        status=JobStatus.DONE, finished_at=timezone.now()
    )


# Each kind of job and the function that runs it, named so this module imports none of them:
# each area's job code depends on the engine, not the reverse.
RUNNERS: dict[str, str] = {
    JobKind.RETRY_FAILED: "destinations.delivery.retry.retry_failed",
    JobKind.REPROCESS: "destinations.connectors.kana.reprocess.reprocess",
    JobKind.IMPORT: "destinations.people.jobs.run_import",
    JobKind.BULK_MERGE: "destinations.people.jobs.run_bulk_merge",
    JobKind.AUDIENCE: "destinations.audiences.jobs.run_computation",
    JobKind.COMPUTED_TRAIT: "destinations.audiences.jobs.run_trait_computation",
    JobKind.REPLAY: "destinations.replay.runner.run_replay",
}


def runner(kind: str) -> Callable[[Job], None]:
    try:
        dotted = RUNNERS[kind]
    except KeyError:
        raise ValueError(f"unknown job kind {kind!r}") from None
    run: Callable[[Job], None] = import_string(dotted)
    return run
