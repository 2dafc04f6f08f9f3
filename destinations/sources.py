"""Services for sources: the write-key holders SDKs send to."""

from __future__ import annotations

from destinations.ingest.auth import forget_cached_sources
from destinations.models import Source, new_write_key


def source_create(*, name: str, rate_limit_per_second: int | None = None) -> Source:
    if Source.objects.filter(name=name).exists():
        raise ValueError(f"A source named {name!r} already exists")
    source = Source(name=name)
    if rate_limit_per_second is not None:
        source.rate_limit_per_second = rate_limit_per_second
    source.save()
    return source


def source_update(
    *, source: Source, name: str, enabled: bool, rate_limit_per_second: int
) -> Source:
    source.name = name
    source.enabled = enabled
    source.rate_limit_per_second = rate_limit_per_second
    source.save(update_fields=["name", "enabled", "rate_limit_per_second"])
    forget_cached_sources()
    return source


def source_rotate_write_key(*, source: Source) -> Source:
    """A new write key; SDKs still using the old one get 401 from now on."""
    source.write_key = new_write_key()
    source.save(update_fields=["write_key"])
    forget_cached_sources()
    return source
