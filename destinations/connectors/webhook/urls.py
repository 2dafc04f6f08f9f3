"""The outbound webhooks page."""

from __future__ import annotations

from django.urls import path

from destinations.connectors.webhook import views
from destinations.web.roles import ADMIN, VIEWER, UrlRoles

URL_ROLES: UrlRoles = {
    "outbound-webhook-list": (VIEWER, ADMIN),
}

urlpatterns = [
    path("webhooks/outbound/", views.outbound_webhook_list, name="outbound-webhook-list"),
]
