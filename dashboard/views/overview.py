"""The Overview: the landing page."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from dashboard.selectors.conflicts import cached_conflict_counts
from dashboard.selectors.delivery_stats import WINDOWS, delivery_window
from dashboard.selectors.overview import overview, overview_numbers
from destinations.web.htmx import HtmxHttpRequest

TEMPLATE = "overview.html"
NUMBERS_TARGET = "overview-numbers"  # the tiles' element, which polls for itself


@require_GET
@vary_on_headers("HX-Request", "HX-Target")
def overview_page(request: HtmxHttpRequest) -> HttpResponse:
    window = delivery_window(request.GET.get("window"))
    if request.htmx and request.htmx.target == NUMBERS_TARGET:
        # The tiles refresh themselves every few seconds: count only what they show.
        numbers = overview_numbers(window=window)
        return render(
            request, TEMPLATE + "#overview-numbers", {"window": window, "numbers": numbers}
        )
    report = overview(window=window)
    context = {
        "window": window,
        "windows": WINDOWS.values(),
        "report": report,
        "numbers": report.numbers,
        "chart_data": report.chart_data(),
        # The same counts as the navigation's badge, counted at most every few seconds.
        "conflicts": cached_conflict_counts(),
    }
    return render(request, TEMPLATE, context)
