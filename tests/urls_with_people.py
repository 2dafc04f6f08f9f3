"""The dashboard's URLs with the conflict pages included, as dashboard.urls will include them.

Used by ``@pytest.mark.urls("tests.urls_with_people")`` until dashboard.urls includes
dashboard.urls_people itself; then this module and those marks can go."""

from __future__ import annotations

from django.urls import include, path

from dashboard.urls import urlpatterns as dashboard_urlpatterns

urlpatterns = [path("", include("dashboard.urls_people")), *dashboard_urlpatterns]
