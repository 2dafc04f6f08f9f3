"""Traffic seeded at chosen ages, destinations that send nowhere, and the Overview page as
tests read it."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

from django.test import Client
from django.urls import reverse
from django.utils import timezone

from destinations.delivery.services import destination_create
from destinations.models import Delivery, Destination, Event, Source

NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing is sent in these tests


def refiner(name: str = "Refiner") -> Destination:
    return destination_create(
        kind="refiner",
        name=name,
        settings_values={"base_url": f"{NOWHERE}/v1"},
        secret_values={"api_key": "rk_test"},
    )


def kana(name: str = "Kana") -> Destination:
    return destination_create(
        kind="kana",
        name=name,
        settings_values={"api_url": f"{NOWHERE}/graphql"},
        secret_values={"api_key": "prv_test"},
    )


class Seeder:
    """Events and their deliveries, created at a chosen age."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.count = 0
        self.now = timezone.now()

    def event(self, age: timedelta, **payload: Any) -> Event:
        self.count += 1
        received = self.now - age
        body = {"type": "track", "userId": f"u-{self.count}", "event": "Report Exported"}
        body.update(payload, messageId=f"m-{self.count}")
        return Event.objects.create(
            source=self.source,
            message_id=body["messageId"],
            type=body["type"],
            user_id=body.get("userId"),
            event=body.get("event"),
            timestamp=received,
            received_at=received,
            payload=body,
        )

    def delivery(
        self, destination: Destination, status: str, age: timedelta, reason: str = ""
    ) -> Delivery:
        event = self.event(age)
        created = event.received_at
        finished = created + timedelta(seconds=1) if status in ("delivered", "failed") else None
        if status == "skipped":
            finished = created
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
        )


def overview_page(client: Client, window: str = "24h") -> Any:
    return client.get(f"{reverse('home')}?window={window}")


def chart_data(response: Any) -> dict[str, Any]:
    found = re.search(
        r'<script id="overview-chart-data" type="application/json">(.*?)</script>',
        response.content.decode(),
        re.S,
    )
    assert found, "the chart data block is missing"
    data: dict[str, Any] = json.loads(found.group(1))
    return data
