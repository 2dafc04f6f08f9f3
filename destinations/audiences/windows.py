"""The periodic pass: "in the last 30 days" ends on day 31 with no new event, so audiences with
a time window (and the audiences that use them) and windowed computed traits are recomputed in
full on a schedule, and only the changes are synced. Changes older than the page shows are
pruned here too."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from destinations.audiences.compute import compute
from destinations.audiences.computed_traits import compute_trait
from destinations.audiences.definition import has_window
from destinations.audiences.order import dependency_order, dependents
from destinations.models import Audience, AudienceChange, ComputedTrait

KEEP_CHANGES_DAYS = 30


def run_window_pass(now: datetime | None = None) -> int:
    """Returns the number of changes synced. ``now``: the moment windows end at."""
    now = now or timezone.now()
    audiences = list(Audience.objects.filter(computed_at__isnull=False))
    timed = {a.pk for a in audiences if has_window(a.definition)}
    for pk in list(timed):
        timed |= {a.pk for a in dependents(pk, audiences)}
    changed = 0
    for audience in dependency_order([a for a in audiences if a.pk in timed]):
        changed += len(compute(audience, now=now).changed)
    for trait in ComputedTrait.objects.filter(computed_at__isnull=False):
        if trait.definition.get("within_days"):
            changed += len(compute_trait(trait, now=now).changed)
    AudienceChange.objects.filter(at__lt=now - timedelta(days=KEEP_CHANGES_DAYS)).delete()
    return changed
