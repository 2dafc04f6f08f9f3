"""The HTTP floor: the web server exactly as ``manage.py start`` runs it, answering
``POST /v1/track`` after reading the body and authenticating the write key (the cached lookup
ingest uses) but storing nothing. What a request costs before Switchboard does any work of its
own; every other path goes to the real application, so ``/healthz`` still answers.

Served with ``SWITCHBOARD_WSGI_APPLICATION=ingest_bench.floor_app.application`` and
``bench/`` on ``PYTHONPATH``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson

from dashboard.project.wsgi import application as switchboard
from destinations.ingest.auth import source_for_write_key, write_key_from_header
from destinations.messages.errors import IngestError

ANSWER = orjson.dumps({"success": True, "stored": 0, "duplicates": 0})


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("PATH_INFO") != "/v1/track" or environ.get("REQUEST_METHOD") != "POST":
        return switchboard(environ, start_response)
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    try:
        source_for_write_key(write_key_from_header(environ.get("HTTP_AUTHORIZATION", "")))
    except IngestError as error:
        start_response(f"{error.status} Refused", [("Content-Type", "text/plain")])
        return [error.message.encode()]
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(ANSWER)))],
    )
    return [ANSWER]
