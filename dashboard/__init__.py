"""The operator UI: pages, forms, page selectors and template tags. The Django project (settings,
root URLs, Celery app, web server) is the sub-package ``dashboard.project``."""

# Re-exported so ``celery -A dashboard``, the command of earlier releases, still finds the app.
from dashboard.project.celery import app as celery_app

__all__ = ("celery_app",)
