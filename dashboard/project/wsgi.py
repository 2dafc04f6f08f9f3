"""WSGI entry point: the start command serves it with waitress (dashboard/project/webserver.py); any
WSGI server can, behind a proxy that buffers request bodies (docs/decisions/0019). The Segment
endpoints are answered before Django's middleware (docs/decisions/0029)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.project.settings")
django_application = get_wsgi_application()

from destinations.ingest.direct import IngestFirst  # noqa: E402 - needs the apps loaded

application = IngestFirst(django_application)
