"""Refiner webhook receivers: the list, making one, a receiver's page with its log of calls,
rotating its token, and turning it off and on.

A receiver's Secret Auth-Token appears in the response to the POST that made (or rotated) it
and nowhere else: only its hash is stored, and it is not put in the session or a message to
survive a redirect. That response is marked not to be cached, so Back cannot bring it up again.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.models import User
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from destinations.connectors.refiner.forms import ReceiverForm
from destinations.connectors.refiner.receiver_selectors import (
    outcome_counts,
    receiver_by_id,
    receiver_calls,
    receivers_with_activity,
)
from destinations.connectors.refiner.receivers import (
    receiver_create,
    receiver_rotate,
    receiver_set_enabled,
)
from destinations.models import CallOutcome, RefinerReceiver
from destinations.web.htmx import HtmxHttpRequest
from destinations.web.navigation import redirect_back
from destinations.web.pagination import parse_cursor


def acting_user(request: HtmxHttpRequest) -> User | None:
    return request.user if isinstance(request.user, User) else None


def receiver_or_404(receiver_id: int) -> RefinerReceiver:
    receiver = receiver_by_id(receiver_id)
    if receiver is None:
        raise Http404("No such webhook receiver")
    return receiver


@require_GET
def receiver_list(request: HtmxHttpRequest) -> HttpResponse:
    return render(request, "receivers/list.html", {"receivers": receivers_with_activity()})


@require_http_methods(["GET", "POST"])
def receiver_new(request: HtmxHttpRequest) -> HttpResponse:
    form = ReceiverForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            receiver, token = receiver_create(
                name=form.cleaned_data["name"],
                trigger=form.cleaned_data["trigger"],
                actor=acting_user(request),
            )
        except ValueError as exc:
            form.add_error("name", f"{str(exc)[:1].upper()}{str(exc)[1:]}.")
        else:
            return render_token(request, receiver, token, rotated=False)
    return render(request, "receivers/new.html", {"form": form})


def render_token(
    request: HtmxHttpRequest, receiver: RefinerReceiver, token: str, *, rotated: bool
) -> HttpResponse:
    context = {"receiver": receiver, "token": token, "rotated": rotated}
    response = render(request, "receivers/token.html", context)
    add_never_cache_headers(response)
    return response


@require_GET
@vary_on_headers("HX-Request")
def receiver_detail(request: HtmxHttpRequest, receiver_id: int) -> HttpResponse:
    receiver = receiver_or_404(receiver_id)
    outcome = request.GET.get("outcome", "")
    outcome = outcome if outcome in CallOutcome.values else ""
    before = parse_cursor(request.GET.get("before"))
    context = {
        "receiver": receiver,
        "calls": receiver_calls(receiver, outcome=outcome, before=before),
        "outcome": outcome,
        "outcomes": CallOutcome.values,
        "before": before,
    }
    if request.htmx:
        return render(request, "receivers/detail.html#call-log", context)
    context["counts"] = outcome_counts(receiver)
    return render(request, "receivers/detail.html", context)


@require_POST
def receiver_rotate_token(request: HtmxHttpRequest, receiver_id: int) -> HttpResponse:
    receiver = receiver_or_404(receiver_id)
    token = receiver_rotate(receiver, actor=acting_user(request))
    return render_token(request, receiver, token, rotated=True)


@require_POST
def receiver_toggle(request: HtmxHttpRequest, receiver_id: int) -> HttpResponse:
    receiver = receiver_or_404(receiver_id)
    receiver_set_enabled(receiver, enabled=not receiver.enabled, actor=acting_user(request))
    if receiver.enabled:
        messages.success(request, f"{receiver.name} enabled: Refiner's calls are accepted again.")
    else:
        messages.warning(
            request,
            f"{receiver.name} disabled: Refiner's calls to it now get 404 and are not stored.",
        )
    return redirect_back(request, reverse("receiver-detail", args=[receiver.pk]))
