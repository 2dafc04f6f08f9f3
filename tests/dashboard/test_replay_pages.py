"""Replayed deliveries where operators read deliveries: the Event delivery page's live / replay
filter (numbers, chart, failure samples with a replay badge), the event page's deliveries (the
live one and the replay's, badged), the Events list; and what a viewer sees and may do."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from dashboard.selectors.delivery_stats import delivery_report, delivery_traffic, delivery_window
from destinations.models import (
    Delivery,
    DeliveryStatus,
    Destination,
    Event,
    Job,
    JobStatus,
    Replay,
)
from destinations.replay.definition import ReplayDefinition
from destinations.replay.services import start
from tests.dashboard.audience_support import text_of, words_of
from tests.dashboard.replay_support import HX, form, run
from tests.helpers.ingest import IngestPost, send
from tests.helpers.members import MakeMember

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def replayed(kana_history: Destination, post_ingest: IngestPost) -> dict[str, Any]:
    """The history replayed to Kana (six delivered, each a replay's); then one live event,
    waiting (no worker runs here), and one replay delivery made to fail."""
    replay = start(kana_history, ReplayDefinition(until=timezone.now()), actor=None)
    run(replay)
    send(post_ingest, [{"type": "track", "userId": "u0", "messageId": "live-1",
                        "event": "Report Exported"}])  # fmt: skip
    failed = Delivery.objects.filter(replay=replay, event__message_id="tr-2").get()
    Delivery.objects.filter(pk=failed.pk).update(
        status=DeliveryStatus.FAILED, reason="Kana answered HTTP 500"
    )
    return {"destination": kana_history, "replay": replay}


def stats(client: Client, destination: Destination, traffic: str | None = None) -> Any:
    query = "?window=1h" + (f"&traffic={traffic}" if traffic else "")
    return client.get(reverse("destination-delivery", args=[destination.pk]) + query, headers=HX)


def tiles(response: Any) -> tuple[int, int, int]:
    page = text_of(response)
    return tuple(  # type: ignore[return-value]
        int(re.search(rf'id="count-{name}">(\d+)<', page).group(1))  # type: ignore[union-attr]
        for name in ("delivered", "not-delivered", "pending")
    )


def test_the_live_replay_filter_narrows_the_numbers_and_the_samples(
    operator: Client, replayed: dict[str, Any]
) -> None:
    destination = replayed["destination"]
    assert tiles(stats(operator, destination)) == (5, 1, 1)  # all, by default
    assert tiles(stats(operator, destination, "all")) == (5, 1, 1)
    assert tiles(stats(operator, destination, "live")) == (0, 0, 1)
    assert tiles(stats(operator, destination, "replay")) == (5, 1, 0)
    assert tiles(stats(operator, destination, "nonsense")) == (5, 1, 1)
    # The failed sample is the replay's, and says so, linking to the replay's job.
    job_id = replayed["replay"].job_id
    badge = f'href="/destinations/{destination.pk}/?job={job_id}#replay-{job_id}"'
    page = text_of(stats(operator, destination, "replay"))
    assert "Kana answered HTTP 500" in page and badge in page
    live = stats(operator, destination, "live")
    assert "Kana answered HTTP 500" not in text_of(live)
    assert "No errors in this window from live traffic." in words_of(live)
    # Every link of the section keeps the filter: the windows, Refresh, the section's own poll.
    assert f'hx-get="/destinations/{destination.pk}/?window=1h&traffic=replay"' in page
    assert "?window=24h&traffic=replay" in page
    assert 'aria-current="true">Replays</a>' in page


def test_the_chart_counts_what_the_tiles_count(operator: Client, replayed: dict[str, Any]) -> None:
    destination = replayed["destination"]
    for traffic in ("all", "live", "replay"):
        report = delivery_report(
            destination, window=delivery_window("1h"), traffic=delivery_traffic(traffic)
        )
        counts = report.counts
        assert sum(b.delivered for b in report.buckets) == counts.delivered
        assert sum(b.not_delivered for b in report.buckets) == counts.not_delivered
        assert sum(b.pending for b in report.buckets) == counts.pending


def test_an_event_page_shows_the_live_delivery_and_the_replays(
    operator: Client, replayed: dict[str, Any], post_ingest: IngestPost
) -> None:
    destination, replay = replayed["destination"], replayed["replay"]
    # An event Kana got live, then again by a replay that included what it had received.
    event = Event.objects.get(message_id="live-1")
    Delivery.objects.filter(event=event).update(status=DeliveryStatus.DELIVERED)
    everything = ReplayDefinition(until=timezone.now(), include_received=True)
    again = start(destination, everything, actor=None)
    run(again)
    rows = list(Delivery.objects.filter(event=event).order_by("id"))
    assert [row.replay_id for row in rows] == [None, again.pk]
    page = text_of(operator.get(reverse("event-detail", args=[event.pk])))
    assert 'Deliveries <span class="count">2</span>' in page
    live_row = page.split(f'id="delivery-{rows[0].pk}"')[1].split("</tbody>")[0]
    replay_row = page.split(f'id="delivery-{rows[1].pk}"')[1].split("</tbody>")[0]
    assert "badge replay" not in live_row
    link = f'href="/destinations/{destination.pk}/?job={again.job_id}#replay-{again.job_id}"'
    assert "badge replay" in replay_row and link in replay_row
    assert page.index(f'id="delivery-{rows[0].pk}"') < page.index(f'id="delivery-{rows[1].pk}"')
    # The Events list marks the replay's badge too.
    listing = text_of(operator.get(reverse("event-list")))
    assert re.search(r">Kana: delivered</a><a [^>]*>Kana: delivered \(replay\)</a>", listing)
    assert replay.pk != again.pk


def test_a_viewer_sees_replays_and_cannot_start_or_change_one(
    client: Client, make_member: MakeMember, replayed: dict[str, Any]
) -> None:
    destination, replay = replayed["destination"], replayed["replay"]
    running = Replay.objects.get(pk=replay.pk)
    Job.objects.filter(pk=running.job_id).update(status=JobStatus.PAUSED, error="Paused by olga.")
    client.force_login(make_member(username="vic", role="viewer"))
    response = client.get(reverse("destination-delivery", args=[destination.pk]))
    page = words_of(response)
    assert "Replays 1" in page and "Started by Switchboard" in page
    assert "Paused by olga." in page
    for absent in ("Replay history…", ">Resume</button>", "Cancel…", "Send the last 30 days"):
        assert absent not in text_of(response)
    posts = [
        reverse("destination-replay", args=[destination.pk]),
        reverse("destination-replay-preview", args=[destination.pk]),
        reverse("replay-pause", args=[replay.pk]),
        reverse("replay-resume", args=[replay.pk]),
        reverse("replay-cancel", args=[replay.pk]),
    ]
    for url in posts:
        response = client.post(url, form())
        assert response.status_code == 403, url
        assert "needs the <strong>operator</strong> role" in response.content.decode()
    assert client.get(posts[0]).status_code == 403
    assert Job.objects.get(pk=running.job_id).status == JobStatus.PAUSED
    assert Replay.objects.count() == 1
