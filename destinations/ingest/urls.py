from django.urls import path

from destinations.ingest.views import ingest

CALLS = ("identify", "track", "page", "screen", "group", "alias")
# analytics.js (analytics-next) posts to one-letter paths: /v1/t, /v1/i, /v1/p...
SHORT = {"t": "track", "i": "identify", "p": "page", "s": "screen", "g": "group", "a": "alias"}

urlpatterns = [
    path("batch", ingest, name="ingest-batch"),
    path("b", ingest, name="ingest-b"),
    path("import", ingest, name="ingest-import"),
    *[path(call, ingest, {"call_type": call}, name=f"ingest-{call}") for call in CALLS],
    *[path(s, ingest, {"call_type": call}, name=f"ingest-{s}") for s, call in SHORT.items()],
]
