"""Ingest through the web server as operators run it (``manage.py start``: waitress in two
processes, each answering /v1 before Django's middleware and storing through its own writer
thread, large groups through the ingest writer process when there is one): concurrent clients
sending single events and batches, with messageIds repeated across requests and processes, get
counts that add up exactly to the rows stored. Run with the writer process and without it, on
either database."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import requests
from django.conf import settings

from destinations.models import Event, IngestFailure, Source
from tests.helpers.ingest import basic
from tests.helpers.server import WebServer

pytestmark = pytest.mark.usefixtures("transactional_db")

CLIENTS = 16
REQUESTS_EACH = 10
MESSAGE_IDS = 60  # far fewer than the messages sent: most are sent more than once


# Batches are of 5 events, or of LARGE: a group of these is stored by the writer process, while
# the small ones are stored by the web processes' own writers at the same time.
LARGE = 60


@pytest.fixture(scope="module", params=["true", "false"], ids=["writer process", "none"])
def web_server(django_db_setup: None, request: pytest.FixtureRequest) -> Iterator[WebServer]:
    server = WebServer(workers=2, env={"INGEST_WRITER_PROCESS": request.param}).start()
    yield server
    server.stop()


@dataclass(frozen=True)
class Sent:
    path: str
    message_ids: list[str]
    invalid_items: int
    answer: dict[str, Any]
    headers: dict[str, str]


def track(message_number: int) -> dict[str, Any]:
    # A handful of users, so requests in both processes resolve the same profiles.
    return {
        "type": "track",
        "userId": f"user-{message_number % 7}",
        "event": "Clicked",
        "messageId": f"m{message_number}",
    }


def client_thread(
    server: WebServer, write_key: str, start: threading.Barrier, n: int
) -> list[Sent]:
    """One SDK-like client on its own kept-alive connection: a single event or a batch in turn;
    every third batch carries an item without its event name, which is refused alone."""
    sent: list[Sent] = []
    with requests.Session() as session:
        session.headers.update(
            {"Authorization": basic(write_key), "Content-Type": "application/json"}
        )
        start.wait()
        for number in range(REQUESTS_EACH):
            if (n + number) % 2 == 0:
                item = track((n * 7 + number * 3) % MESSAGE_IDS)
                path, body, ids, invalid = "/v1/track", item, [item["messageId"]], 0
            else:
                size = LARGE if (n + number) % 4 == 1 else 5
                items = [track((n * 5 + number * 11 + k * 13) % MESSAGE_IDS) for k in range(size)]
                ids = [item["messageId"] for item in items]
                invalid = 1 if number % 3 == 1 else 0
                refused = [{"type": "track", "userId": "u", "messageId": f"bad-{n}-{number}"}]
                path, body = "/v1/batch", {"batch": items + refused * invalid}
            response = session.post(server.base_url + path, data=orjson.dumps(body), timeout=60)
            assert response.status_code == 200, (path, response.status_code, response.text)
            sent.append(Sent(path, ids, invalid, response.json(), dict(response.headers)))
    return sent


def test_counts_in_the_answers_add_up_to_the_rows_stored(
    web_server: WebServer, source: Source
) -> None:
    start = threading.Barrier(CLIENTS)
    with ThreadPoolExecutor(CLIENTS) as pool:
        runs = pool.map(
            lambda n: client_thread(web_server, source.write_key, start, n), range(CLIENTS)
        )
        sent = [each for run in runs for each in run]

    assert len(sent) == CLIENTS * REQUESTS_EACH
    for each in sent:
        answer = each.answer
        assert answer["success"] is True, answer
        assert answer["stored"] + answer["duplicates"] == len(each.message_ids), answer
        if each.path == "/v1/batch":
            assert answer["accepted"] == len(each.message_ids)
            failed_index = len(each.message_ids)
            assert [f["index"] for f in answer["failed"]] == [failed_index] * each.invalid_items
    every_id = {mid for each in sent for mid in each.message_ids}
    assert len(every_id) == MESSAGE_IDS
    rows = list(Event.objects.filter(source=source).values_list("message_id", flat=True))
    assert sorted(rows) == sorted(every_id)
    assert sum(each.answer["stored"] for each in sent) == len(rows)
    assert sum(each.answer["duplicates"] for each in sent) == sum(
        len(each.message_ids) for each in sent
    ) - len(rows)
    assert IngestFailure.objects.filter(source=source).count() == sum(
        each.invalid_items for each in sent
    )

    # Answered by the direct path, through the server: the middleware's headers are there,
    # and the server gave the body its length (the connection was kept alive throughout).
    for each in sent:
        assert each.headers["Content-Security-Policy"] == settings.CONTENT_SECURITY_POLICY
        assert each.headers["X-Frame-Options"] == "DENY"
        assert each.headers["Content-Length"].isdigit()
        assert "Vary" not in each.headers
    assert "Traceback" not in web_server.log(), web_server.describe()
