"""What operators do to destinations and deliveries. Views and commands call these."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, NamedTuple

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from destinations import dispatch
from destinations.audit import record
from destinations.crypto import SecretsUnreadable
from destinations.delivery.contract import ConnectionFailed
from destinations.delivery.enqueue import enqueue_deliveries
from destinations.delivery.http import session
from destinations.delivery.routing import forget_cached_destinations
from destinations.kinds import connector_for, event_fault_prefixes
from destinations.models import (
    WAITING,
    AuditAction,
    Delivery,
    DeliveryStatus,
    Destination,
    Job,
    JobKind,
)


def destination_create(
    *,
    kind: str,
    name: str,
    settings_values: Mapping[str, str],
    secret_values: Mapping[str, str],
    enabled: bool = True,
    rate_limit_per_minute: int = 0,
    actor: User | None = None,
) -> Destination:
    """``rate_limit_per_minute`` 0: the connector's default."""
    connector = connector_for(kind)
    missing = [
        f.label
        for f in connector.settings_fields
        if f.required
        and not f.default
        and not (settings_values.get(f.name) or secret_values.get(f.name))
    ]
    if missing:
        raise ValueError(
            f"{', '.join(missing)} required for a {connector.display_name} destination"
        )
    if Destination.objects.filter(name=name).exists():
        raise ValueError(f"a destination named {name!r} already exists")
    connector.check_config({**settings_values, **secret_values})
    destination = Destination(
        kind=kind, name=name, enabled=enabled, rate_limit_per_minute=rate_limit_per_minute
    )
    destination.settings = {
        f.name: settings_values.get(f.name) or f.default
        for f in connector.settings_fields
        if not f.secret
    }
    destination.set_secrets({k: v for k, v in secret_values.items() if v})
    destination.save()
    forget_cached_destinations()
    record(
        AuditAction.DESTINATION_CHANGED,
        f"Created {connector.display_name} destination {name!r}",
        actor=actor,
        destination=destination.pk,
    )
    return destination


def destination_update(
    destination: Destination,
    *,
    name: str,
    enabled: bool,
    settings_values: Mapping[str, str],
    secret_values: Mapping[str, str],
    rate_limit_per_minute: int | None = None,
    actor: User | None = None,
) -> Destination:
    """Secrets left blank keep their stored value: they are never rendered back to the form.
    ``rate_limit_per_minute`` None leaves it as it is; 0 is the connector's default. The engine
    reads it from the row with each batch, so no cache needs forgetting."""
    connector = connector_for(destination.kind)
    connector.check_config({**settings_values, **secret_values})
    destination.name = name
    destination.enabled = enabled
    if rate_limit_per_minute is not None:
        destination.rate_limit_per_minute = rate_limit_per_minute
    destination.settings = {
        f.name: settings_values.get(f.name) or f.default
        for f in connector.settings_fields
        if not f.secret
    }
    entered = {k: v for k, v in secret_values.items() if v}
    try:
        secrets = destination.secrets
    except SecretsUnreadable:
        # The encryption key changed: what is stored is lost, so every secret must be entered.
        needed = [f.label for f in connector.settings_fields if f.secret and f.name not in entered]
        if needed:
            raise ValueError(
                f"The stored {', '.join(needed)} cannot be decrypted (the encryption key "
                "changed): enter it again"
            ) from None
        secrets = {}
    secrets.update(entered)
    destination.set_secrets(secrets)
    destination.save()
    forget_cached_destinations()
    # Which secrets changed is recorded, never their values.
    changed = sorted(f.label for f in connector.settings_fields if f.name in entered)
    summary = f"Changed destination {name!r}" + (f" (new {', '.join(changed)})" if changed else "")
    record(AuditAction.DESTINATION_CHANGED, summary, actor=actor, destination=destination.pk)
    return destination


def destination_set_enabled(
    destination: Destination, enabled: bool, *, actor: User | None = None
) -> None:
    Destination.objects.filter(pk=destination.pk).update(enabled=enabled)
    destination.enabled = enabled
    forget_cached_destinations()
    verb = "Enabled" if enabled else "Disabled"
    summary = f"{verb} destination {destination.name!r}"
    record(AuditAction.DESTINATION_CHANGED, summary, actor=actor, destination=destination.pk)


class ConnectionTest(NamedTuple):
    ok: bool
    message: str
    detail: str = ""  # the library's own words, behind a toggle


def test_connection(kind: str, config: Mapping[str, str]) -> ConnectionTest:
    try:
        connector = connector_for(kind)
        return ConnectionTest(True, connector.test_connection(config, session()))
    except ConnectionFailed as exc:
        return ConnectionTest(False, exc.message, exc.detail)


def destination_resume(destination: Destination, *, actor: User | None = None) -> int:
    """Lift the breaker's pause. Waiting deliveries get a fresh retry window (they waited
    through the pause, not through failures) and are woken now; returns how many."""
    now = timezone.now()
    with transaction.atomic():
        Destination.objects.filter(pk=destination.pk).update(
            paused_at=None, paused_reason="", consecutive_failures=0
        )
        waiting = Delivery.objects.filter(destination=destination, status__in=WAITING)
        waiting.update(
            next_attempt_at=now,
            retry_until=now + timedelta(seconds=settings.DELIVERY_RETRY_WINDOW_SECONDS),
        )
        count = waiting.count()
        summary = f"Resumed destination {destination.name!r} ({count} deliveries waiting)"
        record(AuditAction.DESTINATION_CHANGED, summary, actor=actor, destination=destination.pk)
    forget_cached_destinations()
    from destinations.delivery.sweeper import sweep

    sweep()
    return count


def retry_can_change(status: str, reason: str) -> bool:
    """Whether sending again can end differently. Yes for a failure of the destination, the
    network, its settings or the translation: fixing those is what Retry is for. No for a
    skipped delivery (no userId, no email, unmapped, a call the service does not take): the
    same event is skipped the same way, and unmapped events move when a mapping rule matches
    them. No for a failure over the event's own content (a malformed delta)."""
    return status == DeliveryStatus.FAILED and not reason.startswith(event_fault_prefixes())


def retryable() -> Q:
    """The deliveries ``retry_can_change`` says yes to, as a filter."""
    faults = Q()
    for prefix in event_fault_prefixes():
        faults |= Q(reason__startswith=prefix)
    return Q(status=DeliveryStatus.FAILED) & ~faults


def delivery_retry(delivery: Delivery, *, actor: User | None = None) -> bool:
    """Send a failed delivery again, with a fresh retry window, where that can change the
    outcome (``retry_can_change``); False, and nothing done, otherwise."""
    now = timezone.now()
    window = timedelta(seconds=settings.DELIVERY_RETRY_WINDOW_SECONDS)
    requeue = timedelta(seconds=settings.DELIVERY_REQUEUE_AFTER_SECONDS)
    with transaction.atomic():
        updated = Delivery.objects.filter(retryable(), pk=delivery.pk).update(
            status=DeliveryStatus.PENDING,
            next_attempt_at=now + requeue,
            retry_until=now + window,
            finished_at=None,
            reason="",
        )
        if updated:
            summary = f"Retried delivery {delivery.pk} of event {delivery.event_id}"
            record(AuditAction.RETRY, summary, actor=actor, delivery=delivery.pk)
            ids = {delivery.destination_id: [delivery.pk]}
            transaction.on_commit(lambda: enqueue_deliveries(ids), robust=True)
    return bool(updated)


def retry_failed_start(destination: Destination, user: User | None) -> Job:
    """A job that re-queues every failed delivery of ``destination``, with a progress bar."""
    total = Delivery.objects.filter(retryable(), destination=destination).count()
    params: dict[str, Any] = {"destination_id": destination.pk}
    job = Job.objects.create(
        kind=JobKind.RETRY_FAILED,
        params=params,
        total=total,
        created_by=user,
    )
    dispatch.run_job_on_commit(job.pk)
    summary = f"Retried all {total} failed deliveries of {destination.name!r}"
    record(AuditAction.RETRY, summary, actor=user, destination=destination.pk, job=job.pk)
    return job
