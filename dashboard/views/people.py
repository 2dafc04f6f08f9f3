from __future__ import annotations

import json

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from dashboard.forms import SearchForm
from dashboard.selectors import people
from dashboard.selectors.pagination import parse_cursor


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
        "traits": json.dumps(profile.traits, indent=2, sort_keys=True, ensure_ascii=False),
        "anonymous_ids": profile.anonymous_ids.order_by("linked_at"),
        "accounts": people.profile_accounts(profile),
        "events": people.recent_events_for_profile(profile),
    }
    return render(request, "users/detail.html", context)


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
    context = {
        "account": account,
        "traits": json.dumps(account.traits, indent=2, sort_keys=True, ensure_ascii=False),
        "members": people.account_members(account),
        "events": people.recent_events_for_account(account),
    }
    return render(request, "accounts/detail.html", context)
