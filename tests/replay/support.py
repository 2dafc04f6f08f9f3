"""History sent through the real SDK before a Kana destination exists, and what the Kana
stand-in made of a replay of it."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from segment.analytics.client import Client as SegmentClient

from destinations.models import Delivery, DeliveryStatus, Event, Job
from destinations.standins.kana import FakeKana

START = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def send_history(sdk: SegmentClient, users: int) -> None:
    """Each user: identified with a billing id, then two usage events (deltas 1 and 2, so every
    usage event is told apart at Kana). Sent newest user first, so received order is not event
    order."""
    for n in reversed(range(users)):
        at = START + timedelta(minutes=n)
        sdk.identify(
            f"u{n}",
            {"email": f"u{n}@example.com", "billingUserId": f"cus_{n}"},
            timestamp=at,
            message_id=f"id-{n}",
        )
        for k in (1, 2):
            sdk.track(
                f"u{n}",
                "Report Exported",
                {"delta": k},
                timestamp=at + timedelta(seconds=k),
                message_id=f"tr-{n}-{k}",
            )


def answered(fake: FakeKana, operation: str) -> list[dict[str, Any]]:
    """The inputs of ``operation`` requests Kana answered (a request left hanging was not
    carried out), oldest first."""
    return [
        r.variables.get("input", {}) for r in fake.operations_received(operation) if r.status == 200
    ]


def usage_by_user(fake: FakeKana) -> Counter[tuple[str, int]]:
    return Counter((e.user_id, e.delta) for e in fake.usage_events)


def expected_usage(users: int) -> Counter[tuple[str, int]]:
    return Counter((f"u{n}", k) for n in range(users) for k in (1, 2))


def replay_rows(job: Job) -> Counter[str]:
    """How many replay rows each history event has."""
    rows = Delivery.objects.filter(replay__job=job).values_list("event__message_id", flat=True)
    return Counter(rows)


def delivered_once_each(job: Job, message_ids: list[str]) -> bool:
    rows = Delivery.objects.filter(replay__job=job)
    return (
        Counter(rows.values_list("event__message_id", flat=True)) == Counter(message_ids)
        and not rows.exclude(status=DeliveryStatus.DELIVERED).exists()
    )


def history_ids(users: int) -> list[str]:
    return [
        message_id for n in range(users) for message_id in (f"id-{n}", f"tr-{n}-1", f"tr-{n}-2")
    ]


def stored(users: int) -> bool:
    return Event.objects.filter(message_id__in=history_ids(users)).count() == users * 3
