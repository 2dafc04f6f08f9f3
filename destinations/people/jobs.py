"""Import and bulk merge as jobs: started by the dashboard, run by a worker, polled for progress."""

from __future__ import annotations

from collections.abc import Mapping

from django.contrib.auth.models import User
from django.utils import timezone

from destinations import dispatch
from destinations.models import AuditAction, AuditEntry, Job, JobKind, Upload
from destinations.people import imports
from destinations.people.conflicts import duplicate_email_groups, live_profiles
from destinations.people.merge import MergeRefused, default_survivor, profile_merge


def import_start(*, name: str, data: bytes, mapping: Mapping[str, str], user: User | None) -> Job:
    """Check the file can be read with this mapping (raises ImportRefused), keep it, start."""
    csv_file = imports.read_file(data)
    imports.check_mapping(csv_file.columns, mapping)
    lines = len(csv_file.lines) - csv_file.body
    upload = Upload.objects.create(name=name[:255], content=data)
    job = Job.objects.create(
        kind=JobKind.IMPORT,
        params={"upload_id": upload.pk, "mapping": dict(mapping), "name": name},
        total=lines,
        created_by=user,
    )
    dispatch.run_job_on_commit(job.pk)
    return job


def run_import(job: Job) -> None:
    upload = Upload.objects.get(pk=job.params["upload_id"])

    def progress(outcome: imports.Outcome) -> None:
        done = outcome.created + outcome.updated + outcome.unchanged + len(outcome.failed)
        Job.objects.filter(pk=job.pk).update(
            done=done,
            total=max(job.total, done),
            counters=outcome.as_dict(),
            heartbeat_at=timezone.now(),
        )

    outcome = imports.apply_all(
        bytes(upload.content), job.params["mapping"], imports.Outcome(), progress=progress
    )
    counts = outcome.as_dict()
    AuditEntry.objects.create(
        actor=job.created_by,
        action=AuditAction.IMPORT,
        summary=(
            f"Imported {job.params['name']}: {counts['created']} new, {counts['updated']} "
            f"updated, {counts['unchanged']} unchanged, {counts['failed']} refused"
        ),
        data={"job": job.pk, **counts},
    )
    Upload.objects.filter(pk=upload.pk).delete()


def bulk_merge_start(user: User | None) -> Job:
    job = Job.objects.create(
        kind=JobKind.BULK_MERGE, total=duplicate_email_groups().count(), created_by=user
    )
    dispatch.run_job_on_commit(job.pk)
    return job


def run_bulk_merge(job: Job) -> None:
    """Each duplicate-email group into its oldest profile, one transaction per group, so a
    restart continues with the groups that remain."""
    merged = refused = 0
    errors: list[str] = []
    last_email = ""
    while True:
        emails: list[str | None] = list(
            duplicate_email_groups()
            .filter(email__gt=last_email)
            .order_by("email")
            .values_list("email", flat=True)[:200]
        )
        if not emails:
            break
        last_email = emails[-1] or ""
        for email in emails:
            profiles = list(live_profiles().filter(email=email))
            survivor = default_survivor(profiles)
            absorbed = [p for p in profiles if p.pk != survivor.pk]
            try:
                profile_merge(survivor=survivor, absorbed=absorbed, actor=job.created_by)
                merged += 1
            except MergeRefused as exc:
                refused += 1
                errors.append(f"{email}: {exc}")
            Job.objects.filter(pk=job.pk).update(
                done=merged + refused,
                counters={"merged": merged, "refused": refused, "errors": errors[-50:]},
                heartbeat_at=timezone.now(),
            )
    AuditEntry.objects.create(
        actor=job.created_by,
        action=AuditAction.BULK_MERGE,
        summary=f"Merged {merged} duplicate-email groups into their oldest user"
        + (f"; {refused} could not be merged" if refused else ""),
        data={"job": job.pk, "merged": merged, "refused": refused, "errors": errors[:200]},
    )
