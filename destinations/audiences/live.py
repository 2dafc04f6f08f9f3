"""Audiences and computed traits kept current in near real time: users touched by ingest are
re-evaluated by a worker right after the ingest transaction commits.

Ingest announces the users its events were about (``events_stored``); while any audience is
live, their ids are gathered per process for a moment (``destinations.coalesce``) and sent as
``destinations.reevaluate_audiences`` tasks. Nothing of this runs inside the ingest transaction
or before the response: the 200 does not wait for audiences. Ids gathered by a process that
dies are re-evaluated by the next window pass at the latest (it recomputes in full).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from destinations import dispatch
from destinations.audiences.compute import compute
from destinations.audiences.computed_traits import compute_trait
from destinations.audiences.order import dependency_order
from destinations.coalesce import Coalescer
from destinations.models import (
    Audience,
    AudienceState,
    AudienceSubject,
    ComputedTrait,
    ComputedTraitValue,
    Membership,
)

logger = logging.getLogger(__name__)
LIVE_CACHE_SECONDS = 2.0
_live: tuple[float, bool] | None = None


def any_live() -> bool:
    """Whether any audience or computed trait is kept current, cached briefly."""
    global _live
    now = time.monotonic()
    if _live is None or _live[0] <= now:
        live = (
            Audience.objects.filter(computed_at__isnull=False).exists()
            or ComputedTrait.objects.filter(computed_at__isnull=False).exists()
        )
        _live = (now + LIVE_CACHE_SECONDS, live)
    return _live[1]


def forget_live() -> None:
    global _live
    _live = None


def send_touched(chunks: list[list[int]]) -> None:
    try:
        for ids in chunks:
            dispatch.reevaluate_audiences(ids)
    except Exception:
        logger.warning("could not send audience re-evaluation; the window pass will", exc_info=True)


_touched = Coalescer(
    lambda chunks: send_touched(chunks),
    batch=lambda: settings.AUDIENCE_TASK_BATCH,
    delay=lambda: settings.AUDIENCE_COALESCE_SECONDS,
)


def on_events_stored(profile_ids: Collection[int], **_signal: Any) -> None:
    if profile_ids and any_live():
        _touched.add({0: sorted(profile_ids)})


def reevaluate_after_commit(profile_ids: Collection[int]) -> None:
    """For changes other than ingest (a merge, its undo): re-evaluate these users once the
    current transaction commits."""
    ids = sorted(profile_ids)
    transaction.on_commit(lambda: on_events_stored(ids), robust=True)


def people_merged(survivor_id: int, absorbed_ids: Collection[int]) -> None:
    """Merged-away users leave their audiences and lose their computed traits without a sync
    (their contacts are the survivor's now); the survivor, who has their events, is
    re-evaluated."""
    AudienceState.objects.filter(profile_id__in=list(absorbed_ids)).delete()
    ComputedTraitValue.objects.filter(profile_id__in=list(absorbed_ids)).delete()
    reevaluate_after_commit([survivor_id])


def flush_touched() -> None:
    _touched.flush()


def reevaluate(profile_ids: Collection[int]) -> int:
    """Bring every live audience up to date for these users (and their accounts); returns the
    number of changes."""
    if not profile_ids:
        return 0
    now = timezone.now()
    changed = 0
    for trait in ComputedTrait.objects.filter(computed_at__isnull=False):
        changed += len(compute_trait(trait, within=profile_ids, now=now).changed)
    audiences = list(Audience.objects.filter(computed_at__isnull=False))
    accounts: set[int] | None = None
    for audience in dependency_order(audiences):
        if audience.subject == AudienceSubject.ACCOUNTS:
            if accounts is None:
                accounts = set(
                    Membership.objects.filter(profile_id__in=list(profile_ids)).values_list(
                        "account_id", flat=True
                    )
                )
            within: Collection[int] = accounts
        else:
            within = profile_ids
        if within:
            changed += len(compute(audience, within=within, now=now).changed)
    return changed
