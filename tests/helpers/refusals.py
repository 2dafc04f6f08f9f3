"""Ingest's refusals as tests read them, and the messages they send to provoke them."""

from __future__ import annotations

from typing import Any


def error_of(response: Any) -> str:
    assert response["Content-Type"] == "application/json", response.content
    data = response.json()
    assert data["success"] is False
    return str(data["error"])


def assert_refused(response: Any, status: int, fragment: str) -> str:
    """The response has ``status`` and its JSON error mentions ``fragment``; returns the error."""
    assert response.status_code == status, response.content
    error = error_of(response)
    assert fragment in error, error
    return error


def track(message_id: str = "ok-1", **fields: Any) -> dict[str, Any]:
    return {"userId": "u1", "event": "Signed Up", "messageId": message_id, **fields}


def item(call: str, message_id: str, **fields: Any) -> dict[str, Any]:
    """A valid batch item of type ``call``, with ``fields`` overriding (None removes a field)."""
    base: dict[str, Any] = {"type": call, "userId": "u1", "messageId": message_id}
    base.update({"track": {"event": "E"}, "group": {"groupId": "g1"}}.get(call, {}))
    base.update({"alias": {"previousId": "old-1"}}.get(call, {}))
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def nested(levels: int, leaf: Any = "bottom") -> Any:
    """``leaf`` inside ``levels`` of {"a": ...}."""
    value = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


def nested_raw(levels: int) -> bytes:
    """``levels`` of {"a": ...} inside properties, as text (orjson cannot dump that deep)."""
    return (
        b'{"userId": "u1", "event": "Deep", "properties": '
        + b'{"a": ' * levels
        + b'"bottom"'
        + b"}" * levels
        + b"}"
    )
