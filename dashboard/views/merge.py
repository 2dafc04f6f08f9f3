"""The merge page: users side by side, the survivor and each field's value chosen, a preview
of what moves, then the merge."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseClientRedirect

from dashboard.forms.conflicts import MergeForm
from dashboard.selectors import conflicts
from dashboard.views.request_info import acting_user
from destinations.people.merge import MergePlan, MergeRefused, plan_merge, profile_merge
from destinations.web.freshness import counts_changed
from destinations.web.htmx import HtmxHttpRequest

TEMPLATE = "conflicts/merge.html"


@require_GET
def merge_page(request: HtmxHttpRequest) -> HttpResponse:
    """``?email=`` compares everyone holding that email; ``?ids=1,2,3`` those users."""
    ids = conflicts.merge_profile_ids(email=request.GET.get("email"), ids=request.GET.get("ids"))
    columns = conflicts.merge_columns(ids)
    if len(columns) < 2:
        return nothing_to_merge(request)
    profiles = [c.profile for c in columns]
    # Bound to the defaults, so the page opens with the preview of the default merge.
    form = MergeForm(MergeForm.defaults(profiles), profiles=profiles)
    return render(request, TEMPLATE, merge_context(request, columns, form))


@require_POST
@vary_on_headers("HX-Request")
def merge_preview(request: HtmxHttpRequest) -> HttpResponse:
    """What the merge as chosen would do: the page's preview fragment for htmx (sent on every
    change), the whole page for a plain POST."""
    columns = posted_columns(request)
    if len(columns) < 2:
        return nothing_to_merge(request)
    form = MergeForm(request.POST, profiles=[c.profile for c in columns])
    context = merge_context(request, columns, form)
    if request.htmx:
        return render(request, f"{TEMPLATE}#merge-preview", context)
    return render(request, TEMPLATE, context)


@require_POST
def merge_confirm(request: HtmxHttpRequest) -> HttpResponse:
    columns = posted_columns(request)
    if len(columns) < 2:
        return nothing_to_merge(request)
    form = MergeForm(request.POST, profiles=[c.profile for c in columns])
    refused = ""
    if form.is_valid():
        survivor = form.survivor_profile()
        try:
            entry = profile_merge(
                survivor=survivor,
                absorbed=form.absorbed_profiles(),
                choices=form.choices(),
                actor=acting_user(request),
                delete_absorbed_in_refiner=form.cleaned_data["delete_in_refiner"],
            )
        except MergeRefused as exc:
            refused = str(exc)
        else:
            counts_changed()
            messages.success(request, f"{entry.summary}. It can be undone from the audit log.")
            return redirect("user-detail", profile_id=survivor.pk)
    context = merge_context(request, columns, form, refused=refused)
    return render(request, TEMPLATE, context)


def nothing_to_merge(request: HtmxHttpRequest) -> HttpResponse:
    """The users were deleted meanwhile: back to the list (the whole page, even from htmx)."""
    messages.info(request, "Nothing to merge: fewer than two users are left to compare.")
    if request.htmx:
        return HttpResponseClientRedirect(reverse("conflicts"))
    return redirect("conflicts")


def posted_columns(request: HtmxHttpRequest) -> list[conflicts.MergeColumn]:
    # The users the page showed, even if more have since arrived with the same email.
    return conflicts.merge_columns(conflicts.parse_ids(request.POST.get("ids")))


def merge_context(
    request: HtmxHttpRequest,
    columns: list[conflicts.MergeColumn],
    form: MergeForm,
    *,
    refused: str = "",
) -> dict[str, Any]:
    plan: MergePlan | None = None
    if not refused and form.is_valid():
        try:
            plan = plan_merge(
                survivor=form.survivor_profile(),
                absorbed=form.absorbed_profiles(),
                choices=form.choices(),
            )
        except MergeRefused as exc:
            refused = str(exc)
    emails = {c.profile.email for c in columns}
    return {
        "columns": columns,
        "form": form,
        "plan": plan,
        "refused": refused,
        "ids": ",".join(str(c.profile.pk) for c in columns),
        "shared_email": emails.pop() if len(emails) == 1 else None,
        "default_survivor": columns[0].profile.pk,
        "survivor": form.current_survivor(),
        "refiner_destinations": conflicts.refiner_destinations(),
        "delete_in_refiner": bool(form.data.get("delete_in_refiner")),
        "undo_days": settings.MERGE_UNDO_DAYS,
    }
