"""The Django project and operator UI. The Celery app loads with Django so tasks can be sent."""

from dashboard.celery import app as celery_app

__all__ = ("celery_app",)
