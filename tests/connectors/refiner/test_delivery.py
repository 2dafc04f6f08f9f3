"""End to end: a real SDK -> ingest -> a real Celery worker -> the fake Refiner over HTTP."""

from __future__ import annotations

from typing import Any

from segment.analytics.client import Client as SegmentClient

from destinations.models import FINISHED, Delivery, DeliveryStatus, Destination, Source
from destinations.standins.refiner import FakeRefiner
from tests.helpers.worker import Worker, wait_until


def deliveries_finished(count: int) -> bool:
    finished = Delivery.objects.filter(status__in=FINISHED)
    return finished.count() >= count


def test_each_call_type_reaches_refiner_as_documented(
    live_server: Any,
    source: Source,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    worker: Worker,
    sdk: SegmentClient,
) -> None:
    sdk.identify(
        "u-1",
        {"email": "Ada@Example.com", "plan": "pro", "address": {"city": "Oslo"}, "vip_users": True},
    )
    sdk.group("u-1", "acct-1", {"name": "Initech", "employees": 40})
    sdk.track("u-1", "Report Exported", {"format": "csv"})
    sdk.page("u-1", "Docs", "Getting started", {"url": "https://example.com/docs"})

    wait_until(lambda: deliveries_finished(4), 20, worker.describe)
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.DELIVERED}

    # Separate requests become separate tasks: they reach Refiner in no particular order.
    bodies = [r.body for r in fake_refiner.requests_to("/identify-user")]
    [identify] = [r for r in fake_refiner.requests_to("/identify-user") if "plan" in r.body]
    assert identify.body == {
        "id": "u-1",
        "email": "Ada@Example.com",
        "plan": "pro",
        "address_city": "Oslo",
        "vip_users": True,
    }
    assert identify.header("Authorization") == "Bearer rk_test"
    group = {"id": "u-1", "account": {"id": "acct-1", "name": "Initech", "employees": 40}}
    assert group in bodies
    # The page call is a ping: the identifier alone, no page name or URL.
    assert {"id": "u-1"} in bodies
    assert len(bodies) == 3
    [track] = fake_refiner.requests_to("/track-event")
    assert track.body == {"id": "u-1", "event": "Report Exported"}
    assert fake_refiner.contact(id="u-1") is not None


def test_anonymous_event_is_skipped_with_the_reason(
    live_server: Any,
    source: Source,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    worker: Worker,
    sdk: SegmentClient,
) -> None:
    sdk.track(anonymous_id="anon-1", event="Viewed Pricing")
    wait_until(lambda: deliveries_finished(1), 20, worker.describe)
    delivery = Delivery.objects.get()
    assert delivery.status == DeliveryStatus.SKIPPED
    assert delivery.reason == "no userId or email: Refiner cannot identify this user"
    assert fake_refiner.received == []


def test_transient_failures_are_retried_until_delivered(
    live_server: Any,
    source: Source,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    worker: Worker,
    sdk: SegmentClient,
) -> None:
    fake_refiner.server_error(times=1, path="/track-event")
    fake_refiner.rate_limit(times=1, retry_after=1, path="/track-event")
    sdk.track("u-2", "Signed Up")
    wait_until(lambda: deliveries_finished(1), 20, worker.describe)
    delivery = Delivery.objects.get()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert [a.outcome for a in delivery.attempt_log.all()] == ["retry", "retry", "delivered"]
    first, second, _ = delivery.attempt_log.all()
    assert first.status_code == 500 and first.response is not None
    assert second.status_code == 429
    assert first.request is not None
    assert first.request["headers"]["Authorization"] == "Bearer ••••"
    statuses = [r.status for r in fake_refiner.requests_to("/track-event")]
    assert statuses == [500, 429, 200]
