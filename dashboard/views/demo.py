"""Remove demo data: one click, everything demo mode made, nothing else."""

from __future__ import annotations

from django.contrib import messages
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from destinations.demo import remove_demo


@require_POST
def demo_remove(request: HttpRequest) -> HttpResponse:
    removed = remove_demo()
    cache.delete("demo-loaded")
    messages.success(
        request,
        f"Demo data removed: {removed['events']} events, {removed['users']} users, "
        f"{removed['accounts']} accounts, {removed['destinations']} destinations.",
    )
    return redirect("home")
