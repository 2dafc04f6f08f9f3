"""Send claimed deliveries and record what happened.

A worker claims rows (``status`` pending/retrying -> sending, with a lease) inside a short
transaction, sends without holding any lock, then writes every attempt and every outcome in one
transaction. A row is only written back if it still carries this worker's lease, so a worker
that stalled past its lease cannot overwrite the outcome of the worker that took over.
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from destinations.connectors import connector_for
from destinations.connectors.base import (
    EXCERPT_CHARS,
    Connector,
    DeliveryContext,
    OutboundRequest,
    Skip,
    Verdict,
)
from destinations.delivery import ratelimit, rows
from destinations.delivery.enqueue import enqueue_deliveries
from destinations.delivery.http import PRIVATE_ADDRESS, session
from destinations.models import (
    AttemptOutcome,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Destination,
)
from destinations.webhooks import system_events

logger = logging.getLogger(__name__)

HEALTH_WRITE_SECONDS = 5
MASKED_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "webhook-signature"})
CONNECTION_ERRORS = {
    "Connection refused": "connection refused",
    "Name or service not known": "host name not found",
    "Connection reset": "connection reset",
    "RemoteDisconnected": "closed without an answer",
}


@dataclass(slots=True)
class Result:
    """What one delivery's attempt came to."""

    verdict: Verdict
    status_code: int | None = None
    duration_ms: int = 0
    skipped: bool = False
    # Not sent (held back by the rate limit, or out of time): not an attempt; waits until then.
    deferred_until: datetime | None = None
    released: bool = False  # out of time: woken again at once
    request: dict[str, Any] | None = None
    response: dict[str, Any] | None = None


@dataclass(slots=True)
class RunStats:
    claimed: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def deliver(delivery_ids: Sequence[int]) -> RunStats:
    """Claim what is still waiting among ``delivery_ids``, send it, record the outcomes."""
    stats = RunStats()
    deadline = time.monotonic() + sending_time()
    lease, claimed = claim(delivery_ids)
    stats.claimed = len(claimed)
    if not claimed:
        return stats
    by_destination: dict[int, list[Delivery]] = defaultdict(list)
    for delivery in claimed:
        by_destination[delivery.destination_id].append(delivery)
    released: dict[int, list[int]] = {}
    for destination_id, deliveries in by_destination.items():
        destination = deliveries[0].destination
        results = send_all(destination, deliveries, deadline=deadline)
        record(destination, deliveries, results, lease)
        for result in results:
            stats.outcomes[outcome_of(result)] += 1
        unsent = [d.pk for d, r in zip(deliveries, results, strict=True) if r.released]
        if unsent:
            released[destination_id] = unsent
    if released:
        enqueue_deliveries(released)
    return stats


def sending_time() -> float:
    """How long a task may go on starting deliveries. It must record every outcome before its
    lease runs out (after that the sweeper hands the rows to another worker and this worker's
    outcomes are thrown away), so it stops starting new ones in time for the slowest delivery
    (two requests, each up to the timeout) to finish; the rest go back to waiting, unsent."""
    lease = settings.DELIVERY_LEASE_SECONDS
    reserve = 2 * settings.DELIVERY_TIMEOUT_SECONDS + 10
    return max(lease - reserve, lease / 2)


def claim(delivery_ids: Sequence[int]) -> tuple[datetime, list[Delivery]]:
    """Move waiting rows to ``sending`` with a lease. The lease's exact timestamp doubles as
    this claim's token when the outcome is written back."""
    now = timezone.now()
    lease = now + timedelta(seconds=settings.DELIVERY_LEASE_SECONDS)
    with transaction.atomic():
        ids = rows.take(list(delivery_ids), now=now, lease=lease)
    if not ids:
        return lease, []
    claimed = rows.load_claimed(ids, lease)
    destinations = Destination.objects.in_bulk({d.destination_id for d in claimed})
    for delivery in claimed:
        delivery.destination = destinations[delivery.destination_id]
    return lease, claimed


def send_all(
    destination: Destination, deliveries: Sequence[Delivery], *, deadline: float
) -> list[Result]:
    connector = connector_for(destination.kind)
    config = destination.config()
    planned: list[list[OutboundRequest] | Skip] = []
    for delivery in deliveries:
        context = DeliveryContext(config=config, plan=delivery.plan, attempt=delivery.attempts)
        try:
            planned.append(connector.translate(delivery.event.payload, context))
        except Exception as exc:  # a translation bug must fail one delivery, not the batch
            logger.exception("translating delivery %s failed", delivery.pk)
            planned.append(Skip(f"could not translate the event: {exc}", failed=True))
    subjects = [p[0].subject if isinstance(p, list) and p else None for p in planned]
    allowed = ratelimit.grant(
        destination.pk,
        subjects,
        per_minute=destination.rate_limit_per_minute or connector.requests_per_minute,
        subject_per_minute=connector.subject_requests_per_minute,
    )
    results: list[Result | None] = [None] * len(deliveries)
    # A subject's deliveries go one after another in the order received (a user's identify
    # before its usage); different subjects go in parallel.
    lanes: dict[str | None, list[tuple[int, list[OutboundRequest]]]] = defaultdict(list)
    for index, plan in enumerate(planned):
        if isinstance(plan, Skip):
            results[index] = Result(Verdict.fail(plan.reason), skipped=not plan.failed)
        elif not allowed[index]:
            resume = datetime.fromtimestamp(ratelimit.window_end(), tz=UTC)
            results[index] = Result(
                Verdict.retry("held back by the rate limit"),
                # Spread over the next window's first seconds, not all at its first instant.
                deferred_until=resume + timedelta(seconds=random.uniform(0, 5)),
            )
        else:
            lanes[subjects[index] or f"#{index}"].append((index, plan))
    for index, result in send_lanes(connector, list(lanes.values()), deadline):
        results[index] = result
    return [r for r in results if r is not None]


Lane = Sequence[tuple[int, list[OutboundRequest]]]


def send_lanes(
    connector: Connector, lanes: Sequence[Lane], deadline: float
) -> list[tuple[int, Result]]:
    """Send the lanes with at most ``DELIVERY_CONCURRENCY`` requests in flight. One lane is sent
    on the task's own thread; more are taken by runners on the process's sending pool."""
    if len(lanes) <= 1:
        return [pair for lane in lanes for pair in send_lane(connector, lane, deadline)]
    queue = deque(lanes)

    def runner() -> list[tuple[int, Result]]:
        done: list[tuple[int, Result]] = []
        while True:
            try:
                lane = queue.popleft()  # deque.popleft is atomic: runners share the queue
            except IndexError:
                return done
            done.extend(send_lane(connector, lane, deadline))

    runners = min(settings.DELIVERY_CONCURRENCY, len(lanes))
    futures = [sending_pool().submit(runner) for _ in range(runners)]
    return [pair for future in futures for pair in future.result()]


def send_lane(connector: Connector, lane: Lane, deadline: float) -> list[tuple[int, Result]]:
    done: list[tuple[int, Result]] = []
    for index, plan in lane:
        if time.monotonic() >= deadline:
            out_of_time = Verdict.retry("not started before the task's time ran out")
            result = Result(out_of_time, deferred_until=timezone.now(), released=True)
        else:
            result = send_one(connector, plan)
        done.append((index, result))
    return done


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def sending_pool() -> ThreadPoolExecutor:
    """One pool per process, kept from task to task: its threads keep their HTTP sessions
    (``http.session`` is per thread), so connections to a destination stay open between tasks
    instead of being opened, and threads started, for every task. Threads are started only as
    tasks need them; each task uses at most ``DELIVERY_CONCURRENCY`` of them."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=max(64, settings.DELIVERY_CONCURRENCY * 16),
                thread_name_prefix="deliver",
            )
        return _pool


def forget_pool_after_fork() -> None:
    # A prefork child inherits the pool object but none of its threads.
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=forget_pool_after_fork)


def send_one(connector: Connector, plan: Sequence[OutboundRequest]) -> Result:
    """Send a delivery's requests in order, stopping at the first that does not succeed;
    a request whose answer asks for its fallback is replaced by the fallback requests."""
    started = time.monotonic()
    result = Result(Verdict.ok())
    for outbound in plan:
        result = send_request(connector, outbound)
        if result.verdict.use_fallback and outbound.fallback:
            result = send_one(connector, outbound.fallback)
        if not result.verdict.delivered:
            break
    result.duration_ms = int((time.monotonic() - started) * 1000)
    return result


def send_request(connector: Connector, outbound: OutboundRequest) -> Result:
    timeout = settings.DELIVERY_TIMEOUT_SECONDS
    try:
        response = session().request(
            outbound.method,
            outbound.url,
            json=outbound.json if outbound.body is None else None,
            data=outbound.body,
            headers=dict(outbound.headers),
            timeout=(min(5.0, timeout), timeout),
            allow_redirects=False,
        )
    except requests.Timeout:
        verdict = Verdict.retry(
            f"timeout: no answer from {connector.display_name} in {timeout:g} s"
        )
        return Result(verdict, request=request_sample(outbound))
    except requests.ConnectionError as exc:
        if PRIVATE_ADDRESS in str(exc):
            # A configuration problem, not an outage: retrying cannot help.
            blocked = re.search(r"([^\s(]+ \([^)]*\) " + PRIVATE_ADDRESS + r"[^'\"]*)", str(exc))
            reason = blocked.group(1) if blocked else PRIVATE_ADDRESS
            return Result(
                Verdict.fail(f"address not allowed: {reason}"), request=request_sample(outbound)
            )
        verdict = Verdict.retry(f"connection failed: {connection_reason(exc)}")
        return Result(verdict, request=request_sample(outbound))
    except requests.RequestException as exc:
        return Result(
            Verdict.fail(f"request could not be made: {exc}"), request=request_sample(outbound)
        )
    verdict = connector.classify(response, outbound)
    result = Result(verdict, status_code=response.status_code)
    if not verdict.delivered:
        result.request = request_sample(outbound)
        result.response = {
            "status": response.status_code,
            "headers": {k: v for k, v in response.headers.items() if k.lower() != "set-cookie"},
            "body": response.text[:EXCERPT_CHARS],
        }
    return result


def connection_reason(exc: requests.ConnectionError) -> str:
    """urllib3's exception text is long and varies; group failures under a few stable words."""
    text = str(exc)
    for phrase, reason in CONNECTION_ERRORS.items():
        if phrase in text:
            return reason
    return text[:200]


def request_sample(outbound: OutboundRequest) -> dict[str, Any]:
    """The request as sent, with credentials masked: samples are shown in the dashboard."""
    headers = {
        name: (mask(value) if name.lower() in MASKED_HEADERS else value)
        for name, value in outbound.headers.items()
    }
    return {
        "method": outbound.method,
        "url": outbound.url,
        "headers": headers,
        "json": outbound.json,
    }


def mask(value: str) -> str:
    scheme, _, secret = value.rpartition(" ")
    shown = f"••••{secret[-4:]}" if len(secret) > 8 else "••••"
    return f"{scheme} {shown}".strip()


def outcome_of(result: Result, delivery: Delivery | None = None) -> str:
    if delivery is not None and delivery.status == DeliveryStatus.FAILED and not result.skipped:
        # A retryable failure that used up the retry window ends the delivery: it is the
        # failed attempt, whatever the verdict said before the window was looked at.
        return AttemptOutcome.FAILED
    if result.skipped:
        return AttemptOutcome.SKIPPED
    if result.verdict.delivered:
        return AttemptOutcome.DELIVERED
    return AttemptOutcome.FAILED if result.verdict.permanent else AttemptOutcome.RETRY


def backoff_seconds(attempt: int, retry_after: float | None) -> float:
    """Randomised exponential backoff (±20 %), never sooner than the service's Retry-After."""
    base = settings.DELIVERY_BACKOFF_BASE_SECONDS * (2 ** max(0, attempt - 1))
    delay = min(base, settings.DELIVERY_BACKOFF_MAX_SECONDS) * random.uniform(0.8, 1.2)
    return max(delay, retry_after or 0.0)


# What a recorded outcome writes; ``retry_until`` is set when the row is made and never changes.
OUTCOME_FIELDS = (
    "status",
    "attempts",
    "next_attempt_at",
    "lease_expires_at",
    "finished_at",
    "last_status_code",
    "last_error",
    "reason",
)


def record(
    destination: Destination,
    deliveries: Sequence[Delivery],
    results: Sequence[Result],
    lease: datetime,
) -> None:
    now = timezone.now()
    attempts: list[DeliveryAttempt] = []
    failures = 0
    successes = 0
    last_error = ""
    failed_for_good: list[tuple[Delivery, str]] = []
    for delivery, result in zip(deliveries, results, strict=True):
        apply_result(delivery, result, now)
    with transaction.atomic():
        # Written only where this claim still holds the row; what it says of the rest (their
        # lease was taken back) is dropped, attempt and all.
        still_ours = write_outcomes(deliveries, lease)
        for delivery, result in zip(deliveries, results, strict=True):
            if delivery.pk not in still_ours:
                continue
            if delivery.status == DeliveryStatus.FAILED:
                failed_for_good.append((delivery, delivery.reason))
            if result.deferred_until is None:
                attempts.append(attempt_row(delivery, result, now))
            if result.verdict.delivered:
                successes += 1
            elif not result.skipped and result.deferred_until is None:
                failures += 1
                last_error = result.verdict.reason
        DeliveryAttempt.objects.bulk_create(attempts, batch_size=500)
        note_health(destination.pk, successes=successes, failures=failures, last_error=last_error)
    if failed_for_good:
        system_events.delivery_failed(failed_for_good)


def write_outcomes(deliveries: Sequence[Delivery], lease: datetime) -> set[int]:
    """One ``UPDATE ... WHERE id IN (...)`` per distinct set of new values (a task's rows
    nearly always share their outcome: delivered, status 200); returns the ids written."""
    groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for delivery in deliveries:
        groups[tuple(getattr(delivery, name) for name in OUTCOME_FIELDS)].append(delivery.pk)
    written: set[int] = set()
    for values, ids in groups.items():
        written.update(
            rows.write_outcome(ids, lease, dict(zip(OUTCOME_FIELDS, values, strict=True)))
        )
    return written


def apply_result(delivery: Delivery, result: Result, now: datetime) -> None:
    verdict = result.verdict
    delivery.lease_expires_at = None
    delivery.last_status_code = result.status_code
    if result.deferred_until is not None:
        # Not an attempt: give the claim's count back and wait for the next window.
        delivery.attempts -= 1
        delivery.status = (
            DeliveryStatus.PENDING if delivery.attempts == 0 else DeliveryStatus.RETRYING
        )
        delivery.next_attempt_at = result.deferred_until
        return
    if verdict.delivered:
        delivery.status = DeliveryStatus.DELIVERED
        delivery.finished_at = now
        delivery.last_error = delivery.reason = ""
        return
    delivery.last_error = verdict.reason
    if result.skipped:
        delivery.status = DeliveryStatus.SKIPPED
        delivery.reason = verdict.reason[:300]
        delivery.finished_at = now
        return
    if not verdict.permanent:
        wake = now + timedelta(seconds=backoff_seconds(delivery.attempts, verdict.retry_after))
        if wake <= delivery.retry_until:
            delivery.status = DeliveryStatus.RETRYING
            delivery.next_attempt_at = wake
            delivery.reason = verdict.reason[:300]
            return
        verdict = Verdict.fail(
            f"gave up after {delivery.attempts} attempts over the "
            f"{span(settings.DELIVERY_RETRY_WINDOW_SECONDS)} retry window: {verdict.reason}"
        )
        delivery.last_error = verdict.reason
    delivery.status = DeliveryStatus.FAILED
    delivery.reason = verdict.reason[:300]
    delivery.finished_at = now


def span(seconds: float) -> str:
    """A duration in the unit an operator would say it in: 4 h, 10 min, 3 s."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds // 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds // 60:g} min"
    return f"{seconds:g} s"


def attempt_row(delivery: Delivery, result: Result, now: datetime) -> DeliveryAttempt:
    return DeliveryAttempt(
        delivery_id=delivery.pk,
        number=delivery.attempts,
        started_at=now - timedelta(milliseconds=result.duration_ms),
        duration_ms=result.duration_ms,
        outcome=outcome_of(result, delivery),
        status_code=result.status_code,
        error="" if result.verdict.delivered else result.verdict.reason,
        request=result.request,
        response=result.response,
    )


def note_health(destination_id: int, *, successes: int, failures: int, last_error: str) -> None:
    """Health columns and the breaker: a destination that fails many times in a row, with no
    success for a while, is paused until an operator resumes it."""
    now = timezone.now()
    if successes:
        # Written at most every few seconds while all is well: every task of every worker
        # would otherwise write the same row, one after another.
        Destination.objects.filter(pk=destination_id).filter(
            Q(consecutive_failures__gt=0)
            | Q(last_success_at__isnull=True)
            | Q(last_success_at__lt=now - timedelta(seconds=HEALTH_WRITE_SECONDS))
        ).update(last_success_at=now, consecutive_failures=0)
    if not failures:
        return
    Destination.objects.filter(pk=destination_id).update(
        last_error_at=now,
        last_error=last_error[:2000],
        consecutive_failures=F("consecutive_failures") + (0 if successes else failures),
    )
    if successes:
        return
    quiet_since = now - timedelta(seconds=settings.DELIVERY_BREAKER_SECONDS)
    tripped = (
        Destination.objects.filter(
            pk=destination_id,
            paused_at__isnull=True,
            consecutive_failures__gte=settings.DELIVERY_BREAKER_FAILURES,
        )
        .exclude(last_success_at__gt=quiet_since)
        # Never succeeded: counted from when it was made, not paused in its first minutes.
        .exclude(created_at__gt=quiet_since)
        .update(
            paused_at=now,
            paused_reason=(
                f"Paused after {settings.DELIVERY_BREAKER_FAILURES}+ failures in a row with no "
                f"success for {span(settings.DELIVERY_BREAKER_SECONDS)}. Last error: "
                f"{last_error[:300]}"
            ),
        )
    )
    if tripped:
        logger.warning("destination %s paused by the breaker: %s", destination_id, last_error)
