"""Drop, at ingest, the events of users an operator deleted with "suppress future events"."""

from __future__ import annotations

import time
from collections.abc import Sequence

from django.db.models import Q

from destinations.messages.message import Message
from destinations.models import Suppression, SuppressionKind
from destinations.traits import trait_email

# Most installations have no suppressions: a per-process flag, refreshed every few seconds,
# spares every ingest request a query.
CHECK_SECONDS = 5.0
_any_until: tuple[float, bool] | None = None


def forget_cached_suppressions() -> None:
    global _any_until
    _any_until = None


def any_suppressions() -> bool:
    global _any_until
    now = time.monotonic()
    if _any_until is None or _any_until[0] < now:
        _any_until = (now + CHECK_SECONDS, Suppression.objects.exists())
    return _any_until[1]


def without_suppressed(messages: Sequence[Message]) -> tuple[list[Message], int]:
    """The messages to keep, and how many were dropped."""
    if not messages or not any_suppressions():
        return list(messages), 0
    user_ids = {m.user_id for m in messages if m.user_id}
    emails = {e for m in messages if (e := trait_email(m.traits))}
    rows = Suppression.objects.filter(
        Q(kind=SuppressionKind.USER_ID, value__in=user_ids)
        | Q(kind=SuppressionKind.EMAIL, value__in=emails)
    ).values_list("kind", "value")
    blocked = set(rows)
    if not blocked:
        return list(messages), 0
    kept = [
        m
        for m in messages
        if (SuppressionKind.USER_ID, m.user_id) not in blocked
        and (SuppressionKind.EMAIL, trait_email(m.traits)) not in blocked
    ]
    return kept, len(messages) - len(kept)
