from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from dashboard.login_throttle import ThrottledLoginForm
from dashboard.views import (
    debugger,
    deliveries,
    demo,
    destinations,
    events,
    home,
    mapping,
    members,
    overview,
    people,
    receivers,
    refiner,
    sources,
    webhooks,
)
from dashboard.views import filters as event_filters

urlpatterns = [
    path("v1/", include("destinations.ingest.urls")),
    path("hooks/", include("destinations.webhooks.urls")),
    path("healthz", home.healthz, name="healthz"),
    path(
        "login/",
        auth_views.LoginView.as_view(authentication_form=ThrottledLoginForm),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
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
    path("rules/", mapping.mapping_rules_index, name="mapping-rules-index"),
    path("destinations/<int:destination_id>/rules/", mapping.mapping_rules, name="mapping-rules"),
    path(
        "destinations/<int:destination_id>/rules/new/",
        mapping.mapping_rule_new,
        name="mapping-rule-new",
    ),
    path(
        "destinations/<int:destination_id>/rules/preview/",
        mapping.mapping_rule_preview,
        name="mapping-rule-preview",
    ),
    path(
        "destinations/<int:destination_id>/rules/jobs/<int:job_id>/",
        mapping.mapping_rule_job,
        name="mapping-rule-job",
    ),
    path(
        "destinations/<int:destination_id>/rules/<int:rule_id>/edit/",
        mapping.mapping_rule_edit,
        name="mapping-rule-edit",
    ),
    path(
        "destinations/<int:destination_id>/rules/<int:rule_id>/toggle/",
        mapping.mapping_rule_toggle,
        name="mapping-rule-toggle",
    ),
    path(
        "destinations/<int:destination_id>/rules/<int:rule_id>/move/",
        mapping.mapping_rule_move,
        name="mapping-rule-move",
    ),
    path(
        "destinations/<int:destination_id>/rules/<int:rule_id>/delete/",
        mapping.mapping_rule_delete,
        name="mapping-rule-delete",
    ),
    path(
        "destinations/<int:destination_id>/unmapped/",
        mapping.mapping_unmapped,
        name="mapping-unmapped",
    ),
    path("conditions/row/", mapping.condition_row, name="condition-row"),
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
    path("refiner/", refiner.refiner_home, name="refiner-home"),
    path("refiner/contacts/", refiner.contact_list, name="refiner-contacts"),
    path("refiner/contacts/<str:uuid>/", refiner.contact_detail, name="refiner-contact"),
    path("refiner/segments/", refiner.segment_list, name="refiner-segments"),
    path("refiner/forms/", refiner.form_list, name="refiner-forms"),
    path("refiner/responses/", refiner.response_list, name="refiner-responses"),
    path("refiner/console/", refiner.console, name="refiner-console"),
    path("refiner/webhooks/", receivers.receiver_list, name="receiver-list"),
    path("refiner/webhooks/new/", receivers.receiver_new, name="receiver-new"),
    path("refiner/webhooks/<int:receiver_id>/", receivers.receiver_detail, name="receiver-detail"),
    path(
        "refiner/webhooks/<int:receiver_id>/rotate/",
        receivers.receiver_rotate_token,
        name="receiver-rotate",
    ),
    path(
        "refiner/webhooks/<int:receiver_id>/toggle/",
        receivers.receiver_toggle,
        name="receiver-toggle",
    ),
    path("webhooks/outbound/", webhooks.outbound_webhook_list, name="outbound-webhook-list"),
    path("", include("dashboard.urls_people")),
    path("admin/", admin.site.urls),
]

handler404 = "dashboard.views.errors.not_found"
