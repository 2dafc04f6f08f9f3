"""Retroactive reprocessing with a real worker: a new rule delivers stored unmapped events
once, and a job killed midway resumes and counts each event once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from django.utils import timezone

from destinations.connectors.kana.rules import rule_save
from destinations.connectors.kana.unmapped import SCAN_CHUNK, unmapped_deliveries
from destinations.delivery.services import destination_resume
from destinations.ingest.store import store_messages
from destinations.messages.message import Message, validate_message
from destinations.models import Delivery, DeliveryStatus, Destination, Job, JobStatus, Source
from destinations.standins.kana import FakeKana
from tests.helpers.kana_deliveries import built, composer, explain, send_batch
from tests.helpers.worker import StartWorker, crash, wait_until

# For the tests sending hundreds of usage events at once, on top of PATIENT (``worker_env``):
# one request at a time per task. The fake Kana is a small threaded server whose listen backlog
# (socketserver's default, 5) resets connections when dozens arrive together.
STEADY_DELIVERY = {"DELIVERY_CONCURRENCY": "1"}


def job_done(job: Job) -> Callable[[], bool]:
    return lambda: Job.objects.get(pk=job.pk).status == JobStatus.DONE


# --- retroactive reprocessing ------------------------------------------------------------------

EXPORTS_RULE: dict[str, Any] = {
    "event_name": "Report Exported",
    "conditions": [{"path": "properties.object.name", "op": "equals", "value": "invoice"}],
    "feature_id": "invoices",
}


def test_a_new_rule_delivers_stored_unmapped_events_once(
    live_server: Any,
    source: Source,
    kana_destination: Destination,
    fake_kana: FakeKana,
    start_worker: StartWorker,
) -> None:
    worker = start_worker(**STEADY_DELIVERY)
    users = [f"u-{n}" for n in range(5)]
    fake_kana.add_feature("invoices", "Invoices")
    for user in users:
        fake_kana.add_user(user)
    compose = composer(source)
    expected: Counter[str] = Counter()
    events = []
    for n in range(300):
        user, invoice = users[n % 5], n % 3 == 0
        expected[user] += invoice
        name = "invoice" if invoice else "memo"
        properties = {"object": {"name": name}}
        events.append(built(compose.track(user, "Report Exported", properties, message_id=f"e{n}")))
    for start in range(0, len(events), 100):
        send_batch(source, live_server, events[start : start + 100])
    assert unmapped_deliveries(kana_destination).count() == 300
    matched = sum(expected.values())
    assert matched == 100

    rule, job = rule_save(destination=kana_destination, **EXPORTS_RULE)
    # The job's scope (its total, counted when the rule is saved) is the unmapped rows the
    # rule could match: all 300 exports, or fewer where the database narrows by the values.
    assert job is not None and matched <= job.total <= 300
    describe = explain(worker, fake_kana)
    wait_until(job_done(job), 30, describe)
    by_rule = Delivery.objects.filter(mapping_rule=rule)
    wait_until(
        lambda: by_rule.filter(status=DeliveryStatus.DELIVERED).count() == matched, 30, describe
    )

    job.refresh_from_db()
    assert (job.counters["scanned"], job.counters["matched"]) == (job.total, matched)
    assert by_rule.count() == matched
    assert set(by_rule.values_list("attempts", flat=True)) == {1}
    assert {tuple(sorted(d.plan.items())) for d in by_rule} == {
        (("delta", 1), ("featureId", "invoices"), ("ruleId", rule.pk))
    }
    assert unmapped_deliveries(kana_destination).count() == 300 - matched
    assert {u: fake_kana.usage(u, "invoices") for u in users} == dict(expected)
    assert len(fake_kana.usage_events) == matched
    assert len(fake_kana.operations_received("recordUsage")) == matched

    # Saving the rule again starts another job: every event it matches is already mapped.
    _, again = rule_save(destination=kana_destination, rule=rule, **EXPORTS_RULE)
    assert again is not None
    wait_until(job_done(again), 30, describe)
    again.refresh_from_db()
    assert (again.counters["scanned"], again.counters["matched"]) == (again.total, 0)
    assert by_rule.count() == matched
    assert len(fake_kana.operations_received("recordUsage")) == matched


def store_unmapped_exports(source: Source, count: int, users: list[str]) -> Counter[str]:
    """Store ``count`` unmapped exports the way ingest does, without HTTP (fast enough for
    thousands); every 23rd is an invoice. Returns the invoices per user, counted here rather
    than by the app's condition code."""
    now = timezone.now()
    invoices: Counter[str] = Counter()
    pending: list[Message] = []
    for n in range(count):
        user, invoice = users[n % len(users)], n % 23 == 0
        invoices[user] += invoice
        item = {
            "type": "track",
            "userId": user,
            "event": "Report Exported",
            "messageId": f"bulk-{n}",
            "properties": {"object": {"name": "invoice" if invoice else "memo"}, "rows": n},
        }
        pending.append(validate_message(item, call_type=None, received_at=now))
        if len(pending) == 2000 or n == count - 1:
            store_messages(source_id=source.pk, messages=pending, received_at=now)
            pending = []
    return invoices


def test_reprocessing_killed_midway_resumes_and_counts_each_event_once(
    source: Source,
    kana_destination: Destination,
    fake_kana: FakeKana,
    start_worker: StartWorker,
) -> None:
    users = [f"u-{n}" for n in range(10)]
    fake_kana.add_feature("invoices", "Invoices")
    for user in users:
        fake_kana.add_user(user)
    # More than one scan chunk, so the worker can die with a chunk committed and more to go.
    total = 4 * SCAN_CHUNK
    expected = store_unmapped_exports(source, total, users)
    matched = sum(expected.values())
    scope = unmapped_deliveries(kana_destination).order_by("id")
    assert scope.count() == total
    first_chunk_end = scope.values_list("id", flat=True)[SCAN_CHUNK - 1]
    # Kana's recordUsage has no idempotency key: a worker killed during a send can record that
    # usage twice when the delivery is retried. That is delivery's at-least-once, not this
    # job's; hold sending (the destination is paused) so only the job is tested here.
    Destination.objects.filter(pk=kana_destination.pk).update(
        paused_at=timezone.now(), paused_reason="held while the job is killed"
    )

    first = start_worker()
    # "contains" is checked in Python on every row, never narrowed in SQL: the job walks all
    # the unmapped rows, chunk by chunk, on both backends.
    rule, job = rule_save(
        destination=kana_destination,
        event_name="Report Exported",
        conditions=[{"path": "properties.object.name", "op": "contains", "value": "invoice"}],
        feature_id="invoices",
    )
    assert job is not None and job.total == total

    def midway() -> Job | None:
        current = Job.objects.get(pk=job.pk)
        cursor = current.counters.get("cursor", 0)
        return (
            current if current.status == JobStatus.RUNNING and cursor >= first_chunk_end else None
        )

    wait_until(midway, 60, first.describe)
    crash(first)
    killed = Job.objects.get(pk=job.pk)
    assert killed.status == JobStatus.RUNNING
    assert killed.counters["cursor"] >= first_chunk_end

    # The sweeper of a new worker finds the job's heartbeat stale and queues it again.
    # The stale age must exceed the job's longest silence (the wait of up to 2.5 s between its
    # passes, or one chunk on a busy machine): with less, the sweeper would also re-queue the
    # live job, and it would run twice at once.
    second = start_worker(JOB_STALE_SECONDS="5", **STEADY_DELIVERY)
    describe = explain(second, fake_kana)
    wait_until(job_done(job), 60, describe)
    job.refresh_from_db()
    # Resumed from its cursor: every unmapped row scanned once (a restart from the beginning
    # would scan the rows still unmapped again), and each match counted once.
    assert job.counters["scanned"] == total
    assert job.counters["matched"] == matched
    by_rule = Delivery.objects.filter(mapping_rule=rule)
    assert by_rule.count() == matched
    assert set(by_rule.values_list("status", flat=True)) == {DeliveryStatus.PENDING}
    assert unmapped_deliveries(kana_destination).count() == total - matched
    assert fake_kana.received == []

    destination_resume(kana_destination)
    delivered = by_rule.filter(status=DeliveryStatus.DELIVERED)
    wait_until(lambda: delivered.count() == matched, 60, describe)
    assert set(by_rule.values_list("attempts", flat=True)) == {1}
    assert {u: fake_kana.usage(u, "invoices") for u in users} == dict(expected)
    assert len(fake_kana.usage_events) == matched
    assert len(fake_kana.operations_received("recordUsage")) == matched
