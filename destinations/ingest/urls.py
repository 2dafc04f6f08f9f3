from django.urls import path

from destinations.ingest.views import ingest

CALLS = ("identify", "track", "page", "screen", "group", "alias")

urlpatterns = [
    path("batch", ingest, name="ingest-batch"),
    path("import", ingest, name="ingest-import"),
    *[path(call, ingest, {"call_type": call}, name=f"ingest-{call}") for call in CALLS],
]
