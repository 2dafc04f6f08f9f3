"""Apply a saved rule to stored unmapped events, each at most once, and deliver the usage.

The job walks the unmapped Kana deliveries in id order. For each chunk, in ONE transaction, it
turns the matching rows from skipped into pending (conditionally: only rows still skipped as
unmapped), and saves its cursor and counters on the Job. A worker killed midway therefore
resumes after the last committed chunk, and a row can be moved to pending only once however
often the job runs. The usage is then sent by the delivery engine like any other delivery.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from destinations.connectors.kana.connector import UNMAPPED, usage_delta
from destinations.connectors.kana.unmapped import rule_scope, scan
from destinations.delivery.contract import Skip
from destinations.delivery.enqueue import enqueue_deliveries
from destinations.delivery.routing import DESTINATION_CACHE_SECONDS
from destinations.models import Delivery, DeliveryStatus, Job, MappingRule


def reprocess(job: Job) -> None:
    rule = MappingRule.objects.select_related("destination").get(pk=job.params["rule_id"])
    counters: dict[str, Any] = {"scanned": 0, "matched": 0, "cursor": 0, **job.counters}
    run_pass(job, rule, counters)
    # Events stored while ingest still used its cached rule list were marked unmapped after
    # the scan passed them: one more pass, once every cache has the rule, catches them.
    settled = rule.updated_at + timedelta(seconds=DESTINATION_CACHE_SECONDS + 0.5)
    while (left := (settled - timezone.now()).total_seconds()) > 0:
        # Alive while it waits: the sweeper re-queues a job whose heartbeat goes stale.
        Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now())
        time.sleep(min(left, 0.5))
    run_pass(job, rule, counters)
    # Written even when nothing was there to scan, so the job always reports its counts.
    Job.objects.filter(pk=job.pk).update(counters=counters, heartbeat_at=timezone.now())


def run_pass(job: Job, rule: MappingRule, counters: dict[str, Any]) -> None:
    conditions = rule.all_conditions()
    for scanned, matched in scan(rule_scope(rule), conditions, after_id=counters["cursor"]):
        with transaction.atomic():
            moved = requeue(rule, matched)
            counters["scanned"] += len(scanned)
            counters["matched"] += len(moved)
            counters["cursor"] = scanned[-1]
            Job.objects.filter(pk=job.pk).update(
                counters=counters,
                done=counters["scanned"],
                total=max(job.total, counters["scanned"]),
                heartbeat_at=timezone.now(),
            )
            if moved:
                batch = {rule.destination_id: moved}
                transaction.on_commit(partial(enqueue_deliveries, batch), robust=True)


def requeue(rule: MappingRule, matched: list[tuple[int, Any]]) -> list[int]:
    """Turn matching unmapped rows into pending usage; returns the ids actually moved."""
    now = timezone.now()
    by_delta: dict[int, list[int]] = defaultdict(list)
    refused: dict[str, list[int]] = defaultdict(list)
    for pk, payload in matched:
        properties = payload.get("properties") if isinstance(payload, dict) else None
        delta = usage_delta(properties if isinstance(properties, dict) else {})
        if isinstance(delta, Skip):
            refused[delta.reason].append(pk)
        else:
            by_delta[delta].append(pk)
    moved: list[int] = []
    for delta, ids in by_delta.items():
        rows = Delivery.objects.filter(id__in=ids, status=DeliveryStatus.SKIPPED, reason=UNMAPPED)
        # Locked, so a concurrent job for another rule cannot move the same rows: PostgreSQL
        # re-checks the condition after the wait; SQLite's writers are serialised anyway.
        taken = list(rows.select_for_update().values_list("id", flat=True))
        rows.filter(id__in=taken).update(
            status=DeliveryStatus.PENDING,
            reason="",
            finished_at=None,
            plan={"featureId": rule.feature_id, "ruleId": rule.pk, "delta": delta},
            mapping_rule=rule,
            next_attempt_at=now + timedelta(seconds=settings.DELIVERY_REQUEUE_AFTER_SECONDS),
            retry_until=now + timedelta(seconds=settings.DELIVERY_RETRY_WINDOW_SECONDS),
        )
        moved.extend(taken)
    for reason, ids in refused.items():
        Delivery.objects.filter(id__in=ids, status=DeliveryStatus.SKIPPED, reason=UNMAPPED).update(
            status=DeliveryStatus.FAILED, reason=reason[:300], last_error=reason, mapping_rule=rule
        )
    return moved
