"""Refiner posting to a receiver, and the values of the receiver pages' inputs."""

from __future__ import annotations

import html
import re
from typing import Any

import orjson
from django.test import Client

from destinations.models import RefinerReceiver


def input_value(response: Any, element_id: str) -> str:
    match = re.search(rf'<input id="{element_id}"[^>]*\bvalue="([^"]*)"', response.content.decode())
    assert match, f"no input #{element_id}"
    return html.unescape(match[1])


def hook(client: Client, receiver: RefinerReceiver, payload: Any, token: str | None) -> Any:
    """Refiner's POST to the receiver's public URL (as pasted into Refiner), with the bearer
    token when one is given; ``payload`` is sent as JSON unless it is bytes already."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return client.post(
        f"/hooks/refiner/{receiver.public_id}",
        data=body,
        content_type="application/json",
        headers=headers,
    )
