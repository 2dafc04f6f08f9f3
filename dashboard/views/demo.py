"""Remove demo data: what goes, counted, then everything demo mode made and nothing else."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from destinations.demo import demo_loaded, demo_summary, remove_demo
from destinations.web.freshness import counts_changed


@require_http_methods(["GET", "POST"])
def demo_remove(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        removed = remove_demo()
        # The banner, the conflict counts and the Overview's slots: counted again at once.
        counts_changed()
        messages.success(
            request,
            f"Demo data removed: {removed['events']} events, {removed['users']} users, "
            f"{removed['accounts']} accounts, {removed['destinations']} destinations.",
        )
        return redirect("home")
    loaded = demo_loaded()
    return render(
        request,
        "demo/remove.html",
        {"loaded": loaded, "summary": demo_summary() if loaded else None},
    )
