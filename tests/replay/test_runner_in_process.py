"""The replay engine run in this process against the Kana stand-in: what is sent, in what
order, what is left out and why, and that a second run of the same replay adds nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from destinations import jobs
from destinations.delivery.filters import save as save_filters
from destinations.models import Delivery, DeliveryStatus, Destination, Job, JobStatus, Source
from destinations.replay.definition import ReplayDefinition
from destinations.replay.services import ReplayRefused, cancel_replay, preview, start
from destinations.standins.kana import FakeKana
from tests.helpers.ingest import IngestPost, send
from tests.helpers.kana_rules import kana_with_rule

pytestmark = pytest.mark.django_db(transaction=True)


def history(users: int = 6) -> list[dict[str, Any]]:
    """Each user identified with a billing id, then two usage events; a page view too."""
    items: list[dict[str, Any]] = []
    base = timezone.now() - timedelta(days=3)
    for n in range(users):
        at = base + timedelta(minutes=n)
        items.append(
            {
                "type": "identify",
                "userId": f"u{n}",
                "messageId": f"id-{n}",
                "traits": {"email": f"u{n}@example.com", "billingUserId": f"cus_{n}"},
                "timestamp": at.isoformat(),
            }
        )
        for k in range(2):
            items.append(
                {
                    "type": "track",
                    "userId": f"u{n}",
                    "messageId": f"tr-{n}-{k}",
                    "event": "Report Exported",
                    "properties": {"pages": k + 1},
                    "timestamp": (at + timedelta(seconds=10 + k)).isoformat(),
                }
            )
    items.append({"type": "page", "userId": "u0", "messageId": "pg", "name": "Home"})
    return items


@pytest.fixture
def kana_later(post_ingest: IngestPost, fake_kana: FakeKana) -> Destination:
    """History stored first; the Kana destination made afterwards, with a mapping rule."""
    send(post_ingest, history())
    kana = kana_with_rule(fake_kana)
    return kana


def run(destination: Destination, **definition: Any) -> Job:
    replay = start(destination, ReplayDefinition(until=timezone.now(), **definition), actor=None)
    jobs.run_job(replay.job_id)
    return Job.objects.get(pk=replay.job_id)


def test_history_reaches_a_destination_made_later_users_before_usage(
    kana_later: Destination, fake_kana: FakeKana
) -> None:
    assert not Delivery.objects.filter(destination=kana_later).exists()
    job = run(kana_later)

    assert job.status == JobStatus.DONE, job.error
    rows = Delivery.objects.filter(destination=kana_later)
    assert rows.count() == 18 and all(r.replay_id for r in rows)
    assert set(rows.values_list("status", flat=True)) == {DeliveryStatus.DELIVERED}
    assert {u.id for u in fake_kana.users} == {f"u{n}" for n in range(6)}
    assert fake_kana.user("u3").billing_id == "cus_3"  # type: ignore[union-attr]
    assert [e.delta for e in fake_kana.usage_events if e.user_id == "u2"] == [1, 1]
    # Each user's identify reached Kana before any of its usage.
    created = [r.variables["input"]["id"] for r in fake_kana.operations_received("createUser")]
    for n in range(6):
        first_usage = next(
            i
            for i, r in enumerate(fake_kana.received)
            if r.variables.get("input", {}).get("userId") == f"u{n}"
        )
        first_create = next(
            i
            for i, r in enumerate(fake_kana.received)
            if r.variables.get("input", {}).get("id") == f"u{n}"
        )
        assert first_create < first_usage
    assert sorted(created) == [f"u{n}" for n in range(6)]
    counters = job.counters
    assert counters["scanned"] == 19 and counters["planned"] == 18
    assert counters["outcome"] == {"delivered": 18, "failed": 0, "waiting": 0}
    assert sum(counters["skipped"].values()) == 1  # the page view: Kana takes no pages


def test_a_second_replay_sends_nothing_already_received_unless_asked(
    kana_later: Destination, fake_kana: FakeKana
) -> None:
    run(kana_later)
    sent = len(fake_kana.received)
    again = run(kana_later)
    assert again.total == 1 and again.counters["planned"] == 0  # only the page view is left
    assert len(fake_kana.received) == sent
    everything = run(kana_later, include_received=True)
    assert everything.counters["planned"] == 18
    assert Delivery.objects.filter(destination=kana_later).count() == 36


def test_preview_counts_per_type_with_examples_and_reasons(kana_later: Destination) -> None:
    shown = preview(kana_later, ReplayDefinition(until=timezone.now()))
    assert shown.candidates == 19 and shown.exact
    assert shown.by_type == {"identify": 6, "track": 12, "page": 1}
    assert shown.sending_by_type == {"track": 12, "identify": 6}
    assert len(shown.examples) == 5 and shown.examples[0].message_id == "id-0"
    assert list(shown.skipped.values()) == [1]


def test_filters_narrowing_and_integrations_apply(
    kana_later: Destination, fake_kana: FakeKana, post_ingest: IngestPost, source: Source
) -> None:
    save_filters(kana_later, [[{"path": "userId", "op": "equals", "value": "u1"}]])
    job = run(kana_later, types=("identify",))
    assert job.counters["planned"] == 5
    assert "u1" not in {u.id for u in fake_kana.users}


def test_one_replay_at_a_time_and_cancel_leaves_nothing_waiting(
    kana_later: Destination,
) -> None:
    replay = start(kana_later, ReplayDefinition(until=timezone.now()), actor=None)
    with pytest.raises(ReplayRefused):
        start(kana_later, ReplayDefinition(until=timezone.now()), actor=None)
    assert cancel_replay(replay, actor=None)
    jobs.run_job(replay.job_id)  # the queued wake-up arrives after the cancel: nothing runs
    assert not Delivery.objects.filter(destination=kana_later).exists()
    assert Job.objects.get(pk=replay.job_id).status == JobStatus.CANCELLED
