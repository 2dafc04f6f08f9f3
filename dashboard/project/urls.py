"""The site's root URLs: the Segment API, public hooks, login, the dashboard and each kind's
pages, and Django's admin."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import URLPattern, URLResolver, include, path

from dashboard.login_throttle import ThrottledLoginForm
from dashboard.views import home
from destinations.kinds import KINDS, optional_module


def kind_urls() -> list[URLPattern | URLResolver]:
    """Each kind's dashboard pages, at the site root beside the others."""
    return [path("", include(urls)) for k in KINDS if (urls := optional_module(k, "urls"))]


def kind_hook_urls() -> list[URLPattern | URLResolver]:
    """Each kind's public endpoints (Refiner's webhooks post to ``/hooks/refiner/<id>``)."""
    return [
        path("hooks/", include(hooks)) for k in KINDS if (hooks := optional_module(k, "hook_urls"))
    ]


urlpatterns = [
    path("v1/", include("destinations.ingest.urls")),
    *kind_hook_urls(),
    path("healthz", home.healthz, name="healthz"),
    path(
        "login/",
        auth_views.LoginView.as_view(authentication_form=ThrottledLoginForm),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("dashboard.urls")),
    *kind_urls(),
    path("admin/", admin.site.urls),
]

handler404 = "dashboard.views.errors.not_found"
