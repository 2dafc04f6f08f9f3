"""Send claimed deliveries and record what happened, a few at a time.

A task works through its ids with a small window of claimed rows. It claims (``status``
pending/retrying -> sending, with a lease) only what its senders can have in flight plus a few
waiting their turn; as requests complete, it writes their attempts and outcomes in small groups
and claims as many more rows in the same transaction. A worker killed at any moment therefore
has at most ``claim_window()`` rows per running task that were (or may have been) sent without
their outcome written, and only those are sent twice.

A row is written back only if it still carries this claim's lease, so a worker that stalled
past its lease cannot overwrite the outcome of the worker that took over. While a task runs it
renews the lease of the rows it still holds, so a slow destination never lets a live worker's
claim expire and be sent again by another.
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
from django.db.models import F
from django.utils import timezone

from destinations.delivery import ratelimit, rows
from destinations.delivery.contract import (
    EXCERPT_CHARS,
    Connector,
    DeliveryContext,
    OutboundRequest,
    Skip,
    Verdict,
)
from destinations.delivery.http import PRIVATE_ADDRESS, session
from destinations.delivery.signals import deliveries_failed
from destinations.kinds import connector_for
from destinations.models import (
    AttemptOutcome,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Destination,
)

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
    # Not sent (held back by the rate limit): not an attempt; waits until then.
    deferred_until: datetime | None = None
    request: dict[str, Any] | None = None
    response: dict[str, Any] | None = None


@dataclass(slots=True)
class RunStats:
    claimed: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: defaultdict(int))


@dataclass(slots=True)
class Claim:
    """A row this task holds: ``lease`` is the claim's token, renewed while the task runs."""

    delivery: Delivery
    lease: datetime


Lane = tuple[int, str]  # (destination, subject): a subject's deliveries go one at a time


@dataclass(slots=True)
class Work:
    """A claimed delivery's requests, waiting for a sender."""

    delivery: Delivery
    connector: Connector
    plan: list[OutboundRequest]
    lane: Lane


Finished = tuple[Delivery, Result]


def claim_margin() -> int:
    """Rows a task holds beyond what it can have in flight, waiting their turn, so that a sender
    that finishes need not wait for the next claim; also how many outcomes are written
    together."""
    return max(1, settings.DELIVERY_CONCURRENCY // 2)


def claim_window() -> int:
    """How many rows a task holds at once (claimed, outcome not yet written):
    ``DELIVERY_CONCURRENCY`` in flight and ``claim_margin()`` waiting. It bounds what a killed
    worker sends twice: at most this many per task it was running."""
    return settings.DELIVERY_CONCURRENCY + claim_margin()


def deliver(delivery_ids: Sequence[int]) -> RunStats:
    """Claim what is still waiting among ``delivery_ids``, send it, record the outcomes."""
    return Run(delivery_ids).go()


class Run:
    """One task's deliveries. The task's own thread claims, plans and records (every database
    statement runs on it, in its connection); threads of the sending pool only send, at most
    ``DELIVERY_CONCURRENCY`` at a time, and hand each result back as it comes."""

    def __init__(self, delivery_ids: Sequence[int]) -> None:
        self.stats = RunStats()
        self.unclaimed = sorted(set(delivery_ids))  # not yet tried, in id (received) order
        self.all_ids = list(self.unclaimed)
        self.payloads: dict[int, Any] | None = None
        self.held: dict[int, Claim] = {}
        self.connectors: dict[int, tuple[Destination, Connector, dict[str, Any]]] = {}
        self.healthy: dict[int, float] = {}  # see record()
        self.window = claim_window()
        self.group = claim_margin()
        self.lease_seconds = float(settings.DELIVERY_LEASE_SECONDS)
        self.concurrency = max(1, settings.DELIVERY_CONCURRENCY)
        # Shared with the senders, under ``lock``.
        self.lock = threading.Lock()
        self.results = threading.Condition(self.lock)  # the task's thread waits for outcomes
        self.work = threading.Condition(self.lock)  # idle senders wait for work
        self.lanes: dict[Lane, deque[Work]] = {}  # a lane being sent stays here, maybe empty
        self.ready: deque[Lane] = deque()  # lanes with work waiting and none being sent
        self.in_flight = 0
        self.senders = 0
        self.idle = 0  # senders waiting for work
        self.done: list[Finished] = []
        self.given_up: set[int] = set()  # claims lost before they were sent: not sent
        self.closed = False

    def go(self) -> RunStats:
        try:
            finished: list[Finished] = []
            while True:
                self.step(finished)
                if not self.held and not self.unclaimed:
                    return self.stats
                finished = self.wait()
        finally:
            with self.lock:
                # The senders stop. After an error they take no more work: the sweeper recovers
                # the rows still held once their lease expires.
                self.closed = True
                self.work.notify_all()

    # --- the task's thread ---

    def wait(self) -> list[Finished]:
        """Until there are outcomes worth a write, or leases to renew."""
        with self.lock:
            while not self.worth_a_round():
                self.results.wait(max(0.01, self.seconds_to_renewal()))
            finished, self.done = self.done, []
        return finished

    def worth_a_round(self) -> bool:
        if not self.held or self.seconds_to_renewal() <= 0:
            return True
        return self.outcomes_worth_a_write()

    def outcomes_worth_a_write(self) -> bool:
        """A group is complete, or nothing else is coming, or the senders have nothing left
        they may start while more could be claimed (called under the lock)."""
        if not self.done:
            return False
        return (
            len(self.done) >= self.group
            or self.in_flight == 0
            or (not self.ready and bool(self.unclaimed))
        )

    def seconds_to_renewal(self) -> float:
        """Leases are renewed when half of the oldest has gone."""
        if not self.held:
            return self.lease_seconds
        oldest = min(claim.lease for claim in self.held.values())
        return (oldest - timezone.now()).total_seconds() - self.lease_seconds / 2

    def step(self, finished: Sequence[Finished]) -> None:
        """One transaction: write what finished, renew leases that are half gone, claim rows
        to fill the window again. Then plan what was claimed and hand it to the senders."""
        now = timezone.now()
        lease = now + timedelta(seconds=self.lease_seconds)
        # A result for a row whose claim was lost is dropped: the row is someone else's now.
        ours = [(self.held[d.pk], r) for d, r in finished if d.pk in self.held]
        for _, result in finished:
            self.stats.outcomes[outcome_of(result)] += 1
        for claim, _ in ours:
            del self.held[claim.delivery.pk]
        renewing = [
            claim
            for claim in self.held.values()
            if (claim.lease - now).total_seconds() < self.lease_seconds / 2
        ]
        room = self.window - len(self.held) if self.unclaimed else 0
        failed_for_good: list[tuple[Delivery, str]] = []
        renewed: set[int] = set()
        taken: list[Delivery] = []
        if ours or renewing or room > 0:
            with transaction.atomic():
                failed_for_good = record(ours, now, self.healthy)
                renewed = renew(renewing, lease)
                if room > 0:
                    taken = rows.take(self.unclaimed[:room], now=now, lease=lease)
        if failed_for_good:
            deliveries_failed.send(sender=Run, failures=failed_for_good)
        self.give_up([c for c in renewing if c.delivery.pk not in renewed])
        for claim in renewing:
            claim.lease = lease
        if room > 0:
            # Those not taken are not waiting (already sent, or not due) or another worker
            # has them.
            del self.unclaimed[:room]
        if taken:
            self.dispatch(self.claimed(taken, lease))

    def give_up(self, lost: Sequence[Claim]) -> None:
        """Claims taken back (the sweeper thought this worker dead): not sent, not recorded."""
        if not lost:
            return
        logger.warning("%d deliveries' claims expired before they were renewed", len(lost))
        with self.lock:
            for claim in lost:
                self.given_up.add(claim.delivery.pk)
                del self.held[claim.delivery.pk]

    def claimed(self, claimed: list[Delivery], lease: datetime) -> list[Delivery]:
        if self.payloads is None:
            # Read once for all of the task's ids (not per claim): payloads never change.
            self.payloads = rows.payloads(self.all_ids)
        for delivery in claimed:
            rows.with_event(delivery, self.payloads.pop(delivery.pk, None))
        missing = {d.destination_id for d in claimed} - set(self.connectors)
        for destination in Destination.objects.filter(pk__in=missing) if missing else ():
            self.connectors[destination.pk] = (
                destination,
                connector_for(destination.kind),
                destination.config(),
            )
        for delivery in claimed:
            delivery.destination = self.connectors[delivery.destination_id][0]
            self.held[delivery.pk] = Claim(delivery, lease)
        self.stats.claimed += len(claimed)
        return claimed

    def dispatch(self, claimed: Sequence[Delivery]) -> None:
        work: list[Work] = []
        now_done: list[Finished] = []
        by_destination: dict[int, list[Delivery]] = defaultdict(list)
        for delivery in claimed:
            by_destination[delivery.destination_id].append(delivery)
        for destination_id, deliveries in by_destination.items():
            destination, connector, config = self.connectors[destination_id]
            planned = plan(destination, connector, config, deliveries)
            for delivery, item in zip(deliveries, planned, strict=True):
                if isinstance(item, Result):
                    now_done.append((delivery, item))
                else:
                    work.append(item)
        with self.lock:
            self.done.extend(now_done)
            for item in work:
                lane = self.lanes.get(item.lane)
                if lane is None:
                    self.lanes[item.lane] = deque([item])
                    self.ready.append(item.lane)
                else:
                    lane.append(item)
            self.work.notify(len(self.ready))
            # Senders stay with the task until it ends, waiting for work when there is none.
            start = max(0, min(self.concurrency - self.senders, len(self.ready) - self.idle))
            self.senders += start
        for _ in range(start):
            sending_pool().submit(self.send)

    # --- the senders ---

    def send(self) -> None:
        while (taken := self.next_work()) is not None:
            lane, work = taken
            try:
                result = send_one(work.connector, work.plan)
            except Exception as exc:  # a bug must fail one attempt, not stall the task
                logger.exception("sending delivery %s failed", work.delivery.pk)
                result = Result(Verdict.retry(f"could not be sent: {exc}"[:300]))
            with self.lock:
                self.in_flight -= 1
                self.done.append((work.delivery, result))
                self.release(lane)
                if self.outcomes_worth_a_write():
                    self.results.notify()

    def next_work(self) -> tuple[Lane, Work] | None:
        with self.lock:
            while not self.closed:
                if not self.ready:
                    self.idle += 1
                    self.work.wait()
                    self.idle -= 1
                    continue
                lane = self.ready.popleft()
                work = self.lanes[lane].popleft()
                if work.delivery.pk in self.given_up:
                    self.release(lane)
                    continue
                self.in_flight += 1
                if self.outcomes_worth_a_write():  # it took the last work there was
                    self.results.notify()
                return lane, work
            self.senders -= 1
            return None

    def release(self, lane: Lane) -> None:
        """A lane's delivery is done: its next one may go (called under the lock)."""
        if self.lanes[lane]:
            self.ready.append(lane)  # the sender that released it takes work next
        else:
            del self.lanes[lane]


def plan(
    destination: Destination,
    connector: Connector,
    config: dict[str, Any],
    deliveries: Sequence[Delivery],
) -> list[Work | Result]:
    """Each delivery's requests, or its result already: skipped, not translatable, or held back
    by the rate limit (not sent, not an attempt)."""
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
    items: list[Work | Result] = []
    for index, (delivery, requests_) in enumerate(zip(deliveries, planned, strict=True)):
        if isinstance(requests_, Skip):
            items.append(Result(Verdict.fail(requests_.reason), skipped=not requests_.failed))
        elif not allowed[index]:
            resume = datetime.fromtimestamp(ratelimit.window_end(), tz=UTC)
            items.append(
                Result(
                    Verdict.retry("held back by the rate limit"),
                    # Spread over the next window's first seconds, not all at its first instant.
                    deferred_until=resume + timedelta(seconds=random.uniform(0, 5)),
                )
            )
        else:
            # A subject's deliveries go one after another in the order received (a user's
            # identify before its usage); different subjects go in parallel.
            subject = subjects[index] or f"#{delivery.pk}"
            items.append(Work(delivery, connector, requests_, (destination.pk, subject)))
    return items


def renew(claims: Sequence[Claim], lease: datetime) -> set[int]:
    """Give ``claims`` the new lease where they still hold their row; returns those ids."""
    by_lease: dict[datetime, list[int]] = defaultdict(list)
    for claim in claims:
        by_lease[claim.lease].append(claim.delivery.pk)
    renewed: set[int] = set()
    for old, ids in by_lease.items():
        renewed.update(rows.renew(ids, old, lease))
    return renewed


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
    finished: Sequence[tuple[Claim, Result]],
    now: datetime,
    healthy: dict[int, float] | None = None,
) -> list[tuple[Delivery, str]]:
    """Write the attempts and outcomes of ``finished`` (inside the caller's transaction) and
    the health of their destinations; returns the deliveries that failed for good.

    ``healthy`` (destination -> monotonic time) is the caller's note of destinations whose
    success it wrote: nothing but successes since then, and it is not written again until
    then."""
    if not finished:
        return []
    for claim, result in finished:
        apply_result(claim.delivery, result, now)
    # Written only where this claim still holds the row; what it says of the rest (their lease
    # was taken back) is dropped, attempt and all.
    still_ours = write_outcomes(finished)
    attempts: list[DeliveryAttempt] = []
    failed_for_good: list[tuple[Delivery, str]] = []
    health: dict[int, list[Any]] = {}  # destination -> [successes, failures, last error]
    for claim, result in finished:
        delivery = claim.delivery
        if delivery.pk not in still_ours:
            continue
        if delivery.status == DeliveryStatus.FAILED:
            failed_for_good.append((delivery, delivery.reason))
        if result.deferred_until is None:
            attempts.append(attempt_row(delivery, result, now))
        counts = health.setdefault(delivery.destination_id, [0, 0, ""])
        if result.verdict.delivered:
            counts[0] += 1
        elif not result.skipped and result.deferred_until is None:
            counts[1] += 1
            counts[2] = result.verdict.reason
    rows.insert_attempts(attempts)
    for destination_id, (successes, failures, last_error) in health.items():
        if healthy is not None and not failures:
            if healthy.get(destination_id, 0.0) > time.monotonic():
                continue
            healthy[destination_id] = time.monotonic() + HEALTH_WRITE_SECONDS
        note_health(destination_id, successes=successes, failures=failures, last_error=last_error)
    return failed_for_good


def write_outcomes(finished: Sequence[tuple[Claim, Result]]) -> set[int]:
    """One ``UPDATE ... WHERE id IN (...)`` per claim and distinct set of new values (a group's
    rows nearly always share their outcome: delivered, status 200); returns the ids written."""
    groups: dict[tuple[datetime, tuple[Any, ...]], list[int]] = defaultdict(list)
    for claim, _ in finished:
        delivery = claim.delivery
        values = tuple(getattr(delivery, name) for name in OUTCOME_FIELDS)
        groups[(claim.lease, values)].append(delivery.pk)
    written: set[int] = set()
    for (lease, values), ids in groups.items():
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
        # Says why it waits (and tells it from a fresh row: replays measure live lag by those).
        delivery.reason = result.verdict.reason[:300]
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
        rows.note_success(destination_id, now, now - timedelta(seconds=HEALTH_WRITE_SECONDS))
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
