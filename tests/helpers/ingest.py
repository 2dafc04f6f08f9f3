"""Sending events through the real ingest endpoint: its auth header, its rate limit's window,
and batches that must be accepted whole."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

# The ``post_ingest`` fixture: post_ingest(path, payload, *, raw=, write_key=, auth=, gzip_body=,
# content_type=, headers=) -> the response.
IngestPost = Callable[..., Any]


def send(post_ingest: IngestPost, items: list[dict[str, Any]]) -> None:
    response = post_ingest("batch", {"batch": items})
    assert response.status_code == 200, response.content
    assert response.json()["failed"] == []


def basic(write_key: str) -> str:
    """The ``Authorization`` header an SDK sends: Basic auth with the write key as user name."""
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


def start_of_a_fresh_second() -> None:
    """Rate limits count per wall-clock second: start there so a burst shares one window."""
    time.sleep(1.0 - time.time() % 1.0 + 0.01)
