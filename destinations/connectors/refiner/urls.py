"""Refiner's dashboard pages: its data read through the API (contacts, segments, forms,
responses), the API console, and the receivers Refiner's webhooks post to."""

from __future__ import annotations

from django.urls import path

from destinations.connectors.refiner import receiver_views, views
from destinations.web.roles import ADMIN, VIEWER, UrlRoles

URL_ROLES: UrlRoles = {
    # Refiner's data and webhooks: reading is everyone's. Receivers and their tokens, generated
    # signing secrets and the API console (it acts with the API key) are the admin's.
    "refiner-home": (VIEWER, ADMIN),
    "refiner-contacts": (VIEWER, ADMIN),
    "refiner-contact": (VIEWER, ADMIN),
    "refiner-segments": (VIEWER, ADMIN),
    "refiner-forms": (VIEWER, ADMIN),
    "refiner-responses": (VIEWER, ADMIN),
    "refiner-console": (ADMIN, ADMIN),
    "receiver-list": (VIEWER, ADMIN),
    "receiver-new": (ADMIN, ADMIN),
    "receiver-detail": (VIEWER, ADMIN),
    "receiver-rotate": (ADMIN, ADMIN),
    "receiver-toggle": (ADMIN, ADMIN),
}

urlpatterns = [
    path("refiner/", views.refiner_home, name="refiner-home"),
    path("refiner/contacts/", views.contact_list, name="refiner-contacts"),
    path("refiner/contacts/<str:uuid>/", views.contact_detail, name="refiner-contact"),
    path("refiner/segments/", views.segment_list, name="refiner-segments"),
    path("refiner/forms/", views.form_list, name="refiner-forms"),
    path("refiner/responses/", views.response_list, name="refiner-responses"),
    path("refiner/console/", views.console, name="refiner-console"),
    path("refiner/webhooks/", receiver_views.receiver_list, name="receiver-list"),
    path("refiner/webhooks/new/", receiver_views.receiver_new, name="receiver-new"),
    path(
        "refiner/webhooks/<int:receiver_id>/",
        receiver_views.receiver_detail,
        name="receiver-detail",
    ),
    path(
        "refiner/webhooks/<int:receiver_id>/rotate/",
        receiver_views.receiver_rotate_token,
        name="receiver-rotate",
    ),
    path(
        "refiner/webhooks/<int:receiver_id>/toggle/",
        receiver_views.receiver_toggle,
        name="receiver-toggle",
    ),
]
