"""A replay makes way for live traffic: while fresh live deliveries wait for a worker, it waits
between pages (longer each time) and sends smaller ones; once they catch up, full speed again.
Rows that wait for a reason of their own (rate limit, retry) or at a paused destination do
not hold a replay back."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from destinations.delivery.services import destination_create
from destinations.models import Delivery, DeliveryStatus, Destination, Event, Source
from destinations.replay.definition import ReplayDefinition
from destinations.replay.runner import Lane, live_lag
from destinations.replay.services import start
from destinations.standins.refiner import FakeRefiner

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def refiner(fake_refiner: FakeRefiner) -> Destination:
    return destination_create(
        kind="refiner",
        name="Refiner",
        settings_values={"base_url": fake_refiner.base_url},
        secret_values={"api_key": "rk_test"},
    )


def live_row(source: Source, destination: Destination, waited: float, **fields: object) -> Delivery:
    now = timezone.now()
    event = Event.objects.create(
        source=source,
        message_id=f"m{Event.objects.count()}",
        type="track",
        timestamp=now,
        received_at=now,
        payload={"type": "track"},
    )
    return Delivery.objects.create(
        event=event,
        destination=destination,
        received_at=now - timedelta(seconds=waited),
        retry_until=now + timedelta(hours=1),
        **fields,
    )


def test_fresh_live_rows_waiting_make_the_replay_wait_and_shrink_its_pages(
    refiner: Destination, source: Source
) -> None:
    row = live_row(source, refiner, waited=2.0)
    assert live_lag() >= 2.0
    replay = start(refiner, ReplayDefinition(until=timezone.now()), actor=None)
    lane = Lane(replay, replay.lane_rows.get(), threading.Event())
    assert lane.make_way_for_live_traffic()
    first = lane.backoff
    assert lane.make_way_for_live_traffic() and lane.backoff == 2 * first
    assert lane.page_size() < 500

    Delivery.objects.filter(pk=row.pk).update(status=DeliveryStatus.DELIVERED)
    assert live_lag() == 0.0
    while lane.backoff:
        assert not lane.make_way_for_live_traffic()
    assert lane.page_size() == 500


def test_rows_waiting_for_a_reason_or_a_paused_destination_do_not_count(
    refiner: Destination, source: Source
) -> None:
    live_row(source, refiner, waited=5.0, reason="held back by the rate limit")
    live_row(source, refiner, waited=5.0, status=DeliveryStatus.RETRYING, reason="timeout")
    live_row(source, refiner, waited=5.0, status=DeliveryStatus.SENDING)
    assert live_lag() == 0.0
    live_row(source, refiner, waited=5.0)
    assert live_lag() >= 5.0
    Destination.objects.filter(pk=refiner.pk).update(paused_at=timezone.now())
    assert live_lag() == 0.0
