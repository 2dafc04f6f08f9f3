from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from dashboard.views import deliveries, destinations, events, home, people, sources

urlpatterns = [
    path("v1/", include("destinations.ingest.urls")),
    path("hooks/", include("destinations.webhooks.urls")),
    path("healthz", home.healthz, name="healthz"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", home.home, name="home"),
    path("sources/", sources.source_list, name="source-list"),
    path("sources/new/", sources.source_new, name="source-new"),
    path("sources/<int:source_id>/", sources.source_detail, name="source-detail"),
    path("sources/<int:source_id>/edit/", sources.source_edit, name="source-edit"),
    path("sources/<int:source_id>/rotate-key/", sources.source_rotate, name="source-rotate"),
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
    path("admin/", admin.site.urls),
]
