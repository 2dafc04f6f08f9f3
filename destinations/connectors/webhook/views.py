"""Outbound webhooks: the webhook destinations, listed beside the Refiner receivers under the
one Webhooks entry. Adding, editing, Send test and the delivery log are the destination pages'."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from destinations.connectors.webhook.selectors import outbound_webhooks


@require_GET
def outbound_webhook_list(request: HttpRequest) -> HttpResponse:
    return render(request, "webhooks/outbound.html", {"webhooks": outbound_webhooks()})
