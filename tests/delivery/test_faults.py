"""End to end under faults: a real SDK -> ingest -> a real Celery worker -> the fake Refiner.

Each test breaks one thing (the destination, the worker, the broker) and checks the final state
of every delivery and its attempt log, so "delivered eventually" is never taken on trust.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from segment.analytics.client import Client as SegmentClient

from destinations.delivery import engine
from destinations.delivery.routing import forget_cached_destinations
from destinations.delivery.services import destination_resume
from destinations.delivery.sweeper import LOST_ATTEMPT, sweep
from destinations.models import (
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
from tests.helpers.brokers import PrivateRedis, celery_publishing_to
from tests.helpers.worker import TEST_DELIVERY_ENV, Worker, wait_until

StartWorker = Callable[..., Worker]
FINISHED = (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED)
# Workers here hold their claims for 30 s, not the 4 s of TEST_DELIVERY_ENV: on a loaded machine
# (or a busy database) a claim can outlive 4 s while its worker is alive, and such a claim is
# sent again by design, which would blur the attempt counts these tests check. Only a worker
# that is going to be killed takes the short lease, so that its claims are recovered quickly.
LEASE = {"DELIVERY_LEASE_SECONDS": "30"}
SHORT_LEASE = {"DELIVERY_LEASE_SECONDS": TEST_DELIVERY_ENV["DELIVERY_LEASE_SECONDS"]}


@pytest.fixture
def start_worker(transactional_db: None, settings: Any) -> Iterator[StartWorker]:
    """Start workers with TEST_DELIVERY_ENV plus overrides. The same DELIVERY_* values go into
    this process's settings too: ingest (in the live server thread) computes each delivery's
    retry window, and operator services here sweep and resume with them."""
    started: list[Worker] = []

    def start(concurrency: int = 4, **overrides: str) -> Worker:
        overrides = {**LEASE, **overrides}
        for name, value in {**TEST_DELIVERY_ENV, **overrides}.items():
            if name.startswith("DELIVERY_"):
                setattr(settings, name, float(value) if "." in value else int(value))
        worker = Worker(env=overrides, concurrency=concurrency)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()


def crash(worker: Worker) -> None:
    """SIGKILL the worker and the beat process it forked, as when its machine dies. Killing only
    the worker's own process would leave its embedded beat running, orphaned, still sending
    sweeps to the broker after the test."""
    assert worker.process is not None
    tasks = Path(f"/proc/{worker.process.pid}/task")
    children = [int(pid) for f in tasks.glob("*/children") for pid in f.read_text().split()]
    worker.kill()  # first, so the worker never sees its beat go
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def sdk(source: Source, live_server: Any) -> SegmentClient:
    """The SDK as an app embeds it, pointed at ingest; sync mode raises unless ingest said 200."""
    return SegmentClient(source.write_key, host=live_server.url, sync_mode=True, max_retries=0)


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


# --- transient faults: retried, then delivered ------------------------------------------------


# What each fault does to the attempt it spoils: (status code, error), by the fake's label.
TRANSIENT = {
    "status 500": (500, "HTTP 500 from Refiner: Server Error"),
    "hang": (None, "timeout: no answer from Refiner in 2 s"),
    "drop": (None, "connection failed: closed without an answer"),
}


def test_transient_faults_are_retried_then_delivered(
    live_server: Any,
    source: Source,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    start_worker: StartWorker,
) -> None:
    fake_refiner.server_error(times=1)
    fake_refiner.hang(3.5, times=1)  # longer than DELIVERY_TIMEOUT_SECONDS (2 s)
    fake_refiner.drop_connection(times=1)
    worker = start_worker()
    users = [f"u-transient-{n}" for n in range(len(TRANSIENT))]
    # One ingest request, so one wake-up and one claim: the first attempts go out together and
    # each takes one of the faults, whichever arrives first; the retries find none left.
    send_batch(source, live_server, users)
    ingests = set(Delivery.objects.values_list("received_at", flat=True))
    assert len(ingests) == 1, "the SDK split the batch: the faults may not land one per event"

    describe = explain(worker, fake_refiner)
    wait_until(lambda: Delivery.objects.filter(status__in=FINISHED).count() == 3, 20, describe)
    labels: list[str] = []
    for user in users:
        delivery = delivery_for(user)
        assert delivery.status == DeliveryStatus.DELIVERED, describe()
        assert delivery.attempts == 2
        assert delivery.reason == "" and delivery.last_error == ""
        spoiled, answered = [r for r in fake_refiner.received if r.body["id"] == user]
        assert (answered.fault, answered.status) == (None, 200)
        label = spoiled.fault or "(none)"
        labels.append(label)
        first, second = attempts_of(delivery)
        assert (first.number, first.outcome) == (1, AttemptOutcome.RETRY)
        assert (first.status_code, first.error) == TRANSIENT.get(label)
        assert first.request is not None
        assert first.request["json"] == {"id": user, "event": "Signed Up"}
        assert (second.number, second.outcome, second.status_code, second.error) == (
            2,
            AttemptOutcome.DELIVERED,
            200,
            "",
        )
    assert sorted(labels) == sorted(TRANSIENT)


def test_connection_refused_is_retried_until_refiner_listens_again(
    live_server: Any,
    source: Source,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    start_worker: StartWorker,
) -> None:
    fake_refiner.refuse_connections()
    worker = start_worker()
    sdk(source, live_server).track("u-refused", "Signed Up")

    describe = explain(worker, fake_refiner)
    # Attempt rows, not the attempts counter: that counts a claim still being sent.
    logged = DeliveryAttempt.objects.filter(delivery__event__user_id="u-refused")
    wait_until(lambda: logged.count() >= 2, 20, describe)
    fake_refiner.accept_connections()

    delivery = wait_until(lambda: finished("u-refused"), 20, describe)
    assert delivery.status == DeliveryStatus.DELIVERED
    *refused, delivered = attempts_of(delivery)
    assert len(refused) >= 2
    assert {(a.outcome, a.status_code, a.error) for a in refused} == {
        (AttemptOutcome.RETRY, None, "connection failed: connection refused")
    }, describe()
    assert (delivered.outcome, delivered.status_code) == (AttemptOutcome.DELIVERED, 200)
    assert [a.number for a in [*refused, delivered]] == list(range(1, delivery.attempts + 1))
    # Nothing reached Refiner while it refused connections.
    assert [(r.path, r.status) for r in fake_refiner.received] == [("/track-event", 200)]


def test_429_is_retried_no_sooner_than_retry_after(
    live_server: Any,
    source: Source,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    start_worker: StartWorker,
) -> None:
    # The backoff after a first attempt is about 0.2 s, so a retry 2 s later is Retry-After's
    # doing. (With Redis the retry would otherwise come well within a second; the filesystem
    # broker's polling alone can take that long, so it is the Redis run that tells them apart.)
    fake_refiner.rate_limit(retry_after=2, times=1)
    worker = start_worker()
    sdk(source, live_server).track("u-429", "Signed Up")

    delivery = wait_until(lambda: finished("u-429"), 20, explain(worker, fake_refiner))
    assert delivery.status == DeliveryStatus.DELIVERED
    limited, delivered = attempts_of(delivery)
    assert (limited.outcome, limited.status_code) == (AttemptOutcome.RETRY, 429)
    assert limited.error == "HTTP 429 from Refiner: Too Many Attempts."
    assert limited.response is not None and limited.response["headers"]["Retry-After"] == "2"
    answered_at = limited.started_at + timedelta(milliseconds=limited.duration_ms)
    assert delivered.started_at - answered_at >= timedelta(seconds=2)
    first, second = fake_refiner.requests_to("/track-event")
    assert (first.status, second.status) == (429, 200)
    assert second.received_at - first.received_at >= 2.0


# --- permanent refusals: failed at once, never retried ----------------------------------------


def test_a_refused_api_key_fails_at_once_without_retries(
    live_server: Any,
    source: Source,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    start_worker: StartWorker,
) -> None:
    worker = start_worker()
    describe = explain(worker, fake_refiner)
    client = sdk(source, live_server)
    # Refiner's two answers to a key problem: 401 for a missing key, 404 for an unknown one.
    fake_refiner.reject_key(401, times=1)
    client.track("u-key-401", "Signed Up")
    missing = wait_until(lambda: finished("u-key-401"), 20, describe)
    fake_refiner.api_keys = {"rk_rotated"}  # the destination's key is revoked in Refiner
    client.track("u-key-404", "Signed Up")
    unknown = wait_until(lambda: finished("u-key-404"), 20, describe)

    for delivery, status, words in (
        (missing, 401, "No API key found in headers"),
        (unknown, 404, "API key not valid or does not exist"),
    ):
        reason = f"Refiner refused the API key (HTTP {status}): {words}"
        assert delivery.status == DeliveryStatus.FAILED
        assert delivery.reason == reason and delivery.last_status_code == status
        [attempt] = attempts_of(delivery)
        assert (attempt.number, attempt.outcome, attempt.status_code, attempt.error) == (
            1,
            AttemptOutcome.FAILED,
            status,
            reason,
        )
    # The first failure had the whole second delivery's time to be retried: it was not.
    assert delivery_for("u-key-401").attempts == 1
    assert [(r.body["id"], r.status) for r in fake_refiner.received] == [
        ("u-key-401", 401),
        ("u-key-404", 404),
    ]


def test_a_refused_payload_fails_permanently(
    live_server: Any,
    source: Source,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    start_worker: StartWorker,
) -> None:
    worker = start_worker()
    describe = explain(worker, fake_refiner)
    client = sdk(source, live_server)
    # An anonymous visitor whose only identifier is a malformed email: Refiner's validation
    # refuses the request with 422.
    client.track(
        anonymous_id="anon-1", event="Signed Up", context={"traits": {"email": "not an email"}}
    )
    invalid = wait_until(
        lambda: Delivery.objects.filter(event__anonymous_id="anon-1", status__in=FINISHED).first(),
        20,
        describe,
    )
    fake_refiner.server_error(status=400, times=1)
    client.track("u-400", "Signed Up")
    refused = wait_until(lambda: finished("u-400"), 20, describe)

    for delivery, status, body, reason in (
        (
            invalid,
            422,
            {"email": "not an email", "event": "Signed Up"},
            "HTTP 422 from Refiner: The email must be a valid email address.",
        ),
        (
            refused,
            400,
            {"id": "u-400", "event": "Signed Up"},
            "HTTP 400 from Refiner: Server Error",
        ),
    ):
        assert delivery.status == DeliveryStatus.FAILED
        assert delivery.reason == reason
        [attempt] = attempts_of(delivery)
        assert (attempt.outcome, attempt.status_code) == (AttemptOutcome.FAILED, status)
        assert attempt.request is not None and attempt.request["json"] == body
        assert attempt.response is not None and attempt.response["status"] == status
    assert [r.status for r in fake_refiner.received] == [422, 400]


# --- retry window -----------------------------------------------------------------------------


def test_a_destination_that_keeps_failing_is_given_up_after_the_retry_window(
    live_server: Any,
    source: Source,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    start_worker: StartWorker,
) -> None:
    fake_refiner.server_error()
    worker = start_worker(DELIVERY_RETRY_WINDOW_SECONDS="3")
    sdk(source, live_server).track("u-window", "Signed Up")

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
    post_ingest: Any,
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
    post_ingest: Any, refiner_destination: Destination, fake_refiner: FakeRefiner
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


# --- routing: integrations object and destination filters --------------------------------------


def test_the_integrations_object_and_filters_decide_what_refiner_gets(
    live_server: Any,
    source: Source,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    start_worker: StartWorker,
) -> None:
    refiner_destination.event_filters = [[{"path": "event", "op": "equals", "value": "Noise"}]]
    refiner_destination.save(update_fields=["event_filters"])
    forget_cached_destinations()  # routing caches destinations per process for 2 s
    worker = start_worker()
    client = sdk(source, live_server)
    client.track("u-refiner-off", "Signed Up", integrations={"Refiner": False})
    client.track("u-only-refiner", "Signed Up", integrations={"All": False, "Refiner": True})
    client.track("u-all-off", "Signed Up", integrations={"All": False})
    client.track("u-noise", "Noise")
    client.track("u-signal", "Signal")

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


# --- a worker killed while sending --------------------------------------------------------------


def test_a_delivery_in_flight_when_the_worker_is_killed_is_sent_again(
    live_server: Any,
    source: Source,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    start_worker: StartWorker,
) -> None:
    fake_refiner.hang(300, times=1)  # the first request gets no answer before the kill
    # The first worker would wait long for that answer: only the crash ends its attempt.
    first = start_worker(DELIVERY_TIMEOUT_SECONDS="30", **SHORT_LEASE)
    sdk(source, live_server).identify("u-killed", {"email": "killed@example.com"})
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
) -> None:
    users = [f"u-broker-{n:02}" for n in range(60)]
    # One delivery a second, with at most a few wake-ups prefetched: ingest outruns the worker
    # and wake-ups queue up in Redis.
    fake_refiner.hang(1.0)
    worker = start_worker(concurrency=1, CELERY_BROKER_URL=private_redis.url)
    describe = explain(worker, fake_refiner)
    client = sdk(source, live_server)
    accepted: list[str] = []
    failures: list[BaseException] = []

    def send(batch: list[str]) -> None:
        try:
            for user in batch:
                client.track(user, "Signed Up")
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


# --- the breaker ------------------------------------------------------------------------------


def test_the_breaker_pauses_a_failing_destination_until_resumed(
    live_server: Any,
    source: Source,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    start_worker: StartWorker,
) -> None:
    fake_refiner.server_error()
    worker = start_worker(DELIVERY_BREAKER_FAILURES="3", DELIVERY_BREAKER_SECONDS="0")
    describe = explain(worker, fake_refiner)
    client = sdk(source, live_server)
    for n in range(3):  # three first attempts fail: enough to trip the breaker
        client.track(f"u-breaker-{n}", "Signed Up")

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
) -> None:
    refiner_destination.rate_limit_per_minute = 5
    refiner_destination.save(update_fields=["rate_limit_per_minute"])
    worker = start_worker()
    describe = explain(worker, fake_refiner)
    # The limit counts per wall-clock minute: all eight must be sent within one of them.
    if time.time() % 60 > 50:
        time.sleep(60.5 - time.time() % 60)
    window_end = minute_window_end(time.time())
    client = sdk(source, live_server)
    for n in range(8):
        client.track(f"u-limited-{n}", "Signed Up")

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
