"""Template helpers for replays: a replay job's progress, for the job partial."""

from __future__ import annotations

from django import template

from dashboard.selectors.replays import ReplayProgress
from dashboard.selectors.replays import replay_progress as progress_of
from destinations.models import Job, JobKind

register = template.Library()


@register.filter
def replay_progress(job: Job) -> ReplayProgress | None:
    """The progress of a replay's job; None for any other job."""
    return progress_of(job) if job.kind == JobKind.REPLAY else None
