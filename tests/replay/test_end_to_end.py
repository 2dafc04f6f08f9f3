"""A replay through the real SDK and a real worker to the Kana stand-in: history stored before
the destination existed reaches it, users before their usage, mapping rules applied; filters,
the integrations object and what the destination already received are respected."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from segment.analytics.client import Client as SegmentClient

from destinations.delivery.filters import save as save_filters
from destinations.delivery.routing import forget_cached_destinations
from destinations.models import Delivery, DeliveryStatus, Job, JobStatus
from destinations.replay.definition import ReplayDefinition
from destinations.replay.services import start
from destinations.standins.kana import FakeKana
from tests.helpers.kana_deliveries import explain
from tests.helpers.kana_rules import kana_with_rule
from tests.helpers.worker import Worker, wait_until
from tests.replay.support import (
    answered,
    delivered_once_each,
    expected_usage,
    history_ids,
    send_history,
    usage_by_user,
)

USERS = 8


def finished(job_id: int) -> Any:
    return lambda: Job.objects.get(pk=job_id).status in (JobStatus.DONE, JobStatus.FAILED)


def test_history_from_before_the_destination_reaches_kana_users_first(
    sdk: SegmentClient, fake_kana: FakeKana, worker: Worker
) -> None:
    send_history(sdk, USERS)
    kana = kana_with_rule(fake_kana)
    assert not Delivery.objects.filter(destination=kana).exists()

    replay = start(kana, ReplayDefinition(until=timezone.now()), actor=None)
    wait_until(finished(replay.job_id), 60, explain(worker, fake_kana))

    job = Job.objects.get(pk=replay.job_id)
    assert job.status == JobStatus.DONE, job.error
    assert delivered_once_each(job, history_ids(USERS))
    assert usage_by_user(fake_kana) == expected_usage(USERS)
    assert {u.id: u.billing_id for u in fake_kana.users} == {
        f"u{n}": f"cus_{n}" for n in range(USERS)
    }
    # Every user was created before any of its usage was recorded, though the SDK sent the
    # users newest first: the replay goes by event time.
    order = [
        (r.variables["input"].get("id") or r.variables["input"].get("userId"), r.operation)
        for r in fake_kana.received
        if r.status == 200 and "input" in r.variables
    ]
    for n in range(USERS):
        mine = [operation for user, operation in order if user == f"u{n}"]
        assert mine[0] == "createUser", mine
    # Once each: users go side by side, so only each user's own order is kept.
    created = [i["id"] for i in answered(fake_kana, "createUser")]
    assert sorted(created) == sorted(f"u{n}" for n in range(USERS))
    assert job.counters["outcome"] == {"delivered": USERS * 3, "failed": 0, "waiting": 0}


def test_filters_integrations_and_already_received_are_respected(
    sdk: SegmentClient, fake_kana: FakeKana, worker: Worker
) -> None:
    send_history(sdk, USERS)
    sdk.track(
        "u1",
        "Report Exported",
        {"delta": 7},
        integrations={"Kana": False},
        message_id="not-for-kana",
    )
    kana = kana_with_rule(fake_kana)
    # u0's events are dropped by a filter; u7's usage arrives live, before the replay.
    save_filters(kana, [[{"path": "userId", "op": "equals", "value": "u0"}]])
    forget_cached_destinations()
    sdk.track("u7", "Report Exported", {"delta": 5}, message_id="live-u7")
    wait_until(
        lambda: Delivery.objects.filter(
            event__message_id="live-u7", status=DeliveryStatus.DELIVERED
        ).exists(),
        30,
        explain(worker, fake_kana),
    )

    replay = start(kana, ReplayDefinition(until=timezone.now()), actor=None)
    wait_until(finished(replay.job_id), 60, explain(worker, fake_kana))

    job = Job.objects.get(pk=replay.job_id)
    sent_ids = [i for i in history_ids(USERS) if not i.endswith("-0") and "-0-" not in i]
    assert delivered_once_each(job, sent_ids)
    skipped = job.counters["skipped"]
    assert skipped['integrations object has "Kana": false'] == 1
    assert sum(n for reason, n in skipped.items() if reason.startswith("dropped by filter")) == 3
    # The live event was delivered once, live, and not again by the replay.
    assert Delivery.objects.filter(event__message_id="live-u7").count() == 1
    usage = usage_by_user(fake_kana)
    assert usage[("u7", 5)] == 1 and ("u1", 7) not in usage and ("u0", 1) not in usage
