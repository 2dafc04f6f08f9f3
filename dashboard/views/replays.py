"""Replay history: the form with its preview, starting a replay, and pausing, resuming and
cancelling one. Every refusal (a bad range, a replay already running, a destination this
version cannot deliver to) is a form error or a message, never an error page."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from dashboard.forms.replay import ReplayForm, range_from_query
from dashboard.selectors.replays import preview_examples, type_rows
from dashboard.views.navigation import job_page
from dashboard.views.request_info import acting_user
from destinations.kinds import CONNECTORS
from destinations.models import Destination, Replay
from destinations.replay.definition import InvalidDefinition
from destinations.replay.services import (
    ReplayPreview,
    ReplayRefused,
    active_replay,
    cancel_replay,
    pause_replay,
    preview,
    resume_replay,
    start,
)
from destinations.web.htmx import HtmxHttpRequest

TEMPLATE = "destinations/replay.html"


@require_http_methods(["GET", "POST"])
def destination_replay(request: HtmxHttpRequest, destination_id: int) -> HttpResponse:
    """The form (a link may choose its range: ``?range=30d``); posted, it starts the replay
    and goes on to the destination's page, where its progress shows."""
    destination = get_object_or_404(Destination, pk=destination_id)
    if request.method != "POST":
        initial = {"range": range_from_query(request.GET.get("range"))}
        return render_form(
            request, destination, ReplayForm(destination=destination, initial=initial)
        )
    form = ReplayForm(request.POST, destination=destination)
    if form.is_valid() and form.definition is not None:
        try:
            replay = start(destination, form.definition, actor=acting_user(request))
        except (ReplayRefused, InvalidDefinition) as exc:
            form.add_error(None, str(exc))
        else:
            total = replay.job.total
            messages.success(
                request,
                f"Replay started: {total} stored event{'' if total == 1 else 's'} to look at "
                f"for {destination.name}.",
            )
            return redirect(job_page(replay.job) + f"#replay-{replay.job_id}")
    return render_form(request, destination, form)


@require_POST
@vary_on_headers("HX-Request")
def destination_replay_preview(request: HtmxHttpRequest, destination_id: int) -> HttpResponse:
    """What the replay as typed would send: counts per call type, why the rest would not be
    sent, a few examples. Nothing is started. htmx swaps in the result; without JavaScript the
    form comes back with it."""
    destination = get_object_or_404(Destination, pk=destination_id)
    form = ReplayForm(request.POST, destination=destination)
    shown = None
    if form.is_valid() and form.definition is not None:
        shown = preview(destination, form.definition)
    if request.htmx:
        context = {
            "destination": destination,
            "form": form,
            "deliverable": destination.kind in CONNECTORS,
            **preview_context(shown),
        }
        return render(request, TEMPLATE + "#replay-preview", context)
    return render_form(request, destination, form, shown)


def render_form(
    request: HtmxHttpRequest,
    destination: Destination,
    form: ReplayForm,
    shown: ReplayPreview | None = None,
) -> HttpResponse:
    context = {
        "destination": destination,
        "form": form,
        "active": active_replay(destination),
        "deliverable": destination.kind in CONNECTORS,
        **preview_context(shown),
    }
    return render(request, TEMPLATE, context)


def preview_context(shown: ReplayPreview | None) -> dict[str, Any]:
    if shown is None:
        return {"preview": None}
    return {
        "preview": shown,
        "type_rows": type_rows(shown),
        "examples": preview_examples(shown),
    }


# --- pause, resume, cancel ------------------------------------------------------------------


def replay_or_404(replay_id: int) -> Replay:
    replay = Replay.objects.select_related("job", "destination").filter(pk=replay_id).first()
    if replay is None:
        raise Http404("No such replay")
    return replay


def back_to(replay: Replay) -> HttpResponse:
    return redirect(job_page(replay.job) + f"#replay-{replay.job_id}")


@require_POST
def replay_pause(request: HtmxHttpRequest, replay_id: int) -> HttpResponse:
    replay = replay_or_404(replay_id)
    if pause_replay(replay, actor=acting_user(request)):
        messages.success(request, "Replay paused: Resume carries on from where it stopped.")
    else:
        messages.warning(request, "Only a queued or running replay can be paused.")
    return back_to(replay)


@require_POST
def replay_resume(request: HtmxHttpRequest, replay_id: int) -> HttpResponse:
    replay = replay_or_404(replay_id)
    try:
        resumed = resume_replay(replay, actor=acting_user(request))
    except ReplayRefused as exc:
        messages.error(request, str(exc))
    else:
        if resumed:
            messages.success(request, "Replay resumed.")
        else:
            messages.warning(request, "Only a paused replay can be resumed.")
    return back_to(replay)


@require_POST
def replay_cancel(request: HtmxHttpRequest, replay_id: int) -> HttpResponse:
    replay = replay_or_404(replay_id)
    if cancel_replay(replay, actor=acting_user(request)):
        messages.success(request, "Replay cancelled: what it had not sent will not be sent.")
    else:
        messages.warning(request, "This replay has already ended.")
    return back_to(replay)
