"""A source's live debugger: the newest events as they arrive, after Segment's."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from dashboard.selectors.debugger import DEBUGGER_ROWS, debugger_page
from destinations.models import Source
from destinations.web.htmx import HtmxHttpRequest
from destinations.web.pagination import parse_cursor

TEMPLATE = "sources/debugger.html"
# The two fragments htmx asks for, by the element they replace (the HX-Target header).
LIVE_TARGET = "debugger-live"  # Pause and Resume: the controls alone, the rows stay as shown
ROWS_TARGET = "debugger-rows"  # the poll: rows newer than the newest shown
SEARCH_MAX_CHARS = 255  # the longest value of any column searched


@dataclass(frozen=True)
class LiveState:
    """Where the page is: its search, whether it is paused, and the newest ids it shows. Every
    link and poll URL carries it, so a plain link works as well as an htmx request."""

    page_url: str
    search: str
    paused: bool
    after_event: int
    after_refusal: int

    def url(self, *, paused: bool, cursor: bool) -> str:
        params: dict[str, str | int] = {}
        if self.search:
            params["q"] = self.search
        if paused:
            params["paused"] = 1
        if cursor:
            params.update(after=self.after_event, after_refused=self.after_refusal)
        return f"{self.page_url}?{urlencode(params)}" if params else self.page_url

    @property
    def live_url(self) -> str:
        return self.url(paused=False, cursor=False)

    @property
    def paused_url(self) -> str:
        return self.url(paused=True, cursor=False)

    @property
    def poll_url(self) -> str:
        """Also what Resume asks for: the live controls, polling from where the page stopped."""
        return self.url(paused=False, cursor=True)

    @property
    def pause_url(self) -> str:
        return self.url(paused=True, cursor=True)


@require_GET
@vary_on_headers("HX-Request", "HX-Target")
def source_debugger(request: HtmxHttpRequest, source_id: int) -> HttpResponse:
    source = get_object_or_404(Source, pk=source_id)
    search = request.GET.get("q", "").strip()[:SEARCH_MAX_CHARS]
    paused = request.GET.get("paused") == "1"
    after_event = parse_cursor(request.GET.get("after")) or 0
    after_refusal = parse_cursor(request.GET.get("after_refused")) or 0
    page_url = reverse("source-debugger", args=[source.pk])
    target = request.htmx.target if request.htmx else None

    if target == LIVE_TARGET:
        live = LiveState(page_url, search, paused, after_event, after_refusal)
        return render(request, f"{TEMPLATE}#debugger-live", {"source": source, "live": live})
    if target == ROWS_TARGET:
        if paused:
            return HttpResponse(status=204)
        page = debugger_page(
            source, search=search, after_event=after_event, after_refusal=after_refusal
        )
        if not page.rows:
            # Nothing new: htmx swaps nothing on 204, and the poll carries on.
            return HttpResponse(status=204)
        live = LiveState(page_url, search, paused, page.after_event, page.after_refusal)
        context = {"source": source, "page": page, "live": live, "oob": True}
        return render(request, f"{TEMPLATE}#debugger-new", context)
    page = debugger_page(source, search=search)
    context = {
        "source": source,
        "page": page,
        "live": LiveState(page_url, search, paused, page.after_event, page.after_refusal),
        "cap": DEBUGGER_ROWS,
    }
    return render(request, TEMPLATE, context)
