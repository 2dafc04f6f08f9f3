"""The operator UI's pages (each kind's own pages are in its package, included beside these)."""

from __future__ import annotations

from django.urls import path

from dashboard.views import (
    audiences,
    audit,
    computed_traits,
    conflicts,
    debugger,
    deliveries,
    demo,
    destinations,
    events,
    imports,
    members,
    merge,
    overview,
    people,
    sources,
)
from dashboard.views import filters as event_filters

urlpatterns = [
    path("", overview.overview_page, name="home"),
    path("sources/", sources.source_list, name="source-list"),
    path("sources/new/", sources.source_new, name="source-new"),
    path("sources/<int:source_id>/", sources.source_detail, name="source-detail"),
    path("sources/<int:source_id>/edit/", sources.source_edit, name="source-edit"),
    path("sources/<int:source_id>/rotate-key/", sources.source_rotate, name="source-rotate"),
    path("sources/<int:source_id>/debugger/", debugger.source_debugger, name="source-debugger"),
    path("events/", events.event_list, name="event-list"),
    path("events/<int:event_id>/", events.event_show, name="event-detail"),
    path("users/", people.user_list, name="user-list"),
    path("users/<int:profile_id>/", people.user_show, name="user-detail"),
    path("accounts/", people.account_list, name="account-list"),
    path("accounts/<int:account_id>/", people.account_show, name="account-detail"),
    path("audiences/", audiences.audience_list, name="audience-list"),
    path("computed-traits/", computed_traits.trait_list, name="computed-trait-list"),
    path("computed-traits/new/", computed_traits.trait_new, name="computed-trait-new"),
    path(
        "computed-traits/<int:trait_id>/edit/",
        computed_traits.trait_edit,
        name="computed-trait-edit",
    ),
    path(
        "computed-traits/<int:trait_id>/delete/",
        computed_traits.trait_remove,
        name="computed-trait-delete",
    ),
    path("audiences/new/", audiences.audience_new, name="audience-new"),
    path("audiences/key/", audiences.audience_key, name="audience-key"),
    path("audiences/preview/", audiences.audience_preview, name="audience-preview"),
    path("audiences/<int:audience_id>/", audiences.audience_show, name="audience-detail"),
    path("audiences/<int:audience_id>/edit/", audiences.audience_edit, name="audience-edit"),
    path("audiences/<int:audience_id>/delete/", audiences.audience_remove, name="audience-delete"),
    path("destinations/", destinations.destination_list, name="destination-list"),
    path("destinations/new/", destinations.destination_choose_kind, name="destination-new"),
    path(
        "destinations/new/<slug:kind>/", destinations.destination_new, name="destination-new-kind"
    ),
    path(
        "destinations/new/<slug:kind>/test/",
        destinations.destination_test,
        name="destination-test-new",
    ),
    path(
        "destinations/<int:destination_id>/",
        deliveries.destination_delivery,
        name="destination-delivery",
    ),
    path(
        "destinations/<int:destination_id>/edit/",
        destinations.destination_edit,
        name="destination-edit",
    ),
    path(
        "destinations/<int:destination_id>/test/",
        destinations.destination_test,
        name="destination-test",
    ),
    path(
        "destinations/<int:destination_id>/test-saved/",
        destinations.destination_test_stored,
        name="destination-test-saved",
    ),
    path(
        "destinations/<int:destination_id>/toggle/",
        destinations.destination_toggle,
        name="destination-toggle",
    ),
    path(
        "destinations/<int:destination_id>/resume/",
        destinations.destination_resume,
        name="destination-resume",
    ),
    path(
        "destinations/<int:destination_id>/retry-failed/",
        deliveries.destination_retry_failed,
        name="destination-retry-failed",
    ),
    path("deliveries/<int:delivery_id>/retry/", deliveries.delivery_retry, name="delivery-retry"),
    path("jobs/<int:job_id>/", deliveries.job_progress, name="job-detail"),
    path("conditions/row/", event_filters.condition_row, name="condition-row"),
    path(
        "destinations/<int:destination_id>/filters/",
        event_filters.destination_filters,
        name="destination-filters",
    ),
    path(
        "destinations/<int:destination_id>/filters/remove/",
        event_filters.destination_filter_delete,
        name="destination-filter-remove",
    ),
    path("demo/remove/", demo.demo_remove, name="demo-remove"),
    path("members/", members.member_list, name="members"),
    path("members/new/", members.member_new, name="member-new"),
    path("members/<int:user_id>/role/", members.member_role, name="member-role"),
    path("members/<int:user_id>/remove/", members.member_remove_view, name="member-remove"),
    path(
        "destinations/generate-secret/<slug:kind>/",
        destinations.destination_generate_secret,
        name="destination-generate-secret",
    ),
    # User conflicts, merge, delete, the billing-customer import and the audit log.
    path("conflicts/", conflicts.conflict_list, name="conflicts"),
    path("conflicts/export.csv", conflicts.conflicts_export, name="conflicts-export"),
    path("conflicts/merge/", merge.merge_page, name="conflicts-merge"),
    path("conflicts/merge/preview/", merge.merge_preview, name="conflicts-merge-preview"),
    path("conflicts/merge/confirm/", merge.merge_confirm, name="conflicts-merge-confirm"),
    path("conflicts/merge-all/", conflicts.merge_all, name="conflicts-merge-all"),
    path("conflicts/jobs/<int:job_id>/", conflicts.conflict_job, name="conflicts-job"),
    path("conflicts/import/", imports.import_upload, name="conflicts-import"),
    path("conflicts/import/preview/", imports.import_preview, name="conflicts-import-preview"),
    path("conflicts/import/start/", imports.import_confirm, name="conflicts-import-start"),
    path("users/<int:profile_id>/delete/", people.user_delete, name="user-delete"),
    path("audit/", audit.audit_list, name="audit-list"),
    path("audit/<int:entry_id>/", audit.audit_detail, name="audit-detail"),
    path("audit/<int:entry_id>/undo/", audit.audit_undo, name="audit-undo"),
]
