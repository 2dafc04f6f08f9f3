from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from dashboard.forms.sources import SourceForm
from dashboard.selectors.sources import (
    source_failure_count,
    source_failures,
    source_last_event,
    sources_with_health,
)
from dashboard.views.request_info import acting_user
from destinations.models import Source
from destinations.sources import source_create, source_rotate_write_key, source_update


def source_list(request: HttpRequest) -> HttpResponse:
    return render(request, "sources/list.html", {"sources": sources_with_health()})


def source_new(request: HttpRequest) -> HttpResponse:
    form = SourceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        source = source_create(
            name=form.cleaned_data["name"],
            rate_limit_per_second=form.cleaned_data["rate_limit_per_second"],
            actor=acting_user(request),
        )
        messages.success(request, f"Source {source.name!r} created. Point your SDK at it below.")
        return redirect("source-detail", source_id=source.pk)
    return render(request, "sources/form.html", {"form": form, "source": None})


def source_edit(request: HttpRequest, source_id: int) -> HttpResponse:
    source = get_object_or_404(Source, pk=source_id)
    initial = {
        "name": source.name,
        "enabled": source.enabled,
        "rate_limit_per_second": source.rate_limit_per_second,
    }
    form = SourceForm(request.POST or None, initial=initial, instance=source)
    if request.method == "POST" and form.is_valid():
        source_update(source=source, actor=acting_user(request), **form.cleaned_data)
        messages.success(request, f"Source {source.name!r} saved.")
        return redirect("source-detail", source_id=source.pk)
    return render(request, "sources/form.html", {"form": form, "source": source})


@require_POST
def source_rotate(request: HttpRequest, source_id: int) -> HttpResponse:
    source = get_object_or_404(Source, pk=source_id)
    source_rotate_write_key(source=source, actor=acting_user(request))
    messages.warning(request, "New write key issued: SDKs using the old key now get 401.")
    return redirect("source-detail", source_id=source.pk)


def source_detail(request: HttpRequest, source_id: int) -> HttpResponse:
    source = get_object_or_404(Source, pk=source_id)
    server_url = request.build_absolute_uri("/").rstrip("/")
    context = {
        "source": source,
        "server_url": server_url,
        "api_host": server_url.split("://", 1)[1] + "/v1",
        "protocol": server_url.split("://", 1)[0],
        "last_event": source_last_event(source),
        "failures": source_failures(source),
        "failure_count": source_failure_count(source),
    }
    return render(request, "sources/detail.html", context)
