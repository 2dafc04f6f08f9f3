from __future__ import annotations

from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from dashboard.forms.events import EventFilterForm
from dashboard.selectors.audience_syncs import audience_sync_of, label_audience_syncs
from dashboard.selectors.event_deliveries import delivery_rows, event_deliveries, not_routed
from dashboard.selectors.events import delivery_states, event_detail, events_page
from destinations.web.display_json import pretty_json
from destinations.web.htmx import HtmxHttpRequest
from destinations.web.pagination import parse_cursor


@require_GET
@vary_on_headers("HX-Request")
def event_list(request: HtmxHttpRequest) -> HttpResponse:
    form = EventFilterForm(request.GET or None)
    before = parse_cursor(request.GET.get("before"))
    page = events_page(form.filters(), before=before)
    states = delivery_states(page.rows)
    for event in page.rows:
        event.delivery_states = states.get(event.pk, [])  # type: ignore[attr-defined]
    label_audience_syncs(page.rows)
    query = request.GET.copy()
    query.pop("before", None)
    context = {
        "form": form,
        "page": page,
        "before": before,
        "query": query.urlencode(),
        # Only the newest page refreshes itself: older pages stay put while you read them.
        "live": before is None,
    }
    template = "events/list.html"
    if request.htmx:
        template += "#event-table"
    return render(request, template, context)


@require_GET
def event_show(request: HtmxHttpRequest, event_id: int) -> HttpResponse:
    event = event_detail(event_id)
    if event is None:
        raise Http404("No such event")
    raw = pretty_json(event.payload)
    deliveries = event_deliveries(event)
    context = {
        "event": event,
        "raw": raw,
        "deliveries": deliveries,
        "delivery_rows": delivery_rows(deliveries),
        "not_routed": not_routed(event, deliveries),
        "audience_sync": audience_sync_of(event),
    }
    return render(request, "events/detail.html", context)
