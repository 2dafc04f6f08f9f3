"""Where links and redirects go: back to the page an action came from, and a job's own page."""

from __future__ import annotations

from django.urls import reverse

from destinations.connectors.kana.selectors import reprocess_destination_id
from destinations.models import Audience, Job, JobKind, Replay


def job_page(job: Job) -> str:
    """The page that shows ``job``: an audience's computation on the audience's page, a replay
    on its destination's page, an import or bulk merge under Conflicts, a rule's reprocessing
    under its destination's rules (while the rule exists), the rest (and a job whose audience
    or rule was deleted) on the plain job page."""
    if job.kind == JobKind.AUDIENCE:
        audience_id = job.params.get("audience_id")
        if isinstance(audience_id, int) and Audience.objects.filter(pk=audience_id).exists():
            return reverse("audience-detail", args=[audience_id]) + f"?job={job.pk}"
    if job.kind == JobKind.REPLAY:
        destination_id = (
            Replay.objects.filter(job=job).values_list("destination_id", flat=True).first()
        )
        if destination_id is not None:
            return reverse("destination-delivery", args=[destination_id]) + f"?job={job.pk}"
    if job.kind in (JobKind.IMPORT, JobKind.BULK_MERGE):
        return reverse("conflicts-job", args=[job.pk])
    if job.kind == JobKind.REPROCESS:
        destination_id = reprocess_destination_id(job)
        if destination_id is not None:
            return reverse("mapping-rule-job", args=[destination_id, job.pk])
    return reverse("job-detail", args=[job.pk])
