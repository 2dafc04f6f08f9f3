from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from dashboard.forms.conflicts import DeleteUserForm
from dashboard.forms.people import SearchForm
from dashboard.selectors import conflicts, people
from dashboard.selectors.audience_syncs import label_audience_syncs
from dashboard.selectors.audiences import (
    account_audiences,
    profile_audiences,
    profile_computed_traits,
)
from dashboard.views.request_info import acting_user
from destinations.people.delete import profile_delete
from destinations.web.display_json import pretty_json
from destinations.web.freshness import counts_changed
from destinations.web.pagination import parse_cursor


@require_GET
def user_list(request: HttpRequest) -> HttpResponse:
    form = SearchForm(request.GET or None)
    search = form.cleaned_data["q"] if form.is_valid() else ""
    page = people.profiles_page(search=search, before=parse_cursor(request.GET.get("before")))
    return render(request, "users/list.html", {"form": form, "page": page, "search": search})


@require_GET
def user_show(request: HttpRequest, profile_id: int) -> HttpResponse:
    profile = people.profile_detail(profile_id)
    if profile is None:
        raise Http404("No such user")
    context = {
        "profile": profile,
        "traits": pretty_json(profile.traits),
        "anonymous_ids": profile.anonymous_ids.order_by("linked_at"),
        "accounts": people.profile_accounts(profile),
        "events": label_audience_syncs(people.recent_events_for_profile(profile)),
        "conflicts": conflicts.profile_conflicts(profile),
        "audiences": profile_audiences(profile),
        "computed_traits": profile_computed_traits(profile),
    }
    return render(request, "users/detail.html", context)


@require_http_methods(["GET", "POST"])
def user_delete(request: HttpRequest, profile_id: int) -> HttpResponse:
    profile = people.profile_detail(profile_id)
    if profile is None:
        raise Http404("No such user")
    if profile.merged_into is not None:
        # Deleting a merged-away user alone would leave its merge unable to undo cleanly.
        messages.warning(
            request,
            f"{profile} was merged into {profile.merged_into}: delete that user instead "
            "(the users merged into it go with it), or undo the merge first.",
        )
        return redirect("user-detail", profile_id=profile.pk)
    # Bound on POST even with every box unticked: an empty POST still means "delete".
    form = DeleteUserForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        entry = profile_delete(profile, form.options(), actor=acting_user(request))
        counts_changed()
        messages.success(request, f"{entry.summary}.")
        return redirect("conflicts")
    context = {
        "profile": profile,
        "form": form,
        "summary": conflicts.delete_summary(profile),
        "refiner_destinations": conflicts.refiner_destinations(),
    }
    return render(request, "users/delete.html", context)


@require_GET
def account_list(request: HttpRequest) -> HttpResponse:
    form = SearchForm(request.GET or None)
    search = form.cleaned_data["q"] if form.is_valid() else ""
    page = people.accounts_page(search=search, before=parse_cursor(request.GET.get("before")))
    shown = people.members_shown(page.rows)
    for account in page.rows:
        account.shown_members = shown.get(account.pk, [])  # type: ignore[attr-defined]
    context = {"form": form, "page": page, "search": search}
    return render(request, "accounts/list.html", context)


@require_GET
def account_show(request: HttpRequest, account_id: int) -> HttpResponse:
    account = people.account_detail(account_id)
    if account is None:
        raise Http404("No such account")
    before = parse_cursor(request.GET.get("before"))
    events = people.account_events_page(account, before=before)
    label_audience_syncs(events.rows)
    context = {
        "account": account,
        "traits": pretty_json(account.traits),
        "members": people.account_members(account),
        "events": events,
        "older_page": before is not None,
        "audiences": account_audiences(account),
    }
    return render(request, "accounts/detail.html", context)
