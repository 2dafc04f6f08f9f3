"""WSGI entry point: the start command serves it with waitress (dashboard/webserver.py); any
WSGI server can, behind a proxy that buffers request bodies (docs/decisions/0019)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
application = get_wsgi_application()
