"""Refiner webhook receivers: made with a token to paste into Refiner, rotated, checked."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from destinations.models import AuditAction, AuditEntry, RefinerReceiver


def new_token() -> str:
    return "rwh_" + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def receiver_create(
    *, name: str, trigger: str, actor: User | None = None
) -> tuple[RefinerReceiver, str]:
    """Returns the receiver and its token, which is never shown again."""
    if RefinerReceiver.objects.filter(name=name).exists():
        raise ValueError(f"a receiver named {name!r} already exists")
    token = new_token()
    receiver = RefinerReceiver.objects.create(
        name=name, trigger=trigger, token_hash=token_hash(token), token_hint=token[-4:]
    )
    AuditEntry.objects.create(
        actor=actor,
        action=AuditAction.RECEIVER_CHANGED,
        summary=f"Created Refiner webhook receiver {name!r} ({receiver.get_trigger_display()})",
        data={"receiver": receiver.pk},
    )
    return receiver, token


def receiver_rotate(receiver: RefinerReceiver, *, actor: User | None = None) -> str:
    """A new token; the old one stops working at once."""
    token = new_token()
    receiver.token_hash = token_hash(token)
    receiver.token_hint = token[-4:]
    receiver.rotated_at = timezone.now()
    receiver.save(update_fields=["token_hash", "token_hint", "rotated_at"])
    AuditEntry.objects.create(
        actor=actor,
        action=AuditAction.RECEIVER_CHANGED,
        summary=f"Rotated the token of Refiner webhook receiver {receiver.name!r}",
        data={"receiver": receiver.pk},
    )
    return token


def token_matches(receiver: RefinerReceiver, authorization: str) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time."""
    scheme, _, presented = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return False
    return hmac.compare_digest(token_hash(presented.strip()), receiver.token_hash)


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
