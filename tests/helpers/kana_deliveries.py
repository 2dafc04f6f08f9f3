"""Sending to the fake Kana through the SDK and reading the outcome, as the Kana delivery
tests do."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from segment.analytics.client import Client as SegmentClient
from segment.analytics.request import post as sdk_post

from destinations.models import FINISHED, Delivery, DeliveryStatus, Job, Source
from destinations.standins.kana import FakeKana
from tests.helpers.worker import Worker


def composer(source: Source) -> SegmentClient:
    """The SDK with sending off: each call returns the message it would send, so several can
    go out in ONE batch request, which sync mode never does."""
    return SegmentClient(source.write_key, send=False)


def built(result: tuple[bool, dict[str, Any]]) -> dict[str, Any]:
    queued, msg = result
    assert queued
    return msg


def send_batch(source: Source, live_server: Any, batch: list[dict[str, Any]]) -> None:
    """POST /v1/batch with the SDK's own request code; it raises unless ingest answers 200."""
    sdk_post(source.write_key, live_server.url, timeout=15, batch=batch)


def kana_delivery(message_id: str) -> Delivery:
    return Delivery.objects.select_related("event").get(
        event__message_id=message_id, destination__kind="kana"
    )


def finished(message_ids: Iterable[str]) -> Callable[[], bool]:
    ids = list(message_ids)

    def check() -> bool:
        done = Delivery.objects.filter(
            event__message_id__in=ids, destination__kind="kana", status__in=FINISHED
        )
        return done.count() == len(ids)

    return check


def outcomes(delivery: Delivery) -> list[str]:
    return [attempt.outcome for attempt in delivery.attempt_log.all()]


def sent(fake: FakeKana, operation: str) -> list[dict[str, Any]]:
    """The variables of every ``operation`` request the fake received, oldest first."""
    return [request.variables for request in fake.operations_received(operation)]


def explain(worker: Worker, fake: FakeKana) -> Callable[[], str]:
    """What a timed-out wait prints: the rows, the jobs, the fake's requests, the worker log."""

    def describe() -> str:
        unsettled = Delivery.objects.exclude(
            status__in=(DeliveryStatus.DELIVERED, DeliveryStatus.SKIPPED)
        )
        rows = "\n  ".join(
            f"{d.event.message_id} ({d.event.user_id}): {d.status} attempts={d.attempts} "
            f"plan={d.plan} reason={d.reason!r}"
            for d in unsettled.select_related("event").order_by("id")[:40]
        )
        statuses = dict(Counter(Delivery.objects.values_list("status", flat=True)))
        jobs = "\n  ".join(f"job {j.pk}: {j.status} {j.counters}" for j in Job.objects.all())
        seen = "\n  ".join(r.summary() for r in fake.received[-40:])
        return (
            f"deliveries {statuses}:\n  {rows}\njobs:\n  {jobs}\nfake Kana received:\n  {seen}\n"
            f"{worker.describe()}"
        )

    return describe
