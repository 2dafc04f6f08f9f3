"""A replay survives a killed worker, pauses and resumes from its checkpoint, and stops for
good when cancelled: in every case each event reaches Kana at most once, and exactly once
when the replay runs to its end."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.utils import timezone
from segment.analytics.client import Client as SegmentClient

from destinations.models import WAITING, Delivery, DeliveryStatus, Job, JobStatus
from destinations.replay.definition import ReplayDefinition
from destinations.replay.runner import CANCELLED
from destinations.replay.services import cancel_replay, pause_replay, resume_replay, start
from destinations.standins.kana import FakeKana
from tests.conftest import StartWorker
from tests.helpers.kana_deliveries import explain
from tests.helpers.kana_rules import kana_with_rule
from tests.helpers.worker import wait_until
from tests.replay.support import (
    answered,
    delivered_once_each,
    expected_usage,
    history_ids,
    send_history,
    usage_by_user,
)

USERS = 16
# Small pages in two lanes: a replay of 48 events takes many steps, so it can be stopped
# half-way.
SMALL_PAGES = {"REPLAY_PAGE": "3", "REPLAY_LANES": "2"}


def finished(job_id: int) -> Callable[[], bool]:
    return lambda: Job.objects.get(pk=job_id).status in (JobStatus.DONE, JobStatus.FAILED)


def settled(job_id: int) -> Callable[[], bool]:
    """The job is done and every row it made has its outcome (rows a killed worker had in
    flight are retried by the sweeper, as any delivery's)."""

    def check() -> bool:
        rows = Delivery.objects.filter(replay__job_id=job_id)
        waiting = rows.filter(status__in=(*WAITING, DeliveryStatus.SENDING)).exists()
        return finished(job_id)() and not waiting

    return check


def outcomes_written(job_id: int, fake: FakeKana) -> Callable[[], bool]:
    def check() -> bool:
        carried_out = len(fake.usage_events) + len(answered(fake, "createUser"))
        rows = Delivery.objects.filter(replay__job_id=job_id, status=DeliveryStatus.DELIVERED)
        return rows.count() == carried_out

    return check


def quiet(fake: FakeKana, seconds: float) -> Callable[[], bool]:
    """Nothing new reached the fake for ``seconds``."""

    def check() -> bool:
        received = fake.received
        return bool(received) and time.time() - received[-1].received_at >= seconds

    return check


def test_a_worker_killed_mid_replay_resumes_and_each_event_reaches_kana_once(
    sdk: SegmentClient, fake_kana: FakeKana, start_worker: StartWorker
) -> None:
    send_history(sdk, USERS)
    kana = kana_with_rule(fake_kana)
    # Patient: the requests the kill catches hang without a timeout ending them first.
    first = start_worker(DELIVERY_TIMEOUT_SECONDS="30", **SMALL_PAGES)
    replay = start(kana, ReplayDefinition(until=timezone.now()), actor=None)
    wait_until(lambda: len(fake_kana.usage_events) >= 6, 30, explain(first, fake_kana))

    # Kana stops answering (what it holds is never carried out), and the worker is killed
    # with requests in flight and pages half sent.
    fake_kana.hang(600)
    wait_until(lambda: any(r.fault for r in fake_kana.received), 10, explain(first, fake_kana))
    # Killed once what Kana did answer is recorded: a request answered in the instant before
    # a kill, its outcome not yet written, is sent again, as any delivery in flight is (Kana
    # has no idempotency key). Everything else must go exactly once.
    wait_until(outcomes_written(replay.job_id, fake_kana), 10, explain(first, fake_kana))
    first.kill()
    fake_kana.clear_faults()
    assert Job.objects.get(pk=replay.job_id).status == JobStatus.RUNNING

    # A new worker's sweeper finds the job's heartbeat stale and queues it again.
    second = start_worker(JOB_STALE_SECONDS="2", **SMALL_PAGES)
    wait_until(settled(replay.job_id), 90, explain(second, fake_kana))

    job = Job.objects.get(pk=replay.job_id)
    assert job.status == JobStatus.DONE, job.error
    assert delivered_once_each(job, history_ids(USERS))
    assert usage_by_user(fake_kana) == expected_usage(USERS)
    created = [i["id"] for i in answered(fake_kana, "createUser")]
    assert sorted(created) == sorted(f"u{n}" for n in range(USERS))


def test_pause_stops_after_the_page_in_flight_and_resume_continues_from_the_checkpoint(
    sdk: SegmentClient, fake_kana: FakeKana, start_worker: StartWorker
) -> None:
    send_history(sdk, USERS)
    kana = kana_with_rule(fake_kana)
    fake_kana.hang(0.25)  # slow answers: the replay is still running when paused
    worker = start_worker(**SMALL_PAGES)
    replay = start(kana, ReplayDefinition(until=timezone.now()), actor=None)
    wait_until(lambda: len(fake_kana.usage_events) >= 4, 30, explain(worker, fake_kana))

    assert pause_replay(replay, actor=None)
    wait_until(quiet(fake_kana, 2.0), 30, explain(worker, fake_kana))
    sent_while_running = len(fake_kana.received)
    time.sleep(2.0)
    assert len(fake_kana.received) == sent_while_running  # paused means nothing more goes out
    job = Job.objects.get(pk=replay.job_id)
    assert job.status == JobStatus.PAUSED and job.error.startswith("Paused")
    assert 0 < len(fake_kana.usage_events) < USERS * 2

    fake_kana.clear_faults()
    assert resume_replay(replay, actor=None)
    wait_until(finished(replay.job_id), 60, explain(worker, fake_kana))
    job = Job.objects.get(pk=replay.job_id)
    assert job.status == JobStatus.DONE, job.error
    assert delivered_once_each(job, history_ids(USERS))
    assert usage_by_user(fake_kana) == expected_usage(USERS)


def test_cancel_stops_the_replay_and_what_it_had_not_sent_is_never_sent(
    sdk: SegmentClient, fake_kana: FakeKana, start_worker: StartWorker
) -> None:
    send_history(sdk, USERS)
    kana = kana_with_rule(fake_kana)
    fake_kana.hang(0.25)
    worker = start_worker(**SMALL_PAGES)
    replay = start(kana, ReplayDefinition(until=timezone.now()), actor=None)
    wait_until(lambda: len(fake_kana.usage_events) >= 4, 30, explain(worker, fake_kana))

    assert cancel_replay(replay, actor=None)
    wait_until(quiet(fake_kana, 2.0), 30, explain(worker, fake_kana))
    time.sleep(1.5)  # several sweeps: nothing of the replay is picked up again
    assert quiet(fake_kana, 3.0)()

    job = Job.objects.get(pk=replay.job_id)
    assert job.status == JobStatus.CANCELLED
    rows = Delivery.objects.filter(replay=replay)
    assert not rows.filter(status__in=(*WAITING, DeliveryStatus.SENDING)).exists()
    delivered = rows.filter(status=DeliveryStatus.DELIVERED).count()
    assert delivered == len(fake_kana.usage_events) + len(answered(fake_kana, "createUser"))
    assert 0 < delivered < USERS * 3
    assert set(rows.exclude(status=DeliveryStatus.DELIVERED).values_list("reason", flat=True)) <= {
        CANCELLED
    }
    assert Delivery.objects.filter(destination=kana).count() == rows.count()


def test_a_worker_asked_to_stop_does_not_wait_for_the_replay_and_it_resumes_elsewhere(
    sdk: SegmentClient, fake_kana: FakeKana, start_worker: StartWorker
) -> None:
    send_history(sdk, USERS)
    kana = kana_with_rule(fake_kana)
    fake_kana.hang(0.25)
    first = start_worker(**SMALL_PAGES)
    replay = start(kana, ReplayDefinition(until=timezone.now()), actor=None)
    wait_until(lambda: len(fake_kana.usage_events) >= 4, 30, explain(first, fake_kana))

    assert first.process is not None
    first.process.terminate()  # SIGTERM: Celery's warm shutdown
    first.process.wait(timeout=20)  # not held until the replay has sent everything
    assert Job.objects.get(pk=replay.job_id).status == JobStatus.QUEUED
    assert len(fake_kana.usage_events) < USERS * 2

    fake_kana.clear_faults()
    second = start_worker(JOB_STALE_SECONDS="2", **SMALL_PAGES)
    wait_until(settled(replay.job_id), 60, explain(second, fake_kana))
    job = Job.objects.get(pk=replay.job_id)
    assert job.status == JobStatus.DONE, job.error
    assert delivered_once_each(job, history_ids(USERS))
    assert usage_by_user(fake_kana) == expected_usage(USERS)
