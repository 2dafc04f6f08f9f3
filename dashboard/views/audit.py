"""The audit log: merges, undos, deletes, imports and bulk merges, and undoing a merge."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from dashboard.forms.audit import AuditFilterForm
from dashboard.selectors import audit
from dashboard.views.navigation import job_page
from dashboard.views.request_info import acting_user
from destinations.models import AuditAction, AuditEntry
from destinations.people.merge import MergeRefused, merge_undo
from destinations.web.freshness import counts_changed
from destinations.web.htmx import HtmxHttpRequest
from destinations.web.navigation import redirect_back
from destinations.web.pagination import parse_cursor


@require_GET
@vary_on_headers("HX-Request")
def audit_list(request: HtmxHttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET or None)
    action = form.action_value()
    page = audit.audit_page(action=action, before=parse_cursor(request.GET.get("before")))
    problems = audit.undo_problems(page.rows)
    context = {
        "form": form,
        "page": page,
        "action": action,
        "rows": [(entry, problems.get(entry.pk)) for entry in page.rows],
    }
    template = "audit/list.html"
    if request.htmx:
        template += "#audit-table"
    return render(request, template, context)


@require_GET
def audit_detail(request: HtmxHttpRequest, entry_id: int) -> HttpResponse:
    entry = audit.audit_entry(entry_id)
    if entry is None:
        raise Http404("No such audit entry")
    job = audit.entry_job(entry)
    context: dict[str, Any] = {
        "entry": entry,
        "undo_problem": audit.undo_problems([entry]).get(entry.pk),
        "job": job,
        "job_url": job_page(job) if job else "",
    }
    if entry.action == AuditAction.MERGE:
        context["merge"] = audit.merge_detail(entry)
    if entry.action == AuditAction.MERGE_UNDONE:
        context["undone_merge"] = audit.audit_entry(int(entry.data.get("merge", 0)))
    return render(request, "audit/detail.html", context)


@require_POST
def audit_undo(request: HtmxHttpRequest, entry_id: int) -> HttpResponse:
    entry = get_object_or_404(AuditEntry, pk=entry_id)
    try:
        undo = merge_undo(entry, actor=acting_user(request))
    except MergeRefused as exc:
        messages.error(request, f"This merge cannot be undone: {exc}.")
    else:
        counts_changed()
        messages.success(request, undo.summary)
    return redirect_back(request, reverse("audit-detail", args=[entry.pk]))
