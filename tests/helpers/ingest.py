"""Sending events through the real ingest endpoint."""

from __future__ import annotations

from typing import Any


def send(post_ingest: Any, items: list[dict[str, Any]]) -> None:
    response = post_ingest("batch", {"batch": items})
    assert response.status_code == 200, response.content
    assert response.json()["failed"] == []
