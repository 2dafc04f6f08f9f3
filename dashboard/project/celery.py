"""The Celery app. Configuration comes from Django settings (``CELERY_*``)."""

from __future__ import annotations

import os

from celery import Celery

from dashboard.project.broker import register

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.project.settings")
register()

app = Celery("switchboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["destinations"])
