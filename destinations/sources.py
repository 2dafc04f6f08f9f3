"""Services for sources: the write-key holders SDKs send to, and Switchboard's own internal
sources, which hold the events it stores itself (re-sends, system events, Refiner's webhooks)."""

from __future__ import annotations

from django.contrib.auth.models import User

from destinations.audit import record
from destinations.ingest.auth import forget_cached_sources
from destinations.models import AuditAction, Source, new_write_key

INTERNAL_SOURCE = "Switchboard (internal)"
INTERNAL_DEMO_SOURCE = "Switchboard (internal, demo)"


def internal_source(*, demo: bool = False) -> Source:
    if demo:
        source, _ = Source.objects.get_or_create(
            name=INTERNAL_DEMO_SOURCE, defaults={"enabled": False, "demo": True}
        )
        return source
    source, _ = Source.objects.get_or_create(name=INTERNAL_SOURCE, defaults={"enabled": False})
    return source


def source_create(
    *, name: str, rate_limit_per_second: int | None = None, actor: User | None = None
) -> Source:
    if Source.objects.filter(name=name).exists():
        raise ValueError(f"A source named {name!r} already exists")
    source = Source(name=name)
    if rate_limit_per_second is not None:
        source.rate_limit_per_second = rate_limit_per_second
    source.save()
    record(AuditAction.SOURCE_CHANGED, f"Created source {name!r}", actor=actor, source=source.pk)
    return source


def source_update(
    *,
    source: Source,
    name: str,
    enabled: bool,
    rate_limit_per_second: int,
    actor: User | None = None,
) -> Source:
    source.name = name
    source.enabled = enabled
    source.rate_limit_per_second = rate_limit_per_second
    source.save(update_fields=["name", "enabled", "rate_limit_per_second"])
    forget_cached_sources()
    state = "enabled" if enabled else "disabled"
    summary = f"Changed source {name!r}: {state}, {rate_limit_per_second} requests/s"
    record(AuditAction.SOURCE_CHANGED, summary, actor=actor, source=source.pk)
    return source


def source_rotate_write_key(*, source: Source, actor: User | None = None) -> Source:
    """A new write key; SDKs still using the old one get 401 from now on."""
    source.write_key = new_write_key()
    source.save(update_fields=["write_key"])
    forget_cached_sources()
    summary = f"Issued a new write key for source {source.name!r}"
    record(AuditAction.SOURCE_CHANGED, summary, actor=actor, source=source.pk)
    return source
