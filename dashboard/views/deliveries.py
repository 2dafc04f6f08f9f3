"""A destination's Event delivery page (with its replays), retrying deliveries, and a job's
progress."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.models import User
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseStopPolling, trigger_client_event

from dashboard.selectors.delivery_stats import (
    TRAFFIC,
    WINDOWS,
    delivery_report,
    delivery_traffic,
    delivery_window,
)
from dashboard.selectors.destinations import failed_count, job_with_destination
from dashboard.selectors.replays import destination_replays, offers_history
from dashboard.views.navigation import job_page
from dashboard.views.request_info import acting_user
from destinations.delivery import services
from destinations.kinds import CONNECTORS
from destinations.models import Delivery, Destination, JobKind, JobStatus
from destinations.web.htmx import HtmxHttpRequest
from destinations.web.navigation import redirect_back
from destinations.web.pagination import parse_cursor

JOB_FINISHED = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


@require_GET
@vary_on_headers("HX-Request")
def destination_delivery(request: HtmxHttpRequest, destination_id: int) -> HttpResponse:
    destination = get_object_or_404(Destination, pk=destination_id)
    window = delivery_window(request.GET.get("window"))
    traffic = delivery_traffic(request.GET.get("traffic"))
    connector = CONNECTORS.get(destination.kind)
    context = {
        "destination": destination,
        "report": delivery_report(destination, window=window, traffic=traffic),
        "windows": WINDOWS.values(),
        "traffics": TRAFFIC.values(),
        "failed_total": failed_count(destination),
        "job": None,
        "test_label": connector.test_label if connector else "",
    }
    template = "destinations/delivery.html"
    if request.htmx:
        return render(request, template + "#delivery-stats", context)
    job_id = parse_cursor(request.GET.get("job"))
    found = job_with_destination(job_id) if job_id else None
    replay_job_id = None
    if found and found[1] == destination:
        # A replay's job shows with the others in Replays; any other beside Retry all failed.
        if found[0].kind == JobKind.REPLAY:
            replay_job_id = found[0].pk
        else:
            context["job"] = found[0]
    replays = destination_replays(destination, job_id=replay_job_id)
    context["replay_job_id"] = replay_job_id
    context["replays"] = replays
    context["offer_history"] = offers_history(destination, replays)
    return render(request, template, context)


@require_POST
def delivery_retry(request: HtmxHttpRequest, delivery_id: int) -> HttpResponse:
    delivery = get_object_or_404(Delivery.objects.select_related("destination"), pk=delivery_id)
    if services.delivery_retry(delivery, actor=acting_user(request)):
        messages.success(request, f"Delivery to {delivery.destination.name} queued again.")
    else:
        messages.warning(
            request,
            "Only a failed delivery can be retried, and only where sending again can change "
            "the outcome: a skipped delivery or an event with malformed content would end "
            "the same way.",
        )
    return redirect_back(request, reverse("event-detail", args=[delivery.event_id]))


@require_POST
def destination_retry_failed(request: HtmxHttpRequest, destination_id: int) -> HttpResponse:
    destination = get_object_or_404(Destination, pk=destination_id)
    user = request.user if isinstance(request.user, User) else None
    job = services.retry_failed_start(destination, user)
    if request.htmx:
        return render(request, "jobs/detail.html#job-progress", {"job": job})
    messages.success(request, f"Retrying {job.total} failed deliveries to {destination.name}.")
    url = reverse("destination-delivery", args=[destination.pk])
    return redirect(f"{url}?job={job.pk}")


@require_GET
@vary_on_headers("HX-Request")
def job_progress(request: HtmxHttpRequest, job_id: int) -> HttpResponse:
    """The progress bar polls this every second; a finished job answers 286 so htmx stops, and
    announces ``job-done`` so the page's numbers refresh."""
    found = job_with_destination(job_id)
    if found is None:
        raise Http404("No such job")
    job, destination = found
    context = {"job": job, "destination": destination}
    if not request.htmx:
        own_page = job_page(job)
        if own_page != request.path:
            return redirect(own_page)  # an import's or a rule's job has a page of its own
        return render(request, "jobs/detail.html", context)
    response = render(request, "jobs/detail.html#job-progress", context)
    if job.status in JOB_FINISHED:
        stop = HttpResponseStopPolling(response.content)
        return trigger_client_event(stop, "job-done")
    return response
