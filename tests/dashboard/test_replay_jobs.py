"""Starting a replay from its form, and the replay as a job on its destination's page: the job
and its audit entry, one at a time, pause, resume and cancel by POST, its progress as it ends,
and where a replay's job address leads."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from destinations.delivery.services import destination_set_enabled
from destinations.models import (
    AuditAction,
    AuditEntry,
    Delivery,
    Destination,
    Job,
    JobKind,
    JobStatus,
    Replay,
)
from destinations.standins.kana import FakeKana
from tests.dashboard.audience_support import words_of
from tests.dashboard.replay_support import HX, form, run

pytestmark = pytest.mark.django_db(transaction=True)


def start_replay(client: Client, destination: Destination, **fields: Any) -> Any:
    return client.post(reverse("destination-replay", args=[destination.pk]), form(**fields))


def page_of(client: Client, destination: Destination, query: str = "") -> Any:
    response = client.get(reverse("destination-delivery", args=[destination.pk]) + query)
    assert response.status_code == 200
    return response


def test_start_makes_the_job_and_its_audit_entry_and_shows_it(
    operator: Client, kana_history: Destination
) -> None:
    response = start_replay(operator, kana_history, range="30d", types=["identify", "track"])
    replay = Replay.objects.get()
    job = replay.job
    assert response.status_code == 302
    assert response["Location"] == (
        f"/destinations/{kana_history.pk}/?job={job.pk}#replay-{job.pk}"
    )
    assert job.kind == JobKind.REPLAY and job.status == JobStatus.QUEUED
    assert job.created_by is not None and job.created_by.username == "olga"
    assert job.total == 6  # three identifies and three exports in the last 30 days
    assert (replay.types, replay.include_received) == (["identify", "track"], False)
    entry = AuditEntry.objects.get(action=AuditAction.REPLAY)
    assert entry.actor == job.created_by and entry.data["job"] == job.pk
    assert entry.summary == "Started replaying 6 stored events to Kana"

    page = words_of(operator.get(response["Location"]))
    assert "Replay started: 6 stored events to look at for Kana." in page
    assert "Started by olga just now" in page
    assert "call types: identify, track · not yet received only" in page
    assert "Waiting for a worker to start…" in page
    # One at a time: a second start is a form error, and no job is made.
    again = start_replay(operator, kana_history)
    assert again.status_code == 200
    assert "A replay to this destination is already running or paused" in words_of(again)
    assert Replay.objects.count() == 1
    assert "A replay to this destination is queued" in words_of(
        operator.get(reverse("destination-replay", args=[kana_history.pk]))
    )


def test_the_replay_runs_to_done_and_its_progress_says_what_happened(
    operator: Client, kana_history: Destination, fake_kana: FakeKana
) -> None:
    start_replay(operator, kana_history)
    replay = Replay.objects.get()
    job = run(replay)
    assert job.status == JobStatus.DONE
    poll = operator.get(reverse("job-detail", args=[job.pk]), headers=HX)
    assert poll.status_code == 286  # htmx stops polling
    assert "job-done" in poll["HX-Trigger"]  # the page's numbers refresh
    words = words_of(poll)
    assert "Done: 6 delivered, 0 failed, 4 skipped of 10 stored events." in words
    assert "Scanned 10 Planned 6 Delivered 6 Failed 0 Skipped 4" in words
    assert "Kana does not accept page calls: 3" in words
    assert "hx-get" not in poll.content.decode()
    assert {u.id for u in fake_kana.users} == {"u0", "u1", "u2"}
    # Its deliveries are the replay's, not live ones.
    assert Delivery.objects.filter(destination=kana_history, replay=replay).count() == 6
    assert not Delivery.objects.filter(destination=kana_history, replay=None).exists()
    # The plain job address leads to the destination's page, which shows it.
    response = operator.get(reverse("job-detail", args=[job.pk]))
    assert response.status_code == 302
    assert response["Location"] == f"/destinations/{kana_history.pk}/?job={job.pk}"
    page = words_of(operator.get(response["Location"]))
    assert "Done: 6 delivered" in page and "Pause" not in page


def test_pause_resume_and_cancel_change_the_job(
    operator: Client, kana_history: Destination
) -> None:
    start_replay(operator, kana_history)
    replay = Replay.objects.get()

    def act(action: str) -> str:
        response = operator.post(reverse(f"replay-{action}", args=[replay.pk]), follow=True)
        assert response.redirect_chain[0][0].endswith(f"#replay-{replay.job_id}")
        return words_of(response)

    def status() -> str:
        return Job.objects.get(pk=replay.job_id).status

    page = words_of(page_of(operator, kana_history))
    assert "Pause" in page and "Cancel…" in page and "Resume" not in page
    page = act("pause")
    assert status() == JobStatus.PAUSED
    assert "Replay paused" in page and "Paused by olga. Resume carries on" in page
    assert "Only a paused replay can be resumed." not in page
    assert "Only a queued or running replay can be paused." in act("pause")
    page = act("resume")
    assert status() == JobStatus.QUEUED and "Replay resumed." in page
    page = act("cancel")
    assert status() == JobStatus.CANCELLED
    assert "Replay cancelled" in page and "Cancelled: 0 delivered and 0 failed" in page
    assert "This replay has already ended." in act("cancel")
    assert "Only a paused replay can be resumed." in act("resume")
    summaries = AuditEntry.objects.filter(action=AuditAction.REPLAY).order_by("id")
    assert [e.summary.split(" the replay")[0] for e in summaries][1:] == [
        "Paused",
        "Resumed",
        "Cancelled",
    ]
    # A cancelled replay is not active: another may start.
    assert start_replay(operator, kana_history).status_code == 302
    assert run(Replay.objects.latest("pk")).status == JobStatus.DONE
    assert run(replay).status == JobStatus.CANCELLED  # its late wake-up sends nothing


def test_a_paused_destination_keeps_its_replay_from_resuming(
    operator: Client, kana_history: Destination
) -> None:
    start_replay(operator, kana_history)
    replay = Replay.objects.get()
    operator.post(reverse("replay-pause", args=[replay.pk]))
    destination_set_enabled(kana_history, enabled=False, actor=None)
    response = operator.post(reverse("replay-resume", args=[replay.pk]), follow=True)
    assert "The destination is paused or turned off: resume it first" in words_of(response)
    assert Job.objects.get(pk=replay.job_id).status == JobStatus.PAUSED
    form_page = operator.get(reverse("destination-replay", args=[kana_history.pk]))
    assert "Kana is disabled: a replay started now waits, paused" in words_of(form_page)


def test_a_new_destination_is_offered_its_last_30_days(
    operator: Client, kana_history: Destination
) -> None:
    page = page_of(operator, kana_history).content.decode()
    link = reverse("destination-replay", args=[kana_history.pk]) + "?range=30d"
    assert "Send the last 30 days of history to it" in page and f'href="{link}"' in page
    assert "No replays yet." in page
    start_replay(operator, kana_history, range="30d")
    assert "Send the last 30 days" not in page_of(operator, kana_history).content.decode()


def test_an_older_destination_is_not_offered_history(
    operator: Client, kana_history: Destination
) -> None:
    Destination.objects.filter(pk=kana_history.pk).update(
        created_at=kana_history.created_at.replace(year=kana_history.created_at.year - 1)
    )
    page = page_of(operator, kana_history).content.decode()
    assert "Send the last 30 days" not in page
    assert "Replay history…" in page  # always there for operators
