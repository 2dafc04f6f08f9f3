"""End to end with a broken worker or broker: a worker killed while sending, a broker
restarting empty, a task slower than its lease, and what a killed worker sends twice.

Each test checks the final state of every delivery and its attempt log.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from segment.analytics.client import Client as SegmentClient

from destinations.delivery import engine
from destinations.delivery.sweeper import LOST_ATTEMPT
from destinations.models import (
    FINISHED,
    AttemptOutcome,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Destination,
    Event,
    Source,
)
from destinations.standins.refiner import FakeRefiner
from tests.helpers.brokers import PrivateRedis, celery_publishing_to
from tests.helpers.refiner_deliveries import (
    attempts_of,
    delivery_for,
    explain,
    finished,
    send_batch,
)
from tests.helpers.worker import TEST_DELIVERY_ENV, StartWorker, crash, wait_until

SHORT_LEASE = {"DELIVERY_LEASE_SECONDS": TEST_DELIVERY_ENV["DELIVERY_LEASE_SECONDS"]}


# --- a worker killed while sending --------------------------------------------------------------


def test_a_delivery_in_flight_when_the_worker_is_killed_is_sent_again(
    live_server: Any,
    source: Source,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    start_worker: StartWorker,
    sdk: SegmentClient,
) -> None:
    fake_refiner.hang(300, times=1)  # the first request gets no answer before the kill
    # The first worker would wait long for that answer: only the crash ends its attempt.
    first = start_worker(DELIVERY_TIMEOUT_SECONDS="30", **SHORT_LEASE)
    sdk.identify("u-killed", {"email": "killed@example.com"})
    fake_refiner.wait_for(1, timeout=15, path="/identify-user")
    crash(first)

    second = start_worker()
    delivery = wait_until(lambda: finished("u-killed"), 20, explain(second, fake_refiner))
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.attempts == 2
    lost, delivered = attempts_of(delivery)
    assert (lost.number, lost.outcome, lost.error) == (1, AttemptOutcome.RETRY, LOST_ATTEMPT)
    assert (delivered.number, delivered.outcome, delivered.status_code) == (
        2,
        AttemptOutcome.DELIVERED,
        200,
    )
    # At least once: the unanswered request and its replacement, never more.
    requests = fake_refiner.requests_to("/identify-user")
    assert [(r.fault, r.status) for r in requests] == [("hang", None), (None, 200)]
    contact = fake_refiner.contact(id="u-killed")
    assert contact is not None and contact.email == "killed@example.com"


def test_killing_a_worker_with_hundreds_in_flight_loses_nothing(
    live_server: Any,
    source: Source,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    start_worker: StartWorker,
) -> None:
    users = [f"u-bulk-{n:03}" for n in range(200)]
    # Refiner answers nothing until the kill, and the worker would wait long for it: what the
    # worker has sent by then is in flight.
    fake_refiner.hang(300)
    first = start_worker(DELIVERY_TIMEOUT_SECONDS="30", **SHORT_LEASE)
    # Batches of 25: eight wake-ups, some sent, some claimed, some still queued at the kill.
    send_batch(source, live_server, users, upload_size=25)
    assert Event.objects.count() == Delivery.objects.count() == 200

    fake_refiner.wait_for(32, timeout=15, path="/track-event")
    crash(first)
    # Requests the worker wrote just before dying are still being read by the fake.
    time.sleep(0.3)
    fake_refiner.clear_faults()
    in_flight = fake_refiner.requests_to("/track-event")

    second = start_worker()
    describe = explain(second, fake_refiner)
    wait_until(
        lambda: Delivery.objects.filter(status=DeliveryStatus.DELIVERED).count() == 200,
        40,
        describe,
    )
    assert Delivery.objects.exclude(status=DeliveryStatus.DELIVERED).count() == 0
    assert Delivery.objects.values("event_id").distinct().count() == 200

    assert in_flight and all(r.fault == "hang" and r.status is None for r in in_flight)
    requests = fake_refiner.requests_to("/track-event")
    answered = Counter(r.body["id"] for r in requests if r.status == 200)
    assert answered == Counter(users)  # every event delivered, and answered once
    # Duplicates at Refiner: exactly the requests that were in flight at the kill.
    repeated = Counter(r.body["id"] for r in in_flight)
    assert Counter(r.body["id"] for r in requests) == answered + repeated
    assert len(requests) == 200 + len(in_flight)
    for user in repeated:
        lost, *_, delivered = attempts_of(delivery_for(user))
        assert (lost.outcome, lost.error) == (AttemptOutcome.RETRY, LOST_ATTEMPT)
        assert delivered.outcome == AttemptOutcome.DELIVERED


# --- the broker restarting empty ---------------------------------------------------------------


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis().start()
    try:
        with celery_publishing_to(server.url):
            yield server
    finally:
        server.close()


def test_a_broker_restart_loses_wake_ups_but_no_event(
    live_server: Any,
    source: Source,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    private_redis: PrivateRedis,
    start_worker: StartWorker,
    caplog: pytest.LogCaptureFixture,
    sdk: SegmentClient,
) -> None:
    users = [f"u-broker-{n:02}" for n in range(60)]
    # One delivery a second, with at most a few wake-ups prefetched: ingest outruns the worker
    # and wake-ups queue up in Redis.
    fake_refiner.hang(1.0)
    worker = start_worker(concurrency=1, CELERY_BROKER_URL=private_redis.url)
    describe = explain(worker, fake_refiner)
    accepted: list[str] = []
    failures: list[BaseException] = []

    def send(batch: list[str]) -> None:
        try:
            for user in batch:
                sdk.track(user, "Signed Up")
                accepted.append(user)
        except BaseException as error:  # reported by the test thread below
            failures.append(error)

    send(users[:30])
    sender = threading.Thread(target=send, args=(users[30:],))
    sender.start()
    try:
        wait_until(lambda: len(accepted) >= 35, 20, describe)
        queued = private_redis.queue_length()
        private_redis.shutdown()
        fake_refiner.clear_faults()
        # Ingest keeps answering 200 while the broker is down; its wake-ups fail to enqueue.
        wait_until(lambda: len(accepted) >= 45 or failures, 20, describe)
        private_redis.start()
    finally:
        sender.join(30)

    assert failures == []
    assert accepted == users
    assert queued > 0, "no wake-up was queued when Redis stopped: the outage tested nothing"
    assert any("could not enqueue deliveries" in record.getMessage() for record in caplog.records)
    assert Event.objects.count() == Delivery.objects.count() == 60

    wait_until(
        lambda: Delivery.objects.filter(status=DeliveryStatus.DELIVERED).count() == 60,
        40,
        describe,
    )
    # The database claim keeps a lost or repeated wake-up from sending anything twice.
    sent = Counter(r.body["id"] for r in fake_refiner.requests_to("/track-event"))
    assert sent == Counter(users)


# --- a task slower than its lease ---------------------------------------------------------------


def test_a_slow_destination_never_lets_a_live_workers_claim_expire(
    live_server: Any,
    source: Source,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    start_worker: StartWorker,
) -> None:
    # Refiner takes 5 s to answer each request, longer than the whole 4 s lease, and the worker
    # sends one at a time. A claim held for the length of its lease, unrenewed, would be taken
    # back by the sweeper (every 0.5 s) while its request was still waiting for the answer, and
    # sent again by another claim. The task renews the leases of the rows it holds instead.
    fake_refiner.hang(5)
    worker = start_worker(
        concurrency=2,
        DELIVERY_LEASE_SECONDS="4",
        DELIVERY_TIMEOUT_SECONDS="10",
        DELIVERY_CONCURRENCY="1",
    )
    users = [f"u-slow-{n}" for n in range(3)]
    send_batch(source, live_server, users)

    describe = explain(worker, fake_refiner)
    wait_until(lambda: Delivery.objects.filter(status__in=FINISHED).count() == 3, 60, describe)
    requests = fake_refiner.requests_to("/track-event")
    assert sorted(r.body["id"] for r in requests) == users, describe()
    for user in users:
        delivery = delivery_for(user)
        assert delivery.status == DeliveryStatus.DELIVERED
        # One claim that sent, one attempt logged: no claim was lost.
        assert delivery.attempts == 1
        [attempt] = attempts_of(delivery)
        assert (attempt.number, attempt.outcome) == (1, AttemptOutcome.DELIVERED)
        assert attempt.duration_ms >= 5000
    assert not DeliveryAttempt.objects.filter(error=LOST_ATTEMPT).exists()


# --- what a killed worker sends twice ----------------------------------------------------------


def test_a_killed_worker_sends_again_only_what_it_had_in_flight(
    live_server: Any,
    source: Source,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    start_worker: StartWorker,
) -> None:
    users = [f"u-window-{n:03}" for n in range(200)]
    # Every answer takes 0.2 s, so each task is in the middle of its 100 deliveries for seconds.
    fake_refiner.hang(0.2)
    # Two tasks at a time, each with four requests in flight. The 10 s lease is the killed
    # claims' wait before another worker may send them.
    first = start_worker(
        concurrency=2,
        DELIVERY_CONCURRENCY="4",
        DELIVERY_LEASE_SECONDS="10",
        DELIVERY_TIMEOUT_SECONDS="5",
    )
    # One request: two wake-ups of 100 deliveries each, taken by the worker's two threads.
    send_batch(source, live_server, users)
    assert Delivery.objects.count() == 200

    fake_refiner.wait_for(60, timeout=30, path="/track-event")
    crash(first)
    time.sleep(0.3)  # requests written just before the kill are still being read by the fake
    fake_refiner.clear_faults()
    sent_before_kill = len(fake_refiner.requests_to("/track-event"))
    recorded_before_kill = Delivery.objects.filter(status=DeliveryStatus.DELIVERED).count()
    assert recorded_before_kill < 200, "the worker finished before the kill: nothing was tested"

    second = start_worker()
    describe = explain(second, fake_refiner)
    wait_until(
        lambda: Delivery.objects.filter(status=DeliveryStatus.DELIVERED).count() == 200,
        60,
        describe,
    )
    requests = fake_refiner.requests_to("/track-event")
    sent = Counter(r.body["id"] for r in requests)
    assert set(sent) == set(users)  # nothing lost
    assert Counter(r.body["id"] for r in requests if r.status == 200).keys() == set(users)
    repeated = {user: n - 1 for user, n in sent.items() if n > 1}
    # A task holds at most claim_window() rows whose outcome is not written yet: its
    # DELIVERY_CONCURRENCY (4) requests in flight and 2 waiting their turn. Only those can be
    # sent twice, so with two tasks running the kill repeats at most 2 x 6 = 12 deliveries,
    # whereas a task that wrote its outcomes after all 100 had been sent repeated all it sent.
    window = engine.claim_window()
    assert window == 6
    assert sum(repeated.values()) <= 2 * window, (
        f"{sum(repeated.values())} sent twice; {sent_before_kill} sent and "
        f"{recorded_before_kill} recorded before the kill"
    )
    # What was sent twice is what the killed worker had claimed: its claims expired and were
    # sent again, each one once.
    assert set(repeated.values()) <= {1}
    for user in repeated:
        lost, delivered = attempts_of(delivery_for(user))
        assert (lost.outcome, lost.error) == (AttemptOutcome.RETRY, LOST_ATTEMPT)
        assert delivered.outcome == AttemptOutcome.DELIVERED
