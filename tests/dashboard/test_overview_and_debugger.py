"""The Overview (numbers per window, per-destination charts, health, conflicts, unmapped events,
recent failures, a bounded number of queries) and a source's live debugger (newest first,
polling with ``after``, pause, search, refused messages, pretty and raw views)."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from dashboard.selectors.debugger import DEBUGGER_ROWS
from destinations.connectors.kana import UNMAPPED
from destinations.delivery.services import destination_create
from destinations.models import (
    Delivery,
    DeliveryStatus,
    Destination,
    Event,
    IngestFailure,
    Profile,
    Source,
)

pytestmark = pytest.mark.django_db

NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing is sent in these tests
NUMBERS_REFRESH = {"HX-Request": "true", "HX-Target": "overview-numbers"}


@pytest.fixture
def admin_client(client: Client, make_member: Any) -> Client:
    client.force_login(make_member(username="boss", role="admin"))
    return client


def text_of(response: Any) -> str:
    return html.unescape(response.content.decode())


def refiner(name: str = "Refiner") -> Destination:
    return destination_create(
        kind="refiner",
        name=name,
        settings_values={"base_url": f"{NOWHERE}/v1"},
        secret_values={"api_key": "rk_test"},
    )


def kana(name: str = "Kana") -> Destination:
    return destination_create(
        kind="kana",
        name=name,
        settings_values={"api_url": f"{NOWHERE}/graphql"},
        secret_values={"api_key": "prv_test"},
    )


class Seeder:
    """Events and their deliveries, created at a chosen age."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.count = 0
        self.now = timezone.now()

    def event(self, age: timedelta, **payload: Any) -> Event:
        self.count += 1
        received = self.now - age
        body = {"type": "track", "userId": f"u-{self.count}", "event": "Report Exported"}
        body.update(payload, messageId=f"m-{self.count}")
        return Event.objects.create(
            source=self.source,
            message_id=body["messageId"],
            type=body["type"],
            user_id=body.get("userId"),
            event=body.get("event"),
            timestamp=received,
            received_at=received,
            payload=body,
        )

    def delivery(
        self, destination: Destination, status: str, age: timedelta, reason: str = ""
    ) -> Delivery:
        event = self.event(age)
        created = event.received_at
        finished = created + timedelta(seconds=1) if status in ("delivered", "failed") else None
        if status == "skipped":
            finished = created
        return Delivery.objects.create(
            event=event,
            destination=destination,
            status=status,
            created_at=created,
            received_at=created,
            retry_until=created + timedelta(hours=4),
            finished_at=finished,
            reason=reason,
            last_error=reason,
        )


def overview_page(client: Client, window: str = "24h") -> Any:
    return client.get(f"{reverse('home')}?window={window}")


def chart_data(response: Any) -> dict[str, Any]:
    found = re.search(
        r'<script id="overview-chart-data" type="application/json">(.*?)</script>',
        response.content.decode(),
        re.S,
    )
    assert found, "the chart data block is missing"
    data: dict[str, Any] = json.loads(found.group(1))
    return data


# --- Overview ---------------------------------------------------------------------------------


@pytest.fixture
def traffic(source: Source) -> dict[str, Any]:
    """Deliveries to one destination at known ages: 10 minutes, 3 hours, 2 days, 10 days."""
    destination = refiner()
    seed = Seeder(source)
    minutes, hours, days, old = (
        timedelta(minutes=10),
        timedelta(hours=3),
        timedelta(days=2),
        timedelta(days=10),
    )
    rows: list[Delivery] = []
    for status, age, times in (
        ("delivered", minutes, 3),
        ("failed", minutes, 1),
        ("pending", minutes, 1),
        ("retrying", minutes, 1),
        ("delivered", hours, 2),
        ("failed", hours, 1),
        ("skipped", hours, 1),
        ("delivered", days, 4),
        ("failed", days, 2),
        ("delivered", old, 5),
    ):
        rows += [
            seed.delivery(destination, status, age, reason="HTTP 401" if status == "failed" else "")
            for _ in range(times)
        ]
    IngestFailure.objects.create(
        source=source, received_at=seed.now - minutes, endpoint="track", reason="bad"
    )
    IngestFailure.objects.create(
        source=source, received_at=seed.now - timedelta(days=3), endpoint="track", reason="bad"
    )
    return {"destination": destination, "rows": rows, "seed": seed}


@pytest.mark.parametrize(
    ("window", "received", "refused", "delivered", "failed", "skipped", "pending", "retrying"),
    [
        ("1h", 6, 1, 3, 1, 0, 2, 1),
        ("24h", 10, 1, 5, 2, 1, 2, 1),
        ("7d", 16, 2, 9, 4, 1, 2, 1),
    ],
)
def test_overview_numbers_for_each_window(
    admin_client: Client,
    traffic: dict[str, Any],
    window: str,
    received: int,
    refused: int,
    delivered: int,
    failed: int,
    skipped: int,
    pending: int,
    retrying: int,
) -> None:
    response = overview_page(admin_client, window)
    numbers = response.context["numbers"]
    totals = numbers.deliveries
    assert (numbers.events_received, numbers.refused_on_ingest) == (received, refused)
    assert (totals.delivered, totals.failed, totals.skipped, totals.pending, totals.retrying) == (
        delivered,
        failed,
        skipped,
        pending,
        retrying,
    )
    body = response.content.decode()
    assert f'<strong id="count-received">{received}</strong>' in body
    assert f'<strong id="count-delivered">{delivered}</strong>' in body
    assert f'<strong id="count-failed">{failed}</strong>' in body
    assert f'<strong id="count-pending">{pending}</strong>' in body
    assert f"{refused} refused on ingest" in body
    # The window selector marks the one shown, and every choice is a plain link.
    assert f'href="/?window={window}" aria-current="true"' in body
    # Without JavaScript the same numbers are in the table.
    row = re.search(r'<tr id="traffic-\d+">(.*?)</tr>', body, re.S)
    assert row is not None
    cells = re.findall(r'<td class="number[^"]*">(\d+)</td>', row.group(1))
    assert cells == [str(n) for n in (delivered, failed, skipped, pending)] + [
        str(delivered + failed + skipped + pending)
    ]


def test_numbers_refresh_as_a_fragment(admin_client: Client, traffic: dict[str, Any]) -> None:
    response = admin_client.get("/?window=1h", headers=NUMBERS_REFRESH)
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="overview-numbers"')
    assert "<html" not in body and "overview-chart-data" not in body
    assert 'hx-trigger="every 5s"' in body and 'hx-get="/?window=1h"' in body
    assert '<strong id="count-delivered">3</strong>' in body
    assert "HX-Request" in response["Vary"]


def slot_start(moment: datetime, seconds: int) -> int:
    stamp = int(moment.timestamp())
    return stamp - stamp % seconds


@pytest.mark.parametrize(
    ("window", "span", "size"),
    [("24h", timedelta(days=1), 3600), ("7d", timedelta(days=7), 6 * 3600)],
)
def test_chart_data_has_each_destinations_volume_and_failures_per_slot(
    admin_client: Client, traffic: dict[str, Any], window: str, span: timedelta, size: int
) -> None:
    quiet = kana("Quiet Kana")
    before = datetime.now(UTC)
    response = overview_page(admin_client, window)
    after = datetime.now(UTC)
    data = chart_data(response)
    assert data["slot_seconds"] == size
    # From the slot holding the window's start to the one holding now, on whole multiples.
    assert data["slots"][0] % size == 0
    assert data["slots"][0] <= (before - span).timestamp() < data["slots"][0] + size + 1
    assert data["slots"][-1] <= after.timestamp() < data["slots"][-1] + size
    assert all(b - a == size for a, b in zip(data["slots"], data["slots"][1:], strict=False))
    slots = len(data["slots"])
    assert slots in (span // timedelta(seconds=size), span // timedelta(seconds=size) + 1)

    expected_volume = [0] * slots
    expected_failed = [0] * slots
    for delivery in traffic["rows"]:
        start = slot_start(delivery.created_at, size)
        if start in data["slots"]:
            index = data["slots"].index(start)
            expected_volume[index] += 1
            expected_failed[index] += delivery.status == DeliveryStatus.FAILED
    busy = data["destinations"][str(traffic["destination"].pk)]
    assert busy["name"] == "Refiner"
    assert busy["volume"] == expected_volume
    assert busy["failed"] == expected_failed
    assert sum(busy["volume"]) == (10 if window == "24h" else 16)
    assert data["destinations"][str(quiet.pk)] == {
        "name": "Quiet Kana",
        "volume": [0] * slots,
        "failed": [0] * slots,
    }
    body = response.content.decode()
    assert f'data-series="{traffic["destination"].pk}"' in body
    assert 'data-chart-data="overview-chart-data"' in body
    assert "vendor/uplot-1.6.32/uPlot.iife.min.js" in body
    assert "<script>" not in body  # nothing inline: the Content-Security-Policy forbids it


def test_destination_health_states(admin_client: Client, source: Source) -> None:
    now = timezone.now()
    healthy, failing, paused, disabled, behind = (
        refiner(name) for name in ("A healthy", "B failing", "C paused", "D disabled", "E behind")
    )
    Destination.objects.filter(pk=healthy.pk).update(
        last_success_at=now, last_error_at=now - timedelta(hours=1), last_error="HTTP 500 once"
    )
    Destination.objects.filter(pk=failing.pk).update(
        last_success_at=now - timedelta(hours=1),
        last_error_at=now,
        last_error="Refiner refused the API key (HTTP 401)",
    )
    Destination.objects.filter(pk=paused.pk).update(
        paused_at=now, paused_reason="failing for 30 minutes: HTTP 503 from Refiner"
    )
    Destination.objects.filter(pk=disabled.pk).update(enabled=False)
    seed = Seeder(source)
    for status in ("pending", "retrying", "sending", "delivered"):
        seed.delivery(behind, status, timedelta(days=20))  # backlog is counted whatever its age
    response = overview_page(admin_client)
    states = {row.destination.name: row.state for row in response.context["report"].destinations}
    assert states == {
        "A healthy": "healthy",
        "B failing": "failing",
        "C paused": "paused",
        "D disabled": "disabled",
        "E behind": "backlog",
    }
    body = text_of(response)
    for destination, state in ((failing, "failing"), (paused, "paused"), (behind, "backlog")):
        assert f'<tr id="health-{destination.pk}" data-state="{state}">' in body
    assert "failing for 30 minutes: HTTP 503 from Refiner" in body
    assert '<strong class="backlog">3</strong>' in body
    assert "Refiner refused the API key (HTTP 401)" in body


def test_open_conflicts_and_unmapped_events_link_to_their_pages(
    admin_client: Client, source: Source
) -> None:
    Profile.objects.create(user_id="a1", email="same@x.io", billing_id="cus_A1")
    Profile.objects.create(user_id="a2", email="same@x.io", billing_id="cus_A2")
    Profile.objects.create(user_id="b1", email="b@x.io")  # no billing id
    mapped, other = kana("Kana"), kana("Kana EU")
    seed = Seeder(source)
    for age in (timedelta(minutes=5), timedelta(hours=2), timedelta(days=3)):
        seed.delivery(mapped, "skipped", age, reason=UNMAPPED)
    seed.delivery(mapped, "skipped", timedelta(minutes=5), reason="no userId")  # not unmapped
    seed.delivery(other, "skipped", timedelta(minutes=5), reason=UNMAPPED)
    response = overview_page(admin_client)
    body = text_of(response)
    assert '<strong id="count-duplicate-emails">1</strong>' in body
    assert '<strong id="count-without-billing-id">1</strong>' in body
    assert 'href="/conflicts/#duplicate-emails-title"' in body
    unmapped = {
        row.destination.name: row.totals.unmapped
        for row in response.context["report"].kana_destinations
    }
    assert unmapped == {"Kana": 2, "Kana EU": 1}
    link = f'<a href="/destinations/{mapped.pk}/unmapped/"><strong>2</strong>'
    assert f'<li id="unmapped-{mapped.pk}">{link}' in body
    week = overview_page(admin_client, "7d").context["report"]
    assert {row.destination.name: row.totals.unmapped for row in week.kana_destinations} == {
        "Kana": 3,
        "Kana EU": 1,
    }


def test_recent_permanent_failures_link_to_samples_and_event(
    admin_client: Client, source: Source
) -> None:
    destination = refiner()
    seed = Seeder(source)
    old = seed.delivery(destination, "failed", timedelta(days=2), reason="too old for 24 h")
    failures = [
        seed.delivery(destination, "failed", timedelta(minutes=30 - n), reason=f"HTTP 40{n % 4}")
        for n in range(12)
    ]
    seed.delivery(destination, "skipped", timedelta(minutes=1), reason="skipped is not failed")
    response = overview_page(admin_client)
    shown = response.context["report"].recent_failures
    assert [d.pk for d in shown] == [d.pk for d in reversed(failures)][:10]
    body = text_of(response)
    newest = failures[-1]
    row = re.search(rf'<tr id="failure-{newest.pk}">(.*?)</tr>', body, re.S)
    assert row is not None
    assert f'href="/destinations/{destination.pk}/?window=24h#errors"' in row.group(1)
    assert f'href="/events/{newest.event_id}/"' in row.group(1)
    assert "HTTP 403" in row.group(1)
    assert "too old for 24 h" not in body and "skipped is not failed" not in body
    # Only failures created in the window are listed.
    Delivery.objects.filter(pk__in=[d.pk for d in failures[:-1]]).delete()
    day = overview_page(admin_client).context["report"].recent_failures
    assert [d.pk for d in day] == [newest.pk]
    week = overview_page(admin_client, "7d").context["report"].recent_failures
    assert [d.pk for d in week] == [newest.pk, old.pk]


def test_settled_slots_are_counted_once_then_reused(admin_client: Client, source: Source) -> None:
    """Slots older than the retry window are done changing: their counts are kept for a minute,
    and only the recent slots are counted on each load."""
    destination = refiner()
    seed = Seeder(source)
    seed.delivery(destination, "delivered", timedelta(hours=10))
    seed.delivery(destination, "delivered", timedelta(minutes=10))
    # In the oldest slot, which is partly outside the window: counted, never twice.
    seed.delivery(destination, "delivered", timedelta(hours=23, minutes=55))
    first = overview_page(admin_client).context["numbers"].deliveries
    assert first.delivered == 3
    # A change inside a settled slot waits for the cache to expire; a recent one shows at once.
    seed.delivery(destination, "failed", timedelta(hours=10, minutes=1), reason="late retry")
    seed.delivery(destination, "failed", timedelta(minutes=11), reason="just now")
    second = overview_page(admin_client)
    totals = second.context["numbers"].deliveries
    assert (totals.delivered, totals.failed) == (3, 1)
    assert sum(chart_data(second)["destinations"][str(destination.pk)]["volume"]) == 4
    cache.clear()
    totals = overview_page(admin_client).context["numbers"].deliveries
    assert (totals.delivered, totals.failed) == (3, 2)
    # The tiles' refresh reads the same counts.
    fragment = admin_client.get("/", headers=NUMBERS_REFRESH).content.decode()
    assert '<strong id="count-failed">2</strong>' in fragment


def test_overview_query_count_does_not_grow_with_destinations(
    admin_client: Client, source: Source, django_assert_max_num_queries: Any
) -> None:
    seed = Seeder(source)
    for n in range(25):
        destination = kana(f"Kana {n:02d}") if n % 2 else refiner(f"Refiner {n:02d}")
        for status in ("delivered", "failed", "pending", "skipped"):
            seed.delivery(destination, status, timedelta(minutes=n + 1), reason="why")
    with django_assert_max_num_queries(15):
        response = overview_page(admin_client)
    assert len(response.context["report"].destinations) == 25
    assert len(chart_data(response)["destinations"]) == 25
    with django_assert_max_num_queries(8):
        admin_client.get("/", headers=NUMBERS_REFRESH)


def test_empty_overview_invites_to_add_a_destination(admin_client: Client) -> None:
    body = text_of(overview_page(admin_client))
    assert "No destinations yet" in body
    assert 'href="/destinations/new/"' in body
    assert "No permanent failures last 24 hours." in body


# --- Debugger ---------------------------------------------------------------------------------


def debugger_url(source: Source, query: str = "") -> str:
    url = reverse("source-debugger", args=[source.pk])
    return f"{url}?{query}" if query else url


def row_keys_of(body: str) -> list[str]:
    return re.findall(r'<li id="((?:event|refused)-\d+)"', body)


def row_keys(response: Any) -> list[str]:
    return row_keys_of(response.content.decode())


def poll(client: Client, source: Source, query: str, target: str = "debugger-rows") -> Any:
    return client.get(
        debugger_url(source, query), headers={"HX-Request": "true", "HX-Target": target}
    )


@pytest.fixture
def sent(post_ingest: Any, source: Source) -> list[Event]:
    post_ingest(
        "identify",
        {
            "userId": "u-ada",
            "messageId": "msg-1",
            "traits": {"email": "ada@example.com", "address": {"city": "Oslo"}, "vip": True},
            "context": {"library": {"name": "analytics-python", "version": "2.3.3"}},
        },
    )
    post_ingest(
        "track",
        {
            "userId": "u-ada",
            "event": "Report Exported",
            "messageId": "msg-2",
            "properties": {"format": "csv", "rows": 1200, "filters": ["a", "b"], "note": None},
        },
    )
    post_ingest("page", {"anonymousId": "anon-7", "name": "Pricing", "messageId": "msg-3"})
    return list(Event.objects.order_by("id"))


def test_debugger_shows_newest_first_and_is_linked_from_the_source(
    admin_client: Client, source: Source, sent: list[Event]
) -> None:
    response = admin_client.get(debugger_url(source))
    assert response.status_code == 200
    assert row_keys(response) == [f"event-{e.pk}" for e in reversed(sent)]
    body = response.content.decode()
    # Live: polling for what is newer than the newest row shown.
    assert f'hx-get="{debugger_url(source)}?after={sent[-1].pk}&amp;after_refused=0"' in body
    assert 'hx-trigger="every 1s"' in body and 'hx-swap="afterbegin"' in body
    assert f'data-keep-rows="{DEBUGGER_ROWS}"' in body
    detail = admin_client.get(reverse("source-detail", args=[source.pk])).content.decode()
    assert f'href="{debugger_url(source)}"' in detail


def test_poll_returns_only_newer_events(
    admin_client: Client, source: Source, sent: list[Event], post_ingest: Any
) -> None:
    first, second, third = sent
    response = poll(admin_client, source, f"after={first.pk}&after_refused=0")
    assert response.status_code == 200
    assert row_keys(response) == [f"event-{third.pk}", f"event-{second.pk}"]
    body = response.content.decode()
    assert "<html" not in body
    # The live controls come along out of band, polling from the newest row now shown.
    assert 'id="debugger-live" class="live-state live" hx-swap-oob="true"' in body
    assert f"after={third.pk}&amp;after_refused=0" in body
    assert "HX-Target" in response["Vary"]
    # Nothing newer: 204, and htmx leaves the page as it is.
    assert poll(admin_client, source, f"after={third.pk}").status_code == 204
    post_ingest("track", {"userId": "u-bo", "event": "Seat Added", "messageId": "msg-4"})
    newer = poll(admin_client, source, f"after={third.pk}")
    assert row_keys(newer) == [f"event-{Event.objects.get(message_id='msg-4').pk}"]


def test_pause_and_resume(admin_client: Client, source: Source, sent: list[Event]) -> None:
    newest = sent[-1].pk
    paused = admin_client.get(debugger_url(source, "paused=1"))
    body = paused.content.decode()
    assert row_keys(paused) == [f"event-{e.pk}" for e in reversed(sent)]  # still shown
    assert 'hx-trigger="every 1s"' not in body
    assert "Paused" in body
    # Resume is a plain link to the live page; with htmx it fetches the live controls, which
    # carry on from the newest row shown.
    assert f'<a class="button primary" href="{debugger_url(source)}"' in body
    assert f'hx-get="{debugger_url(source)}?after={newest}&amp;after_refused=0"' in body
    assert '<noscript><meta http-equiv="refresh"' not in body

    live = admin_client.get(debugger_url(source)).content.decode()
    assert f'href="{debugger_url(source)}?paused=1"' in live
    assert (
        f'hx-get="{debugger_url(source)}?paused=1&amp;after={newest}&amp;after_refused=0"' in live
    )
    assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in live

    # With htmx: Pause swaps the controls alone (the rows stay); a poll while paused is a no-op.
    controls = poll(admin_client, source, f"paused=1&after={newest}", target="debugger-live")
    fragment = controls.content.decode()
    assert fragment.lstrip().startswith('<div id="debugger-live" class="live-state paused"')
    assert row_keys(controls) == []
    assert poll(admin_client, source, f"paused=1&after={sent[0].pk}").status_code == 204
    resumed = poll(admin_client, source, f"after={newest}", target="debugger-live")
    assert 'hx-trigger="every 1s"' in resumed.content.decode()
    assert f"after={newest}&amp;after_refused=0" in resumed.content.decode()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Report Exported", ["msg-2"]),
        ("u-ada", ["msg-2", "msg-1"]),
        ("anon-7", ["msg-3"]),
        ("msg-1", ["msg-1"]),
        ("Report", []),  # exact matches only: each is an indexed lookup
    ],
)
def test_search(
    admin_client: Client, source: Source, sent: list[Event], query: str, expected: list[str]
) -> None:
    response = admin_client.get(debugger_url(source), {"q": query})
    by_key = {f"event-{e.pk}": e.message_id for e in sent}
    assert [by_key[key] for key in row_keys(response)] == expected
    body = response.content.decode()
    assert f'value="{html.escape(query)}"' in body
    # Polling keeps the search.
    assert "q=" + query.replace(" ", "+") in body


def test_refused_messages_are_interleaved_with_their_reason(
    admin_client: Client, source: Source, post_ingest: Any
) -> None:
    post_ingest("track", {"userId": "u-1", "event": "First", "messageId": "ok-1"})
    refused = post_ingest("track", {"userId": "u-1", "messageId": "bad-1"})  # no event name
    assert refused.status_code == 400
    post_ingest("track", {"userId": "u-1", "event": "Second", "messageId": "ok-2"})
    failure = IngestFailure.objects.get()
    first, second = Event.objects.order_by("id")
    response = admin_client.get(debugger_url(source))
    assert row_keys(response) == [
        f"event-{second.pk}",
        f"refused-{failure.pk}",
        f"event-{first.pk}",
    ]
    body = text_of(response)
    assert '<span class="badge refused">failed on ingest</span>' in body
    assert failure.reason and failure.reason in body
    assert "/v1/track" in body
    # What was sent, field by field and raw.
    assert '<tr><th>messageId</th><td class="value-text">bad-1</td></tr>' in body
    assert '"messageId": "bad-1"' in body
    # The poll picks up new refusals by their own cursor.
    post_ingest("track", {"anonymousId": "a-9", "messageId": "bad-2"})
    newer = poll(admin_client, source, f"after={second.pk}&after_refused={failure.pk}")
    assert row_keys(newer) == [f"refused-{IngestFailure.objects.latest('id').pk}"]
    # A search finds refused messages by their text.
    found = admin_client.get(debugger_url(source), {"q": "bad-1"})
    assert row_keys(found) == [f"refused-{failure.pk}"]


def test_pretty_and_raw_views(admin_client: Client, source: Source, sent: list[Event]) -> None:
    identify, track, page = sent
    body = text_of(admin_client.get(debugger_url(source)))
    track_row = re.search(rf'<li id="event-{track.pk}".*?</li>', body, re.S)
    assert track_row is not None
    row = track_row.group(0)
    # Pretty: the facts first, then properties by dotted path, typed.
    assert '<dt>Event</dt><dd class="value-text">Report Exported</dd>' in row
    assert '<dt>User ID</dt><dd class="value-text">u-ada</dd>' in row
    assert '<dt>Message ID</dt><dd class="value-text">msg-2</dd>' in row
    assert '<tr><th>format</th><td class="value-text">csv</td></tr>' in row
    assert '<tr><th>rows</th><td class="value-number">1200</td></tr>' in row
    assert '<tr><th>filters</th><td class="value-json">["a", "b"]</td></tr>' in row
    assert '<tr><th>note</th><td class="value-null">null</td></tr>' in row
    # Raw: the stored payload as indented JSON; pretty and raw switch without JavaScript.
    assert '"event": "Report Exported"' in row
    assert '<pre class="view raw json">' in row
    assert f'<input type="radio" name="view-event-{track.pk}"' in row
    identify_row = re.search(rf'<li id="event-{identify.pk}".*?</li>', body, re.S)
    assert identify_row is not None
    assert '<tr><th>address.city</th><td class="value-text">Oslo</td></tr>' in identify_row.group(0)
    assert '<tr><th>vip</th><td class="value-bool">true</td></tr>' in identify_row.group(0)
    assert '<dd class="value-text">analytics-python 2.3.3</dd>' in identify_row.group(0)
    page_row = re.search(rf'<li id="event-{page.pk}".*?</li>', body, re.S)
    assert page_row is not None
    assert '<dt>Name</dt><dd class="value-text">Pricing</dd>' in page_row.group(0)


def test_the_list_is_capped(admin_client: Client, source: Source, post_ingest: Any) -> None:
    batch = [
        {"type": "track", "userId": "u", "event": "Tick", "messageId": f"t-{n}"}
        for n in range(DEBUGGER_ROWS + 5)
    ]
    assert post_ingest("batch", {"batch": batch}).status_code == 200
    response = admin_client.get(debugger_url(source))
    keys = row_keys(response)
    assert len(keys) == DEBUGGER_ROWS
    newest = Event.objects.order_by("-id")[:DEBUGGER_ROWS]
    assert keys == [f"event-{e.pk}" for e in newest]
    # A poll after a long pause brings the newest ones and says that older ones were left out.
    oldest = Event.objects.order_by("id").first()
    assert oldest is not None
    caught_up = poll(admin_client, source, f"after={oldest.pk}")
    assert len(row_keys(caught_up)) == DEBUGGER_ROWS
    assert "are not shown here" in caught_up.content.decode()


def test_debugger_of_an_unknown_source_is_404(admin_client: Client) -> None:
    assert admin_client.get("/sources/999999/debugger/").status_code == 404


def test_what_was_sent_is_escaped(admin_client: Client, source: Source, post_ingest: Any) -> None:
    attack = '<img src=x onerror="alert(1)">'
    post_ingest(
        "track",
        {"userId": attack, "event": attack, "properties": {attack: attack}, "messageId": "x-1"},
    )
    post_ingest("track", {"userId": attack, "messageId": "x-2"})  # refused: no event name
    body = admin_client.get(debugger_url(source)).content.decode()
    assert len(row_keys_of(body)) == 2
    assert "<img" not in body
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in body
