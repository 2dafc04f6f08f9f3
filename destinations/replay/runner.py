"""Run a replay: lanes side by side in one worker task, each planning a page of events, then
sending it through the delivery engine before the next.

Never twice: a page's delivery rows and the lane's new checkpoint commit in one transaction;
the rows are unique per (event, destination, replay), so a page planned again after a crash
adds nothing; and the engine sends a row only if it can claim it (pending -> sending). A worker
killed mid-replay leaves the job's heartbeat to go stale; the sweeper queues the job again and
each lane first sends what its last page still has waiting, then carries on from its
checkpoint.

Live traffic first: the task runs on the replay queue (its own worker process); each page is
taken from a budget of ``REPLAY_RATE_SHARE`` of the destination's rate limit, and its requests
also count against the limit itself, as live ones do.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Min
from django.utils import timezone

from destinations.delivery import engine, ratelimit
from destinations.delivery.routing import Route, route_of
from destinations.kinds import connector_for
from destinations.models import (
    WAITING,
    Delivery,
    DeliveryStatus,
    Destination,
    Job,
    JobStatus,
    Replay,
    ReplayLane,
)
from destinations.replay import counters
from destinations.replay.planning import plan_page
from destinations.replay.selection import lane_page

logger = logging.getLogger(__name__)

BEAT_SECONDS = 1.0
# Live-first backoff: live deliveries looked at, and the wait between pages while they lag.
LIVE_WINDOW = 10.0
MIN_BACKOFF = 0.05
MAX_BACKOFF = 5.0
# A lane reads the destination's filters and mapping rules again this often.
ROUTE_SECONDS = 10.0
CANCELLED = "the replay was cancelled"


# Set when the worker process is asked to stop: replays stop after their page and are queued
# again, instead of holding the worker's warm shutdown for as long as they have left to send.
shutting_down = threading.Event()


def run_replay(job: Job) -> None:
    """The job's runner (``destinations.jobs.RUNNERS``)."""
    replay = Replay.objects.select_related("destination", "job").get(job=job)
    Conductor(replay).run()


class Conductor:
    """Starts a thread per unfinished lane, then keeps the job's heartbeat and counters and
    watches for pause, cancel, or a destination that stopped taking deliveries."""

    def __init__(self, replay: Replay) -> None:
        self.replay = replay
        self.stop = threading.Event()
        self.errors: list[BaseException] = []

    def run(self) -> None:
        lanes = list(self.replay.lane_rows.filter(finished=False).order_by("number"))
        threads = [
            threading.Thread(target=self.lane_main, args=(lane,), name=f"replay-lane-{lane.number}")
            for lane in lanes
        ]
        for thread in threads:
            thread.start()
        try:
            while any(thread.is_alive() for thread in threads):
                for thread in threads:
                    thread.join(BEAT_SECONDS / len(threads))
                self.beat()
        finally:
            self.stop.set()
            for thread in threads:
                thread.join()
        if self.errors:
            raise self.errors[0]
        self.finish()

    def lane_main(self, lane: ReplayLane) -> None:
        try:
            Lane(self.replay, lane, self.stop).run()
        except BaseException as exc:
            logger.exception("replay %s lane %s failed", self.replay.pk, lane.number)
            self.errors.append(exc)
            self.stop.set()
        finally:
            connection.close()

    def beat(self) -> None:
        """Heartbeat and counters; stop the lanes if the job is no longer running."""
        job = self.replay.job
        status = Job.objects.filter(pk=job.pk).values_list("status", flat=True).first()
        destination = Destination.objects.filter(pk=self.replay.destination_id).first()
        if destination is None or status != JobStatus.RUNNING:
            self.stop.set()
        elif shutting_down.is_set():
            # Queued again (the sweeper sends it to a worker once its heartbeat is stale): the
            # lanes carry on from their checkpoints.
            Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(status=JobStatus.QUEUED)
            self.stop.set()
        elif not destination.is_active:
            why = destination.paused_reason or "the destination is turned off"
            pause(job, f"Paused because the destination is not taking deliveries: {why}")
            self.stop.set()
        self.write_counters()

    def write_counters(self, **extra: Any) -> None:
        lanes = list(self.replay.lane_rows.values_list("counters", flat=True))
        summed = {**counters.total(lanes), **extra}
        Job.objects.filter(pk=self.replay.job_id).update(
            counters=summed, done=summed["scanned"], heartbeat_at=timezone.now()
        )

    def finish(self) -> None:
        status = Job.objects.filter(pk=self.replay.job_id).values_list("status", flat=True)[0]
        extra: dict[str, Any] = {}
        if status == JobStatus.CANCELLED:
            extra["cancelled"] = cancel_waiting(self.replay)
        if status in (JobStatus.RUNNING, JobStatus.CANCELLED):
            extra["outcome"] = outcome(self.replay)
        self.write_counters(**extra)


def outcome(replay: Replay) -> dict[str, int]:
    """Every row of the replay as it stands now (retries still waiting counted so)."""
    by_status = dict(
        Delivery.objects.filter(replay=replay)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    return {
        "delivered": by_status.get(DeliveryStatus.DELIVERED, 0),
        "failed": by_status.get(DeliveryStatus.FAILED, 0),
        "waiting": sum(by_status.get(s, 0) for s in (*WAITING, DeliveryStatus.SENDING)),
    }


class Lane:
    """One lane's loop: send what the last page left waiting, then plan the next page."""

    def __init__(self, replay: Replay, lane: ReplayLane, stop: threading.Event) -> None:
        self.replay = replay
        self.lane = lane
        self.stop = stop
        self.destination = replay.destination
        self.connector = connector_for(self.destination.kind)
        self.route: Route | None = None
        self.route_read = 0.0
        self.backoff = 0.0  # seconds waited before each page while live traffic lags

    def run(self) -> None:
        while True:
            # A page planned is sent before the stop flag is looked at: a paused replay leaves
            # no planned rows for the sweeper to send behind its back.
            if self.lane.pending_ids:
                wait_until = self.send()
                if wait_until is not None and not self.stop.is_set():
                    self.pause_until(wait_until)
                    continue
            if self.stop.is_set() or not self.still_running():
                self.stop.set()
                self.hold()
                return
            if self.make_way_for_live_traffic():
                continue
            granted = self.budget(self.page_size())
            if granted == 0:
                self.pause_until(ratelimit.window_end())
                continue
            if not self.plan(granted):
                self.lane.finished = True
                self.lane.save(update_fields=["finished"])
                return

    def still_running(self) -> bool:
        """Looked at before every page, so a pause or cancel stops the lane at once rather
        than at the conductor's next beat."""
        return Job.objects.filter(pk=self.replay.job_id, status=JobStatus.RUNNING).exists()

    def make_way_for_live_traffic(self) -> bool:
        """While live deliveries are falling behind, wait before the next page, twice as long
        each time they still are, and send smaller pages; back to full speed as they catch up.
        True when it waited."""
        lag = live_lag()
        if lag > settings.REPLAY_LIVE_LAG_SECONDS:
            self.backoff = min(max(self.backoff * 2, MIN_BACKOFF), MAX_BACKOFF)
        else:
            self.backoff = self.backoff / 2 if self.backoff > MIN_BACKOFF else 0.0
        if self.backoff:
            self.stop.wait(self.backoff)
        return self.backoff > 0 and lag > settings.REPLAY_LIVE_LAG_SECONDS

    def page_size(self) -> int:
        return settings.REPLAY_PAGE if not self.backoff else max(1, settings.REPLAY_PAGE // 5)

    def hold(self) -> None:
        """Rows held back (rate limit) when the replay stops wait for it to resume, not for
        the sweeper: the resumed lane sends them first."""
        if self.lane.pending_ids:
            Delivery.objects.filter(
                pk__in=self.lane.pending_ids, status=DeliveryStatus.PENDING
            ).update(next_attempt_at=F("retry_until"))

    def current_route(self) -> Route:
        if self.route is None or time.monotonic() - self.route_read > ROUTE_SECONDS:
            self.destination.refresh_from_db()
            self.route = route_of(self.destination)
            self.route_read = time.monotonic()
        return self.route

    def budget(self, wanted: int) -> int:
        """How many events this page may take of the replay's share of the rate limit."""
        limit = self.destination.rate_limit_per_minute or self.connector.requests_per_minute
        if limit <= 0:
            return wanted
        share = max(1, int(limit * settings.REPLAY_RATE_SHARE))
        key = f"{self.destination.pk}:replay"
        return ratelimit.take_all({key: (wanted, share)})[key]

    def plan(self, limit: int) -> bool:
        """Plan the next page; False when the lane has no events left."""
        page = lane_page(self.replay, self.lane, limit)
        if page.last is None:
            return False
        route = self.current_route()
        planned = plan_page(page.events, route, self.replay.pk, timezone.now())
        lane = self.lane
        with transaction.atomic():
            Delivery.objects.bulk_create(planned.rows, batch_size=500, ignore_conflicts=True)
            # Rows of these events that are this replay's and still waiting: the new ones, and
            # any a crashed run had made for the same events.
            lane.pending_ids = list(
                Delivery.objects.filter(
                    replay=self.replay,
                    event_id__in=[pk for pk, _ in page.events],
                    status__in=WAITING,
                )
                .order_by("id")
                .values_list("id", flat=True)
            )
            lane.after_timestamp, lane.after_id = page.last
            counters.add(lane.counters, scanned=len(page.events), planned=len(planned.rows))
            counters.add_skipped(lane.counters, planned.skipped)
            lane.save(update_fields=["pending_ids", "after_id", "after_timestamp", "counters"])
        return True

    def send(self) -> float | None:
        """Send the lane's waiting rows, in id (event-time) order; returns when to look again
        if some were held back (rate limit, paused destination), else None."""
        lane = self.lane
        engine.deliver(lane.pending_ids)
        states = list(
            Delivery.objects.filter(pk__in=lane.pending_ids).values_list(
                "pk", "status", "next_attempt_at"
            )
        )
        held = [(pk, due) for pk, status, due in states if status == DeliveryStatus.PENDING]
        done = {status: 0 for status in ("delivered", "failed", "retrying")}
        for _, status, _ in states:
            if status in done:
                done[status] += 1
        counters.add(lane.counters, **done)
        # Retrying rows wait out their backoff like any delivery: the sweeper sends them.
        lane.pending_ids = [pk for pk, _ in held]
        lane.save(update_fields=["pending_ids", "counters"])
        if not held:
            return None
        return min(due for _, due in held).timestamp()

    def pause_until(self, epoch_seconds: float) -> None:
        """Wait (waking at once if the replay stops), at most a few seconds at a time so the
        loop looks at the clock and the stop flag again."""
        delay = min(max(0.05, epoch_seconds - time.time()), 5.0)
        self.stop.wait(delay)


def live_lag() -> float:
    """How long the oldest fresh live delivery made in the last ``LIVE_WINDOW`` seconds has
    been waiting for a worker (0 when none is), at any active destination. It counts ingest's
    wait too, since a delivery's clock starts when its event was received. Not counted: rows
    being sent (a slow destination is not a busy machine) and rows waiting for a reason (the
    rate limit, a retry). Read from the (destination, created_at) index: only the window's
    rows are looked at."""
    now = timezone.now()
    active = list(
        Destination.objects.filter(enabled=True, paused_at__isnull=True).values_list(
            "pk", flat=True
        )
    )
    oldest = (
        Delivery.objects.filter(
            destination_id__in=active,
            created_at__gte=now - timedelta(seconds=LIVE_WINDOW),
            replay__isnull=True,
            status=DeliveryStatus.PENDING,
            reason="",
        )
        .order_by()
        .aggregate(oldest=Min("received_at"))["oldest"]
    )
    return (now - oldest).total_seconds() if oldest else 0.0


def pause(job: Job, reason: str = "") -> bool:
    return bool(
        Job.objects.filter(pk=job.pk, status__in=(JobStatus.QUEUED, JobStatus.RUNNING)).update(
            status=JobStatus.PAUSED, error=reason[:2000]
        )
    )


def cancel_waiting(replay: Replay) -> int:
    """Rows of a cancelled replay not yet sent are skipped, never sent."""
    now = datetime.now(UTC)
    cancelled = Delivery.objects.filter(replay=replay, status__in=WAITING).update(
        status=DeliveryStatus.SKIPPED, reason=CANCELLED, finished_at=now, last_error=""
    )
    ReplayLane.objects.filter(replay=replay).update(pending_ids=[])
    return cancelled
