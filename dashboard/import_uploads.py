"""Uploaded CSV files held between the import steps (choose columns, preview, import).

A file is kept as an Upload row, in the database like the import job's own copy, because the
steps are separate requests that may reach different web processes. Pages name it only by a
signed, expiring token, so a link cannot be edited to name another file. Staged files a day old
are removed when the next one is staged; those a queued or running job still needs are kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from django.contrib.auth.models import User
from django.core import signing
from django.db import transaction
from django.utils import timezone

from destinations.models import Job, JobKind, JobStatus, Upload
from destinations.people.jobs import import_start

TOKEN_SALT = "dashboard.import-upload"
KEPT_FOR = timedelta(days=1)


def stage_upload(*, name: str, data: bytes) -> str:
    """Keep the file for the next steps; returns the token that names it."""
    discard_stale_uploads()
    upload = Upload.objects.create(name=name[:255], content=data)
    return signing.dumps(upload.pk, salt=TOKEN_SALT)


def staged_upload(token: str) -> Upload | None:
    """The file a token names, or None when the token is forged, expired or the file gone."""
    try:
        pk = signing.loads(token, salt=TOKEN_SALT, max_age=KEPT_FOR)
    except signing.BadSignature:
        return None
    return Upload.objects.filter(pk=pk).first()


def import_staged(upload: Upload, *, mapping: Mapping[str, str], user: User | None) -> Job:
    """Start the import job (raises ImportRefused) and drop the staged copy: the job keeps its
    own."""
    with transaction.atomic():
        job = import_start(name=upload.name, data=bytes(upload.content), mapping=mapping, user=user)
        Upload.objects.filter(pk=upload.pk).delete()
    return job


def discard_stale_uploads() -> int:
    unfinished = Job.objects.filter(
        kind=JobKind.IMPORT, status__in=(JobStatus.QUEUED, JobStatus.RUNNING)
    ).values_list("params__upload_id", flat=True)
    needed = [int(pk) for pk in unfinished if pk is not None]
    stale = Upload.objects.filter(created_at__lt=timezone.now() - KEPT_FOR).exclude(pk__in=needed)
    deleted, _ = stale.delete()
    return deleted
