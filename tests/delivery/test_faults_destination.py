"""End to end against a misbehaving destination: a real SDK -> ingest -> a real Celery
worker -> the fake Refiner. Transient faults are retried, then delivered; permanent refusals
fail at once, never retried.

Each test checks the final state of every delivery and its attempt log, so "delivered
eventually" is never taken on trust.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from segment.analytics.client import Client as SegmentClient

from destinations.models import (
    FINISHED,
    AttemptOutcome,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Destination,
    Source,
)
from destinations.standins.refiner import FakeRefiner
from tests.helpers.refiner_deliveries import (
    attempts_of,
    delivery_for,
    explain,
    finished,
    send_batch,
)
from tests.helpers.worker import StartWorker, wait_until

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
    sdk: SegmentClient,
) -> None:
    fake_refiner.refuse_connections()
    worker = start_worker()
    sdk.track("u-refused", "Signed Up")

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
    sdk: SegmentClient,
) -> None:
    # The backoff after a first attempt is about 0.2 s, so a retry 2 s later is Retry-After's
    # doing. (With Redis the retry would otherwise come well within a second; the filesystem
    # broker's polling alone can take that long, so it is the Redis run that tells them apart.)
    fake_refiner.rate_limit(retry_after=2, times=1)
    worker = start_worker()
    sdk.track("u-429", "Signed Up")

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
    sdk: SegmentClient,
) -> None:
    worker = start_worker()
    describe = explain(worker, fake_refiner)
    # Refiner's two answers to a key problem: 401 for a missing key, 404 for an unknown one.
    fake_refiner.reject_key(401, times=1)
    sdk.track("u-key-401", "Signed Up")
    missing = wait_until(lambda: finished("u-key-401"), 20, describe)
    fake_refiner.api_keys = {"rk_rotated"}  # the destination's key is revoked in Refiner
    sdk.track("u-key-404", "Signed Up")
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
    sdk: SegmentClient,
) -> None:
    worker = start_worker()
    describe = explain(worker, fake_refiner)
    # An anonymous visitor whose only identifier is a malformed email: Refiner's validation
    # refuses the request with 422.
    sdk.track(
        anonymous_id="anon-1", event="Signed Up", context={"traits": {"email": "not an email"}}
    )
    invalid = wait_until(
        lambda: Delivery.objects.filter(event__anonymous_id="anon-1", status__in=FINISHED).first(),
        20,
        describe,
    )
    fake_refiner.server_error(status=400, times=1)
    sdk.track("u-400", "Signed Up")
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
