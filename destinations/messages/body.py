"""Turn an HTTP request body into JSON, enforcing the Segment HTTP Tracking API's limits."""

from __future__ import annotations

import zlib
from typing import Any

import orjson

from destinations.messages.errors import IngestError

MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_EVENTS = 2500
MAX_JSON_DEPTH = 32
TOO_DEEP = f"JSON is nested more than {MAX_JSON_DEPTH} levels deep"

# analytics.js sends text/plain on purpose so browsers skip the CORS preflight.
ACCEPTED_CONTENT_TYPES = {"application/json", "text/plain"}


def check_content_type(content_type: str) -> None:
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in ACCEPTED_CONTENT_TYPES:
        shown = media_type or "none"
        raise IngestError(415, f"Content-Type must be application/json, got {shown}")


def decompress(raw: bytes, content_encoding: str, limit: int) -> bytes:
    """Undo Content-Encoding, refusing output larger than ``limit`` (a gzip bomb stops there)."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding != "gzip":
        raise IngestError(415, f"Content-Encoding {encoding!r} is not supported; use gzip")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise IngestError(400, f"Body is not valid gzip: {exc}") from exc
    if len(data) > limit or inflater.unconsumed_tail:
        raise IngestError(413, f"Decompressed body is over the {limit // 1024} KB limit")
    if not inflater.eof:
        raise IngestError(400, "Body is not valid gzip: the stream is truncated")
    return data


def parse_json(data: bytes) -> Any:
    """Parse the request body. Depth is checked per message (``message.validate_message``), so
    one over-deep item in a batch is refused alone and its neighbours are kept."""
    if not data.strip():
        raise IngestError(400, "Body is empty; expected a JSON object")
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        # orjson stops at its own depth limit (far past ours) before it can exhaust the stack.
        if "depth limit" in str(exc).lower() or "recursion" in str(exc).lower():
            raise IngestError(400, TOO_DEEP) from exc
        raise IngestError(400, f"Invalid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise IngestError(400, f"Body must be a JSON object, got {type_name(document)}")
    return document


CONTAINERS = (dict, list)


def json_depth(value: Any, stop_after: int) -> int:
    """Nesting depth of a parsed document (a scalar 0, ``{}`` 1); once past ``stop_after`` it
    stops there, so however deep the document, the recursion is at most ``stop_after + 1``
    calls deep. Scalars are only looked at, never queued: most of a payload is scalars, and
    this runs on every message ingest receives."""
    if not isinstance(value, CONTAINERS):
        return 0
    return container_depth(value, 1, stop_after)


def container_depth(node: dict[str, Any] | list[Any], depth: int, stop_after: int) -> int:
    if depth > stop_after:
        return depth
    deepest = depth
    for child in node.values() if isinstance(node, dict) else node:
        if isinstance(child, CONTAINERS):
            found = container_depth(child, depth + 1, stop_after)
            if found > deepest:
                deepest = found
                if deepest > stop_after:
                    return deepest
    return deepest


def pruned(value: Any, max_depth: int) -> Any:
    """A copy of ``value`` with whatever is nested deeper than ``max_depth`` replaced by a
    marker, without recursion: for showing a refused document that was too deep to store."""
    if not isinstance(value, dict | list):
        return value
    root: Any = {} if isinstance(value, dict) else []
    stack: list[tuple[Any, Any, int]] = [(value, root, 1)]
    while stack:
        source, copy, depth = stack.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, child in items:
            if isinstance(child, dict | list):
                if depth >= max_depth:
                    child_copy: Any = "…nested too deep…"
                else:
                    child_copy = {} if isinstance(child, dict) else []
                    stack.append((child, child_copy, depth + 1))
            else:
                child_copy = child
            if isinstance(copy, dict):
                copy[key] = child_copy
            else:
                copy.append(child_copy)
    return root


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
