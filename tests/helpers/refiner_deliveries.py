"""Sending through the SDK's batching and reading deliveries to the fake Refiner, as the
delivery fault tests do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from segment.analytics.client import Client as SegmentClient

from destinations.models import FINISHED, Delivery, DeliveryAttempt, Source
from destinations.standins.refiner import FakeRefiner
from tests.helpers.worker import Worker


def send_batch(
    source: Source, live_server: Any, users: list[str], *, upload_size: int | None = None
) -> None:
    """Track one event per user through the SDK's own batching (``/v1/batch``), in requests of
    ``upload_size`` events (by default all of them in one)."""
    errors: list[Exception] = []
    client = SegmentClient(
        source.write_key,
        host=live_server.url,
        upload_size=upload_size or len(users),
        max_retries=0,
        on_error=lambda error, batch: errors.append(error),
    )
    for user in users:
        client.track(user, "Signed Up")
    client.shutdown()  # flushes the queue, then stops the SDK's thread
    assert errors == []


def delivery_for(user_id: str) -> Delivery:
    return Delivery.objects.select_related("event").get(event__user_id=user_id)


def finished(user_id: str) -> Delivery | None:
    delivery = delivery_for(user_id)
    return delivery if delivery.status in FINISHED else None


def attempts_of(delivery: Delivery) -> list[DeliveryAttempt]:
    return list(delivery.attempt_log.all())


def explain(worker: Worker, fake: FakeRefiner) -> Callable[[], str]:
    def describe() -> str:
        rows = "\n  ".join(
            f"{d.event.user_id}: {d.status} attempts={d.attempts} reason={d.reason!r}"
            for d in Delivery.objects.select_related("event").order_by("id")[:30]
        )
        seen = "\n  ".join(r.summary() for r in fake.received[-30:])
        return f"deliveries:\n  {rows}\nfake received:\n  {seen}\n{worker.describe()}"

    return describe
