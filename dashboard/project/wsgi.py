"""WSGI entry point: the start command serves it with waitress (dashboard/project/webserver.py); any
WSGI server can, behind a proxy that buffers request bodies (docs/decisions/0019)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.project.settings")
application = get_wsgi_application()
