"""End to end: what is sent, and when. Routing by the integrations object and filters, the
retry window, the breaker, and the per-destination rate limit, with a real worker and the
fake Refiner.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from segment.analytics.client import Client as SegmentClient

from destinations.delivery import engine
from destinations.delivery.routing import forget_cached_destinations
from destinations.delivery.services import destination_resume
from destinations.delivery.sweeper import sweep
from destinations.models import (
    FINISHED,
    WAITING,
    AttemptOutcome,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Destination,
    Event,
    Source,
)
from destinations.standins.refiner import FakeRefiner
from tests.helpers.ingest import IngestPost
from tests.helpers.refiner_deliveries import attempts_of, delivery_for, explain, finished
from tests.helpers.worker import StartWorker, wait_until

# --- routing: integrations object and destination filters --------------------------------------


def test_the_integrations_object_and_filters_decide_what_refiner_gets(
    live_server: Any,
    source: Source,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    start_worker: StartWorker,
    sdk: SegmentClient,
) -> None:
    refiner_destination.event_filters = [[{"path": "event", "op": "equals", "value": "Noise"}]]
    refiner_destination.save(update_fields=["event_filters"])
    forget_cached_destinations()  # routing caches destinations per process for 2 s
    worker = start_worker()
    sdk.track("u-refiner-off", "Signed Up", integrations={"Refiner": False})
    sdk.track("u-only-refiner", "Signed Up", integrations={"All": False, "Refiner": True})
    sdk.track("u-all-off", "Signed Up", integrations={"All": False})
    sdk.track("u-noise", "Noise")
    sdk.track("u-signal", "Signal")

    assert Event.objects.count() == 5  # every event is kept, routed or not
    describe = explain(worker, fake_refiner)
    wanted = Delivery.objects.filter(event__user_id__in=["u-only-refiner", "u-signal"])
    wait_until(lambda: wanted.filter(status__in=FINISHED).count() == 2, 20, describe)
    assert set(wanted.values_list("status", flat=True)) == {DeliveryStatus.DELIVERED}
    routed = Delivery.objects.order_by("id").values_list("event__user_id", flat=True)
    assert list(routed) == ["u-only-refiner", "u-signal"]
    assert sorted((r.body["id"], r.body["event"]) for r in fake_refiner.received) == [
        ("u-only-refiner", "Signed Up"),
        ("u-signal", "Signal"),
    ]


# --- retry window -----------------------------------------------------------------------------


def test_a_destination_that_keeps_failing_is_given_up_after_the_retry_window(
    live_server: Any,
    source: Source,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    start_worker: StartWorker,
    sdk: SegmentClient,
) -> None:
    fake_refiner.server_error()
    worker = start_worker(DELIVERY_RETRY_WINDOW_SECONDS="3")
    sdk.track("u-window", "Signed Up")

    delivery = wait_until(lambda: finished("u-window"), 20, explain(worker, fake_refiner))
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.retry_until - delivery.received_at == timedelta(seconds=3)
    assert delivery.reason.startswith(f"gave up after {delivery.attempts} attempts")
    assert delivery.reason.endswith("HTTP 500 from Refiner: Server Error")
    log = attempts_of(delivery)
    assert len(log) == delivery.attempts >= 2
    assert [a.outcome for a in log] == [AttemptOutcome.RETRY] * (len(log) - 1) + [
        AttemptOutcome.FAILED
    ]
    assert {(a.status_code, a.error) for a in log} == {(500, "HTTP 500 from Refiner: Server Error")}
    assert len(fake_refiner.requests_to("/track-event")) == delivery.attempts


def test_the_attempt_that_exhausts_the_retry_window_is_logged_as_failed(
    post_ingest: IngestPost,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    settings: Any,
) -> None:
    settings.DELIVERY_BACKOFF_BASE_SECONDS = 0.2
    fake_refiner.server_error()
    post_ingest("track", {"userId": "u-last", "event": "Signed Up"})
    # The window closed before the first attempt: its failure is the end of the delivery.
    Delivery.objects.update(retry_until=timezone.now())
    # Sent from this process: the question is only what record() writes for the attempt.
    engine.deliver(list(Delivery.objects.values_list("id", flat=True)))

    delivery = delivery_for("u-last")
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.reason.startswith("gave up after 1 attempts")
    [attempt] = attempts_of(delivery)
    assert attempt.outcome == AttemptOutcome.FAILED


def test_a_stray_wake_up_does_not_retry_before_retry_after(
    post_ingest: IngestPost, refiner_destination: Destination, fake_refiner: FakeRefiner
) -> None:
    fake_refiner.rate_limit(retry_after=30, times=1)
    post_ingest("track", {"userId": "u-early", "event": "Signed Up"})
    ids = list(Delivery.objects.values_list("id", flat=True))
    engine.deliver(ids)  # 429: the next attempt is due in 30 s
    delivery = delivery_for("u-early")
    assert delivery.status == DeliveryStatus.RETRYING
    assert delivery.next_attempt_at - timezone.now() > timedelta(seconds=25)

    # A second wake-up for the same row arrives now, as a re-queued or duplicated one can.
    engine.deliver(ids)
    assert len(fake_refiner.received) == 1
    assert delivery_for("u-early").status == DeliveryStatus.RETRYING


# --- the breaker ------------------------------------------------------------------------------


def test_the_breaker_pauses_a_failing_destination_until_resumed(
    live_server: Any,
    source: Source,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    start_worker: StartWorker,
    sdk: SegmentClient,
) -> None:
    fake_refiner.server_error()
    worker = start_worker(DELIVERY_BREAKER_FAILURES="3", DELIVERY_BREAKER_SECONDS="0")
    describe = explain(worker, fake_refiner)
    for n in range(3):  # three first attempts fail: enough to trip the breaker
        sdk.track(f"u-breaker-{n}", "Signed Up")

    paused = wait_until(
        lambda: (
            Destination.objects.filter(pk=refiner_destination.pk, paused_at__isnull=False)
            .values_list("paused_reason", flat=True)
            .first()
        ),
        20,
        describe,
    )
    assert paused.startswith("Paused after 3+ failures in a row")
    assert paused.endswith("Last error: HTTP 500 from Refiner: Server Error")
    wait_until(
        lambda: not Delivery.objects.filter(status=DeliveryStatus.SENDING).exists(), 10, describe
    )
    sent_when_paused = len(fake_refiner.received)
    assert sent_when_paused >= 3
    # Paused, the deliveries wait instead of failing, and nothing picks them up even when due:
    # the sweeper does not wake them and a stray wake-up claims nothing.
    waiting = list(Delivery.objects.values_list("id", "status"))
    assert {status for _, status in waiting} <= set(WAITING)
    Delivery.objects.update(next_attempt_at=timezone.now())
    assert sweep() == 0
    assert engine.deliver([pk for pk, _ in waiting]).claimed == 0
    assert len(fake_refiner.received) == sent_when_paused

    fake_refiner.clear_faults()
    assert destination_resume(refiner_destination) == 3
    wait_until(
        lambda: Delivery.objects.filter(status=DeliveryStatus.DELIVERED).count() == 3,
        20,
        describe,
    )
    destination = Destination.objects.get(pk=refiner_destination.pk)
    assert destination.paused_at is None and destination.consecutive_failures == 0
    assert destination.last_success_at is not None
    assert len(fake_refiner.received) == sent_when_paused + 3


# --- the per-destination rate limit -----------------------------------------------------------


def minute_window_end(moment: float) -> datetime:
    return datetime.fromtimestamp(moment - moment % 60 + 60, tz=timezone.get_current_timezone())


def test_the_per_destination_rate_limit_holds_the_rest_for_the_next_minute(
    live_server: Any,
    source: Source,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    start_worker: StartWorker,
    sdk: SegmentClient,
) -> None:
    refiner_destination.rate_limit_per_minute = 5
    refiner_destination.save(update_fields=["rate_limit_per_minute"])
    worker = start_worker()
    describe = explain(worker, fake_refiner)
    # The limit counts per wall-clock minute: all eight must be sent within one of them.
    if time.time() % 60 > 50:
        time.sleep(60.5 - time.time() % 60)
    window_end = minute_window_end(time.time())
    for n in range(8):
        sdk.track(f"u-limited-{n}", "Signed Up")

    def settled() -> bool:
        delivered = Delivery.objects.filter(status=DeliveryStatus.DELIVERED).count()
        held = Delivery.objects.filter(status__in=WAITING, next_attempt_at__gte=window_end)
        return delivered == 5 and held.count() == 3

    wait_until(settled, 20, describe)
    assert minute_window_end(time.time()) == window_end, "the minute turned during the test"
    held = list(Delivery.objects.filter(status__in=WAITING))
    assert len(held) == 3
    for delivery in held:
        # Held back is not an attempt: nothing was sent, nothing logged, nothing counted.
        assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 0
        assert window_end <= delivery.next_attempt_at <= window_end + timedelta(seconds=5)
        assert not delivery.attempt_log.exists()
    assert DeliveryAttempt.objects.count() == 5
    assert len(fake_refiner.requests_to("/track-event")) == 5
