"""Writing the audit log: who did what, when. Secrets never go in, only that they changed."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User

from destinations.models import AuditEntry


def record(action: str, summary: str, *, actor: User | None = None, **data: Any) -> AuditEntry:
    return AuditEntry.objects.create(actor=actor, action=action, summary=summary, data=data)
