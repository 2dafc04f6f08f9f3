from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from destinations.models import Event, IngestFailure, Source


def sources_with_health() -> QuerySet[Source]:
    day_ago = timezone.now() - timedelta(days=1)
    return Source.objects.annotate(
        failed_on_ingest=Count(
            "ingest_failures", filter=Q(ingest_failures__received_at__gte=day_ago)
        )
    ).order_by("name")


def source_last_event(source: Source) -> Event | None:
    return Event.objects.filter(source=source).defer("payload").order_by("-id").first()


def source_failures(source: Source, limit: int = 50) -> list[IngestFailure]:
    return list(IngestFailure.objects.filter(source=source).order_by("-received_at", "-id")[:limit])


def source_failure_count(source: Source) -> int:
    return IngestFailure.objects.filter(source=source).count()
