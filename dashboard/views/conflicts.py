"""The Conflicts page (users sharing an email, users without a billing id), its CSV export,
Merge all, and the page of an import or bulk-merge job."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseStopPolling, trigger_client_event

from dashboard.forms.conflicts import ConflictSearchForm
from dashboard.selectors import conflicts
from dashboard.selectors.audit import job_audit_entry
from dashboard.views.navigation import job_page
from dashboard.views.request_info import acting_user
from destinations.models import Job, JobKind, JobStatus
from destinations.people.conflicts import export_csv
from destinations.people.jobs import bulk_merge_start
from destinations.web.freshness import counts_changed
from destinations.web.htmx import HtmxHttpRequest
from destinations.web.pagination import parse_cursor, parse_page_number

# The page's two boxes, by the id of the element an htmx search or page link swaps.
GROUPS_BOX = "duplicate-emails"
MISSING_BOX = "missing-billing"
BOXES = (GROUPS_BOX, MISSING_BOX)
JOB_RESULT = "job-result"


@require_GET
@vary_on_headers("HX-Request", "HX-Target")
def conflict_list(request: HtmxHttpRequest) -> HttpResponse:
    form = ConflictSearchForm(request.GET or None)
    email_search, user_search = form.searches()
    target = request.htmx.target if request.htmx else None
    groups_number = parse_page_number(request.GET.get("groups_page"))
    before = parse_cursor(request.GET.get("before"))
    context: dict[str, object] = {
        "form": form,
        "email_search": email_search,
        "user_search": user_search,
        "before": before,
        "groups_number": groups_number,
    }
    # A search or page link in one box re-renders that box alone.
    groups = None
    if target != MISSING_BOX:
        groups = conflicts.email_groups_page(search=email_search, number=groups_number)
        context["groups"] = groups
    # The headings' counts, on a full page. Without a search the page of groups has counted
    # them already, and the count of users without a billing id is that box's total too.
    counts = None
    if target not in BOXES:
        counted = groups.total if groups is not None and not email_search else None
        counts = conflicts.fresh_conflict_counts(duplicate_emails=counted)
    context["counts"] = counts
    if target != GROUPS_BOX:
        total = counts["without_billing_id"] if counts and not user_search else None
        context["missing"] = conflicts.missing_billing_page(
            search=user_search, before=before, total=total
        )
    template = "conflicts/list.html"
    if target in BOXES:
        return render(request, f"{template}#{target}", context)
    return render(request, template, context)


@require_GET
def conflicts_export(request: HtmxHttpRequest) -> StreamingHttpResponse:
    """Both lists as CSV, streamed: fill in billing ids elsewhere and import the file back."""
    response = StreamingHttpResponse(export_csv(), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="switchboard-conflicts-{stamp}.csv"'
    return response


@require_http_methods(["GET", "POST"])
def merge_all(request: HtmxHttpRequest) -> HttpResponse:
    """GET says how many groups and users a bulk merge takes; POST starts it as a job."""
    if request.method == "POST":
        job = bulk_merge_start(acting_user(request))
        counts_changed()
        messages.success(
            request, f"Merging {job.total} duplicate-email groups into their oldest user."
        )
        return redirect("conflicts-job", job_id=job.pk)
    return render(request, "conflicts/merge_all.html", {"preview": conflicts.bulk_merge_preview()})


@require_GET
@vary_on_headers("HX-Request", "HX-Target")
def conflict_job(request: HtmxHttpRequest, job_id: int) -> HttpResponse:
    """An import or bulk merge: the shared progress bar, polling this page every second until
    the job is done (then 286 stops it and ``job-done`` is announced), and the result, which
    re-renders on ``job-done``."""
    job = get_object_or_404(Job, pk=job_id)
    if job.kind not in (JobKind.IMPORT, JobKind.BULK_MERGE):
        return redirect(job_page(job))  # a link made before every job had its own page
    finished = job.status in (JobStatus.DONE, JobStatus.FAILED)
    context = {
        "job": job,
        "entry": job_audit_entry(job) if finished else None,
        "poll_url": reverse("conflicts-job", args=[job.pk]),
    }
    if not request.htmx:
        return render(request, "conflicts/job.html", context)
    if request.htmx.target == JOB_RESULT:
        return render(request, f"conflicts/job.html#{JOB_RESULT}", context)
    progress = render(request, "jobs/detail.html#job-progress", context)
    if finished:
        return trigger_client_event(HttpResponseStopPolling(progress.content), "job-done")
    return progress
