from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from destinations.models import Account, Event, IngestFailure, Profile, Source


@dataclass(frozen=True)
class HomeCounts:
    sources: int
    events_last_day: int
    failed_last_day: int
    users: int
    accounts: int
    newest_event_id: int | None


def home_counts() -> HomeCounts:
    day_ago = timezone.now() - timedelta(days=1)
    newest = Event.objects.order_by("-id").values_list("id", flat=True).first()
    return HomeCounts(
        sources=Source.objects.count(),
        events_last_day=Event.objects.filter(received_at__gte=day_ago).count(),
        failed_last_day=IngestFailure.objects.filter(received_at__gte=day_ago).count(),
        users=Profile.objects.filter(merged_into__isnull=True).count(),
        accounts=Account.objects.count(),
        newest_event_id=newest,
    )
