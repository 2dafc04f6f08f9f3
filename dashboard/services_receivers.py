"""Turning a Refiner webhook receiver off and on.

The engine (``destinations.webhooks.receivers``) makes and rotates receivers but has no service
for this yet; until it does, it lives here, writing the same audit entries its siblings write.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from destinations.models import AuditAction, AuditEntry, RefinerReceiver


def receiver_set_enabled(
    receiver: RefinerReceiver, *, enabled: bool, actor: User | None = None
) -> None:
    """A disabled receiver answers Refiner 404, as for an unknown URL, until enabled again."""
    with transaction.atomic():
        RefinerReceiver.objects.filter(pk=receiver.pk).update(enabled=enabled)
        AuditEntry.objects.create(
            actor=actor,
            action=AuditAction.RECEIVER_CHANGED,
            summary=f"{'Enabled' if enabled else 'Disabled'} Refiner webhook receiver "
            f"{receiver.name!r}",
            data={"receiver": receiver.pk, "enabled": enabled},
        )
    receiver.enabled = enabled
