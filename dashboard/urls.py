from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from dashboard.views import events, home, people, sources

urlpatterns = [
    path("v1/", include("destinations.ingest.urls")),
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
    path("admin/", admin.site.urls),
]
