"""Events, deliveries and attempts written straight to the database, as a day of traffic
would have left them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from destinations.models import (
    FINISHED,
    AttemptOutcome,
    Delivery,
    DeliveryAttempt,
    Destination,
    Event,
    Source,
)


def make_event(source: Source, n: int, **payload: Any) -> Event:
    now = timezone.now()
    body = {"type": "track", "userId": f"u-{n}", "event": "Report Exported", **payload}
    body["messageId"] = f"m-{n}"
    return Event.objects.create(
        source=source,
        message_id=body["messageId"],
        type=body["type"],
        user_id=body.get("userId"),
        event=body.get("event"),
        timestamp=now,
        received_at=now,
        payload=body,
    )


def seed_delivery(
    destination: Destination,
    event: Event,
    status: str,
    *,
    age: timedelta = timedelta(minutes=10),
    latency: timedelta | None = None,
    reason: str = "",
    attempts: int = 0,
) -> Delivery:
    created = timezone.now() - age
    finished: datetime | None = None
    if status in FINISHED:
        finished = created + (latency or timedelta(seconds=1))
    return Delivery.objects.create(
        event=event,
        destination=destination,
        status=status,
        created_at=created,
        received_at=created,
        retry_until=created + timedelta(hours=4),
        finished_at=finished,
        reason=reason,
        last_error=reason,
        attempts=attempts,
    )


def seed_attempt(delivery: Delivery, number: int, *, status: int = 500, body: str = "") -> None:
    DeliveryAttempt.objects.create(
        delivery=delivery,
        number=number,
        outcome=AttemptOutcome.FAILED if status < 500 else AttemptOutcome.RETRY,
        status_code=status,
        duration_ms=40 + number,
        error=f"HTTP {status} from Refiner",
        request={
            "method": "POST",
            "url": "https://api.refiner.io/v1/track-event",
            "headers": {"Authorization": "Bearer ••••7788"},
            "json": {"id": delivery.event.user_id, "event": f"attempt-{number}"},
        },
        response={"status": status, "headers": {"Content-Type": "application/json"}, "body": body},
    )
