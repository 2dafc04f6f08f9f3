"""Find the source a request belongs to from its write key (HTTP Basic or body ``writeKey``)."""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass
from typing import Any

from destinations.messages.errors import IngestError
from destinations.models import Source

# Write keys are looked up on every request; a short per-process cache keeps that off the
# database while a disabled or deleted source still stops being accepted within seconds.
SOURCE_CACHE_SECONDS = 5.0
MAX_WRITE_KEY = Source._meta.get_field("write_key").max_length or 64


@dataclass(frozen=True, slots=True)
class SourceRef:
    id: int
    name: str
    enabled: bool
    rate_limit_per_second: int
    demo: bool = False


_cache: dict[str, tuple[float, SourceRef | None]] = {}


def write_key_from_header(authorization: str) -> str | None:
    if not authorization:
        return None
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "basic" or not credentials:
        raise IngestError(401, "Authorization must be HTTP Basic with the write key as user name")
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        # ValueError: a header byte outside ASCII (binascii.Error and UnicodeDecodeError are
        # both kinds of it).
        raise IngestError(401, "Authorization header is not valid Basic credentials") from exc
    user, _, _password = decoded.partition(":")
    return user or None


def write_key_from_body(document: dict[str, Any]) -> str | None:
    value = document.get("writeKey")
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise IngestError(401, "writeKey must be a string")
    return value


def source_for_write_key(write_key: str | None) -> SourceRef:
    if not write_key:
        raise IngestError(
            401, "No write key: send it as the HTTP Basic user name or as writeKey in the body"
        )
    if len(write_key) > MAX_WRITE_KEY or "\x00" in write_key:
        # No source has such a key, and PostgreSQL could not even compare one holding NUL.
        raise IngestError(401, "Unknown write key")
    now = time.monotonic()
    cached = _cache.get(write_key)
    if cached and cached[0] > now:
        ref = cached[1]
    else:
        row = (
            Source.objects.filter(write_key=write_key)
            .values_list("id", "name", "enabled", "rate_limit_per_second", "demo")
            .first()
        )
        ref = SourceRef(*row) if row else None
        if len(_cache) > 10_000:  # unknown keys must not grow the cache without bound
            _cache.clear()
        _cache[write_key] = (now + SOURCE_CACHE_SECONDS, ref)
    if ref is None:
        raise IngestError(401, "Unknown write key")
    if not ref.enabled:
        raise IngestError(403, f"Source {ref.name!r} is disabled")
    return ref


def forget_cached_sources() -> None:
    """Drop the cache (after a source is changed in this process, and between tests)."""
    _cache.clear()
