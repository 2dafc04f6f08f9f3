"""The Django project: settings, root URLs, the Celery app (loaded with Django so tasks can be
sent), the embedded broker and the web server."""

from dashboard.project.celery import app as celery_app

__all__ = ("celery_app",)
