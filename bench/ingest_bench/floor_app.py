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
Answer = tuple[str, list[tuple[str, str]], bytes]


class Floor:
    """Answers ``POST /v1/track`` as described above, on the web server's event loop as ingest
    is (dashboard/project/loop_answers.py), or on a thread when called as plain WSGI."""

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/v1/track" or environ.get("REQUEST_METHOD") != "POST":
            return switchboard(environ, start_response)
        status, headers, body = self.answer(environ)
        start_response(status, headers)
        return [body]

    def in_loop(self, method: str, path: str, content_length: int) -> bool:
        return method == "POST" and path == "/v1/track"

    def begin(self, environ: dict[str, Any], reply: Callable[[Callable[[], Answer]], None]) -> None:
        answer = self.answer(environ)
        reply(lambda: answer)

    def end_turn(self) -> None:
        pass  # nothing waits

    def answer(self, environ: dict[str, Any]) -> Answer:
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        try:
            source_for_write_key(write_key_from_header(environ.get("HTTP_AUTHORIZATION", "")))
        except IngestError as error:
            return (
                f"{error.status} Refused",
                [("Content-Type", "text/plain")],
                error.message.encode(),
            )
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(ANSWER)))]
        return "200 OK", headers, ANSWER


application = Floor()
