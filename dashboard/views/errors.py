"""Not found: inside the dashboard, a page in its layout that says what was not found; under
the machine endpoints (``/v1/``, ``/hooks/``), one line of plain text."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotFound
from django.shortcuts import render

MACHINE_PREFIXES = ("/v1/", "/hooks/")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    said = exception.args[0] if isinstance(exception, Http404) and exception.args else None
    # A view's own words ("No such job"); the resolver's are a dict of the patterns it tried.
    own_words = said if isinstance(said, str) and said else ""
    if request.path.startswith(MACHINE_PREFIXES):
        message = own_words or f"no endpoint at {request.path}"
        return HttpResponseNotFound(
            f"404 Not Found: {message}\n", content_type="text/plain; charset=utf-8"
        )
    message = own_words or f"There is no page at {request.path}."
    return render(request, "404.html", {"message": message}, status=404)
