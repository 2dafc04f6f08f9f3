"""The request type of every page: django-htmx's middleware sets ``request.htmx`` on each
request (falsy unless htmx sent it; ``.target`` names the element it will swap)."""

from __future__ import annotations

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails
