"""Kana's dashboard pages: mapping rules (their editor, preview and reprocessing job) and the
unmapped events."""

from __future__ import annotations

from django.urls import path

from destinations.connectors.kana import views
from destinations.web.roles import OPERATOR, VIEWER, UrlRoles

# Mapping rules are the operator's to edit; everyone reads them.
URL_ROLES: UrlRoles = {
    "mapping-rules-index": (VIEWER, OPERATOR),
    "mapping-rules": (VIEWER, OPERATOR),
    "mapping-rule-new": (OPERATOR, OPERATOR),
    "mapping-rule-preview": (OPERATOR, OPERATOR),
    "mapping-rule-job": (VIEWER, OPERATOR),
    "mapping-rule-edit": (OPERATOR, OPERATOR),
    "mapping-rule-toggle": (OPERATOR, OPERATOR),
    "mapping-rule-move": (OPERATOR, OPERATOR),
    "mapping-rule-delete": (OPERATOR, OPERATOR),
    "mapping-unmapped": (VIEWER, OPERATOR),
}

urlpatterns = [
    path("rules/", views.mapping_rules_index, name="mapping-rules-index"),
    path("destinations/<int:destination_id>/rules/", views.mapping_rules, name="mapping-rules"),
    path(
        "destinations/<int:destination_id>/rules/new/",
        views.mapping_rule_new,
        name="mapping-rule-new",
    ),
    path(
        "destinations/<int:destination_id>/rules/preview/",
        views.mapping_rule_preview,
        name="mapping-rule-preview",
    ),
    path(
        "destinations/<int:destination_id>/rules/jobs/<int:job_id>/",
        views.mapping_rule_job,
        name="mapping-rule-job",
    ),
    path(
        "destinations/<int:destination_id>/rules/<int:rule_id>/edit/",
        views.mapping_rule_edit,
        name="mapping-rule-edit",
    ),
    path(
        "destinations/<int:destination_id>/rules/<int:rule_id>/toggle/",
        views.mapping_rule_toggle,
        name="mapping-rule-toggle",
    ),
    path(
        "destinations/<int:destination_id>/rules/<int:rule_id>/move/",
        views.mapping_rule_move,
        name="mapping-rule-move",
    ),
    path(
        "destinations/<int:destination_id>/rules/<int:rule_id>/delete/",
        views.mapping_rule_delete,
        name="mapping-rule-delete",
    ),
    path(
        "destinations/<int:destination_id>/unmapped/",
        views.mapping_unmapped,
        name="mapping-unmapped",
    ),
]
