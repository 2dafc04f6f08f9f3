"""Destinations in the dashboard: the settings form (secrets write-only), Test connection over
real HTTP to the fake Refiner, health and backlog, the Event delivery page's numbers, errors
and retries, the retry job's progress, and deliveries on an event's page."""

from __future__ import annotations

import html
import itertools
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from dashboard.charts import nice_ceiling, volume_chart
from dashboard.selectors.delivery_stats import (
    VolumeBucket,
    delivery_report,
    delivery_window,
    percentile,
)
from destinations.delivery import engine, jobs
from destinations.delivery.services import destination_create
from destinations.models import (
    AttemptOutcome,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Destination,
    Event,
    Job,
    JobStatus,
    Source,
)
from destinations.standins.refiner import FakeRefiner

LIVE_KEY = "rk_live_5ecret_Key_7788"


@pytest.fixture
def staff_client(client: Client, make_member: Any) -> Client:
    user = make_member()
    client.force_login(user)
    return client


def text_of(response: Any) -> str:
    """The response body as a reader sees it: entities decoded."""
    return html.unescape(response.content.decode())


def make_event(source: Source, n: int, **payload: Any) -> Event:
    now = timezone.now()
    body = {"type": "track", "userId": f"u-{n}", "event": "Report Exported", **payload}
    body["messageId"] = f"m-{n}"
    return Event.objects.create(
        source=source,
        message_id=body["messageId"],
        type=body["type"],
        user_id=body.get("userId"),
        event=body.get("event"),
        timestamp=now,
        received_at=now,
        payload=body,
    )


def seed_delivery(
    destination: Destination,
    event: Event,
    status: str,
    *,
    age: timedelta = timedelta(minutes=10),
    latency: timedelta | None = None,
    reason: str = "",
    attempts: int = 0,
) -> Delivery:
    created = timezone.now() - age
    finished: datetime | None = None
    if status in (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED):
        finished = created + (latency or timedelta(seconds=1))
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
        attempts=attempts,
    )


def seed_attempt(delivery: Delivery, number: int, *, status: int = 500, body: str = "") -> None:
    DeliveryAttempt.objects.create(
        delivery=delivery,
        number=number,
        outcome=AttemptOutcome.FAILED if status < 500 else AttemptOutcome.RETRY,
        status_code=status,
        duration_ms=40 + number,
        error=f"HTTP {status} from Refiner",
        request={
            "method": "POST",
            "url": "https://api.refiner.io/v1/track-event",
            "headers": {"Authorization": "Bearer ••••7788"},
            "json": {"id": delivery.event.user_id, "event": f"attempt-{number}"},
        },
        response={"status": status, "headers": {"Content-Type": "application/json"}, "body": body},
    )


# --- access -------------------------------------------------------------------------------


def test_every_destination_page_requires_login(client: Client, refiner_destination: Destination):
    job = Job.objects.create(kind="retry_failed", params={"destination_id": refiner_destination.pk})
    pk = refiner_destination.pk
    for url in [
        reverse("destination-list"),
        reverse("destination-new"),
        reverse("destination-new-kind", args=["refiner"]),
        reverse("destination-delivery", args=[pk]),
        reverse("destination-edit", args=[pk]),
        reverse("job-detail", args=[job.pk]),
    ]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url
    for url in [
        reverse("destination-toggle", args=[pk]),
        reverse("destination-resume", args=[pk]),
        reverse("destination-retry-failed", args=[pk]),
        reverse("destination-test", args=[pk]),
    ]:
        assert client.post(url).status_code == 302, url
    refiner_destination.refresh_from_db()
    assert refiner_destination.enabled is True


def test_actions_need_csrf(refiner_destination: Destination, make_member: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_member())
    response = client.post(reverse("destination-toggle", args=[refiner_destination.pk]))
    assert response.status_code == 403
    refiner_destination.refresh_from_db()
    assert refiner_destination.enabled is True


# --- the settings form --------------------------------------------------------------------


def test_new_destination_form_is_generated_from_the_connector(staff_client: Client) -> None:
    choose = staff_client.get(reverse("destination-new"))
    assert reverse("destination-new-kind", args=["refiner"]) in choose.content.decode()
    page = staff_client.get(reverse("destination-new-kind", args=["refiner"]))
    body = page.content.decode()
    form = page.context["form"]
    assert [form[name].label for name in ("api_key", "base_url")] == ["API Key", "Base URL"]
    assert 'value="https://api.refiner.io/v1"' in body
    assert 'type="password" name="api_key"' in body
    assert reverse("destination-test-new", args=["refiner"]) in body


def test_create_destination_stores_the_key_encrypted_and_never_shows_it(
    staff_client: Client, fake_refiner: FakeRefiner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = staff_client.post(
        reverse("destination-new-kind", args=["refiner"]),
        {"name": "Refiner prod", "enabled": "on", "api_key": LIVE_KEY, "base_url": ""},
        follow=True,
    )
    destination = Destination.objects.get(name="Refiner prod")
    assert response.redirect_chain == [
        (reverse("destination-delivery", args=[destination.pk]), 302)
    ]
    assert "Destination 'Refiner prod' created." in text_of(response)
    assert destination.kind == "refiner" and destination.enabled
    assert destination.settings == {"base_url": "https://api.refiner.io/v1"}
    assert destination.secrets == {"api_key": LIVE_KEY}
    assert LIVE_KEY not in destination.secrets_encrypted
    assert "5ecret" not in destination.secrets_encrypted
    assert LIVE_KEY not in response.content.decode()

    edit = staff_client.get(reverse("destination-edit", args=[destination.pk]))
    body = text_of(edit)
    assert LIVE_KEY not in body
    assert 'placeholder="••••••••7788"' in body
    assert "Leave blank to keep" in body
    assert LIVE_KEY not in caplog.text


def test_short_key_shows_no_characters_at_all(staff_client: Client, refiner_destination) -> None:
    body = text_of(staff_client.get(reverse("destination-edit", args=[refiner_destination.pk])))
    assert 'placeholder="••••••••"' in body
    assert "rk_test" not in body


def test_create_without_key_and_duplicate_name_are_refused(
    staff_client: Client, refiner_destination: Destination
) -> None:
    url = reverse("destination-new-kind", args=["refiner"])
    missing = staff_client.post(url, {"name": "Another", "base_url": ""})
    assert missing.context["form"].errors == {"api_key": ["This field is required."]}
    duplicate = staff_client.post(url, {"name": "Refiner", "api_key": "rk_x", "base_url": ""})
    assert "A destination named 'Refiner' already exists." in text_of(duplicate)
    bad_url = staff_client.post(url, {"name": "Third", "api_key": "rk_x", "base_url": "not a url"})
    assert bad_url.context["form"].errors == {"base_url": ["Enter a valid URL."]}
    assert Destination.objects.count() == 1


def test_edit_with_the_key_left_blank_keeps_it(
    staff_client: Client, refiner_destination: Destination, fake_refiner: FakeRefiner
) -> None:
    url = reverse("destination-edit", args=[refiner_destination.pk])
    staff_client.post(
        url,
        {"name": "Refiner EU", "enabled": "on", "api_key": "", "base_url": fake_refiner.base_url},
    )
    refiner_destination.refresh_from_db()
    assert refiner_destination.name == "Refiner EU"
    assert refiner_destination.secrets == {"api_key": "rk_test"}

    staff_client.post(
        url,
        {"name": "Refiner EU", "enabled": "on", "api_key": LIVE_KEY, "base_url": ""},
    )
    refiner_destination.refresh_from_db()
    assert refiner_destination.secrets == {"api_key": LIVE_KEY}
    assert refiner_destination.settings == {"base_url": "https://api.refiner.io/v1"}


# --- the rate limit ---------------------------------------------------------------------------


def test_the_rate_limit_field_names_each_kinds_default(staff_client: Client) -> None:
    refiner = staff_client.get(reverse("destination-new-kind", args=["refiner"]))
    field = refiner.context["form"]["rate_limit_per_minute"]
    assert field.label == "Rate limit (requests per minute)"
    assert field.help_text == "Leave blank for Refiner's default, 4,000 requests per minute."
    assert 'type="number" name="rate_limit_per_minute"' in refiner.content.decode()
    kana = staff_client.get(reverse("destination-new-kind", args=["kana"]))
    help_text = kana.context["form"]["rate_limit_per_minute"].help_text
    assert help_text == "Leave blank for Kana's default: no limit."


def test_a_rate_limit_is_set_changed_and_cleared(
    staff_client: Client, fake_refiner: FakeRefiner
) -> None:
    form = {"name": "Refiner", "enabled": "on", "api_key": LIVE_KEY, "base_url": ""}
    staff_client.post(
        reverse("destination-new-kind", args=["refiner"]), {**form, "rate_limit_per_minute": "600"}
    )
    destination = Destination.objects.get()
    assert destination.rate_limit_per_minute == 600
    edit_url = reverse("destination-edit", args=[destination.pk])
    assert staff_client.get(edit_url).context["form"]["rate_limit_per_minute"].value() == 600

    staff_client.post(edit_url, {**form, "api_key": "", "rate_limit_per_minute": "1500"})
    destination.refresh_from_db()
    assert destination.rate_limit_per_minute == 1500
    staff_client.post(edit_url, {**form, "api_key": "", "rate_limit_per_minute": ""})
    destination.refresh_from_db()
    assert destination.rate_limit_per_minute == 0  # the connector's default again
    assert staff_client.get(edit_url).context["form"]["rate_limit_per_minute"].value() is None


@pytest.mark.parametrize("typed", ["0", "-5", "abc", "2.5", "1000001"])
def test_a_rate_limit_must_be_a_positive_whole_number(
    staff_client: Client, refiner_destination: Destination, typed: str
) -> None:
    response = staff_client.post(
        reverse("destination-edit", args=[refiner_destination.pk]),
        {"name": "Renamed", "enabled": "on", "api_key": "", "base_url": "",
         "rate_limit_per_minute": typed},
    )  # fmt: skip
    [error] = response.context["form"].errors["rate_limit_per_minute"]
    assert error in (
        "Enter a whole number of requests per minute, 1 or more, or leave it blank.",
        "Ensure this value is less than or equal to 1000000.",
    )
    refiner_destination.refresh_from_db()
    assert refiner_destination.name == "Refiner" and refiner_destination.rate_limit_per_minute == 0


def test_a_refused_save_keeps_the_stored_rate_limit(
    staff_client: Client, refiner_destination: Destination
) -> None:
    Destination.objects.filter(pk=refiner_destination.pk).update(rate_limit_per_minute=50)
    response = staff_client.post(
        reverse("destination-edit", args=[refiner_destination.pk]),
        {"name": "Refiner", "enabled": "on", "api_key": "", "base_url": "ftp://nope",
         "rate_limit_per_minute": "900"},
    )  # fmt: skip
    assert response.context["form"].errors
    refiner_destination.refresh_from_db()
    assert refiner_destination.rate_limit_per_minute == 50


# --- Test connection, over HTTP to the fake Refiner ------------------------------------------


def test_connection_with_typed_values_succeeds(
    staff_client: Client, fake_refiner: FakeRefiner
) -> None:
    response = staff_client.post(
        reverse("destination-test-new", args=["refiner"]),
        {"name": "", "api_key": "rk_test", "base_url": fake_refiner.base_url},
        headers={"HX-Request": "true"},
    )
    body = text_of(response)
    assert body.lstrip().startswith('<div id="test-result"')
    assert "<html" not in body
    assert "Connected to Refiner project 'Switchboard tests'" in body
    [call] = fake_refiner.requests_to("/")
    assert call.header("Authorization") == "Bearer rk_test"
    assert "HX-Request" in response["Vary"]


def test_connection_failure_shows_the_exact_error(
    staff_client: Client, fake_refiner: FakeRefiner
) -> None:
    url = reverse("destination-test-new", args=["refiner"])
    values = {"api_key": "rk_unknown", "base_url": fake_refiner.base_url}
    wrong_key = staff_client.post(url, values, headers={"HX-Request": "true"})
    assert "Refiner answered HTTP 404: API key not valid or does not exist" in text_of(wrong_key)
    assert 'class="message error"' in wrong_key.content.decode()

    fake_refiner.server_error(times=1)
    values["api_key"] = "rk_test"
    down = staff_client.post(url, values, headers={"HX-Request": "true"})
    assert "Refiner answered HTTP 500: Server Error" in text_of(down)

    fake_refiner.refuse_connections()
    refused = staff_client.post(url, values, headers={"HX-Request": "true"})
    port = fake_refiner.base_url.split(":")[2].split("/")[0]
    assert headline_of(refused) == (
        f"Could not reach {fake_refiner.base_url}/: connection refused by 127.0.0.1:{port} "
        "(nothing is listening there)"
    )

    no_key = staff_client.post(
        url, {"base_url": fake_refiner.base_url}, headers={"HX-Request": "true"}
    )
    assert "API Key: This field is required." in text_of(no_key)


def headline_of(response: Any) -> str:
    """What a failed Test connection says first, outside its Details toggle."""
    match = re.search(r'<div class="message error"><p>(.*?)</p>', text_of(response), re.S)
    assert match, text_of(response)
    return match[1]


def details_of(response: Any) -> str:
    match = re.search(
        r"<details><summary>Details</summary><pre[^>]*>(.*?)</pre>", text_of(response), re.S
    )
    assert match, text_of(response)
    return match[1]


def test_connection_failures_are_said_in_words_with_the_raw_error_behind_details(
    staff_client: Client, fake_refiner: FakeRefiner, settings: Any
) -> None:
    url = reverse("destination-test-new", args=["refiner"])

    def tried(base_url: str) -> Any:
        values = {"api_key": "rk_test", "base_url": base_url}
        return staff_client.post(url, values, headers={"HX-Request": "true"})

    unknown_host = tried("http://api.refiner.invalid/v1")
    assert headline_of(unknown_host) == (
        "Could not reach http://api.refiner.invalid/v1/: could not resolve the host "
        "api.refiner.invalid"
    )
    assert "NameResolutionError" in details_of(unknown_host)
    assert "ConnectionPool" not in headline_of(unknown_host)

    # https:// to a server that speaks plain HTTP: the TLS handshake fails.
    port = fake_refiner.base_url.split(":")[2].split("/")[0]
    tls = tried(f"https://127.0.0.1:{port}/v1")
    assert headline_of(tls) == (
        f"Could not reach https://127.0.0.1:{port}/v1/: TLS problem with 127.0.0.1: wrong "
        "version number (is it an http:// address?)"
    )
    assert "SSLError" in details_of(tls)

    settings.DELIVERY_TIMEOUT_SECONDS = 1
    fake_refiner.hang(seconds=3, times=1)
    slow = tried(fake_refiner.base_url)
    assert headline_of(slow) == (
        f"Could not reach {fake_refiner.base_url}/: timed out waiting for 127.0.0.1 to answer"
    )
    assert "Read timed out" in details_of(slow)


def test_connection_on_a_saved_destination_uses_the_stored_key_when_left_blank(
    staff_client: Client, refiner_destination: Destination, fake_refiner: FakeRefiner
) -> None:
    url = reverse("destination-test", args=[refiner_destination.pk])
    # Without htmx the whole form comes back, with the result and the typed values.
    response = staff_client.post(
        url, {"name": "Refiner", "api_key": "", "base_url": fake_refiner.base_url}
    )
    body = text_of(response)
    assert "<html" in body
    assert "Connected to Refiner project 'Switchboard tests'" in body
    assert f'value="{fake_refiner.base_url}"' in body
    assert "rk_test" not in body
    [call] = fake_refiner.requests_to("/")
    assert call.header("Authorization") == "Bearer rk_test"

    fake_refiner.reject_key(404)
    rejected = staff_client.post(url, {"api_key": "", "base_url": fake_refiner.base_url})
    assert "Refiner answered HTTP 404: API key not valid or does not exist" in text_of(rejected)


# --- list, enable/disable, resume --------------------------------------------------------


def test_list_shows_health_and_backlog_without_a_query_per_row(
    staff_client: Client,
    refiner_destination: Destination,
    source: Source,
    django_assert_max_num_queries: Any,
) -> None:
    for i in range(8):
        destination_create(
            kind="refiner",
            name=f"Refiner {i}",
            settings_values={},
            secret_values={"api_key": f"rk_{i}"},
        )
    statuses = ["pending", "retrying", "sending", "delivered", "failed", "skipped", "pending"]
    for n, status in enumerate(statuses):
        seed_delivery(refiner_destination, make_event(source, n), status)
    now = timezone.now()
    Destination.objects.filter(pk=refiner_destination.pk).update(
        last_success_at=now - timedelta(minutes=5),
        last_error_at=now - timedelta(minutes=1),
        last_error="HTTP 500 from Refiner: Server Error",
        paused_at=now,
        paused_reason="Paused after 50+ failures in a row",
    )
    # The page's own few queries plus the frame's (session, user, role, demo banner, the
    # conflict counts in the navigation): constant, whatever the number of destinations.
    with django_assert_max_num_queries(7):
        response = staff_client.get(reverse("destination-list"))
    listed = {d.name: d for d in response.context["destinations"]}
    assert listed["Refiner"].backlog == 4
    assert listed["Refiner 0"].backlog == 0
    body = text_of(response)
    assert "HTTP 500 from Refiner: Server Error" in body
    assert "Paused after 50+ failures in a row" in body
    assert body.count(">Resume</button>") == 1
    assert body.count(">Disable</button>") == 9


def test_disable_and_enable(staff_client: Client, refiner_destination: Destination) -> None:
    url = reverse("destination-toggle", args=[refiner_destination.pk])
    response = staff_client.post(url, {"next": reverse("destination-list")}, follow=True)
    refiner_destination.refresh_from_db()
    assert refiner_destination.enabled is False
    assert refiner_destination.secrets == {"api_key": "rk_test"}
    assert "Refiner disabled: new events are not routed to it" in text_of(response)
    assert response.redirect_chain[-1][0] == reverse("destination-list")
    staff_client.post(url, {"next": "https://evil.example/"})
    refiner_destination.refresh_from_db()
    assert refiner_destination.enabled is True


def test_resume_clears_the_pause_and_wakes_waiting_deliveries(
    staff_client: Client, refiner_destination: Destination, source: Source
) -> None:
    waiting = seed_delivery(
        refiner_destination, make_event(source, 1), "retrying", age=timedelta(hours=5)
    )
    Delivery.objects.filter(pk=waiting.pk).update(
        retry_until=timezone.now() - timedelta(minutes=1),
        next_attempt_at=timezone.now() + timedelta(hours=1),
    )
    Destination.objects.filter(pk=refiner_destination.pk).update(
        paused_at=timezone.now(), paused_reason="Paused by the breaker", consecutive_failures=60
    )
    page = staff_client.get(reverse("destination-delivery", args=[refiner_destination.pk]))
    assert "Paused by the breaker" in text_of(page)
    # Nothing moves while paused: the page does not poll, though a delivery is waiting.
    assert page.context["report"].counts.pending == 1
    assert 'hx-trigger="job-done from:body">' in page.content.decode()
    assert reverse("destination-resume", args=[refiner_destination.pk]) in text_of(page)

    response = staff_client.post(
        reverse("destination-resume", args=[refiner_destination.pk]), follow=True
    )
    refiner_destination.refresh_from_db()
    assert refiner_destination.paused_at is None
    assert refiner_destination.paused_reason == ""
    assert refiner_destination.consecutive_failures == 0
    assert "Refiner resumed: 1 waiting deliveries will be sent now." in text_of(response)
    assert "Paused by the breaker" not in text_of(response)
    waiting.refresh_from_db()
    assert waiting.retry_until > timezone.now() + timedelta(hours=3)


# --- the Event delivery page ---------------------------------------------------------------


@pytest.fixture
def seeded(refiner_destination: Destination, source: Source) -> dict[str, Any]:
    """A day of deliveries with known outcomes and latencies, plus older rows."""
    counter = iter(range(1000))

    def add(status: str, **kwargs: Any) -> Delivery:
        return seed_delivery(
            refiner_destination, make_event(source, next(counter)), status, **kwargs
        )

    delivered = [
        add("delivered", latency=timedelta(seconds=s), age=timedelta(minutes=30))
        for s in range(1, 20)
    ]
    delivered.append(add("delivered", latency=timedelta(seconds=90), age=timedelta(hours=3)))
    rejected = "Refiner refused the API key (HTTP 404): API key not valid or does not exist"
    failed = [add("failed", reason=rejected, attempts=1, age=timedelta(minutes=m)) for m in (5, 6)]
    failed += [
        add("failed", reason=rejected, attempts=1, age=timedelta(hours=h)) for h in (2, 5, 6)
    ]
    gave_up = "gave up after 9 attempts over the 4 h retry window: HTTP 500 from Refiner"
    failed += [
        add("failed", reason=gave_up, attempts=9, age=timedelta(hours=1, minutes=m)) for m in (1, 2)
    ]
    skipped = add("skipped", reason="no userId or email: Refiner cannot identify this user")
    pending = [add("pending"), add("retrying", attempts=2), add("sending", attempts=1)]
    old = [
        add("delivered", age=timedelta(days=2)),
        add("failed", reason=rejected, age=timedelta(days=3)),
    ]
    for delivery in failed[:5]:
        seed_attempt(delivery, 1, status=404, body='{"message": "API key not valid"}')
    for delivery in failed[5:]:
        for number in range(1, 10):
            seed_attempt(delivery, number, status=500, body='{"message": "Server Error"}')
    return {
        "destination": refiner_destination,
        "delivered": delivered,
        "failed": failed,
        "skipped": skipped,
        "pending": pending,
        "old": old,
        "rejected": rejected,
        "gave_up": gave_up,
    }


def delivery_page(client: Client, destination: Destination, window: str = "24h") -> Any:
    url = reverse("destination-delivery", args=[destination.pk])
    return client.get(f"{url}?window={window}")


def test_event_delivery_counts_latency_and_chart(
    staff_client: Client, seeded: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(14):
        response = delivery_page(staff_client, seeded["destination"])
    report = response.context["report"]
    assert report.window.key == "24h"
    assert (report.counts.delivered, report.counts.not_delivered, report.counts.pending) == (
        20,
        8,
        3,
    )
    assert report.counts.retrying == 1
    # Latencies 1..19 s and 90 s: the nearest-rank 95th percentile of 20 values is the 19th.
    assert report.latency.p95_seconds == 19.0
    assert report.latency.sample_size == 20
    assert sum(b.delivered for b in report.buckets) == 20
    assert sum(b.not_delivered for b in report.buckets) == 8
    assert sum(b.pending for b in report.buckets) == 3
    assert len(report.buckets) == 25  # the window's first and last hours are partial
    assert response.context["failed_total"] == 8  # every failed one, whatever the window
    body = text_of(response)
    assert '<strong id="count-delivered">20</strong>' in body
    assert '<strong id="latency-p95">19.0 s</strong>' in body
    assert body.count('<rect class="delivered"') == 2  # two hourly bars: 30 min and 3 h ago
    assert "Retry all failed (8)" in body

    hour = delivery_page(staff_client, seeded["destination"], "1h").context["report"]
    assert (hour.counts.delivered, hour.counts.not_delivered, hour.counts.pending) == (19, 3, 3)
    assert hour.latency.p95_seconds == 19.0
    assert len(hour.buckets) == 13
    week = delivery_page(staff_client, seeded["destination"], "7d").context["report"]
    assert (week.counts.delivered, week.counts.not_delivered) == (21, 9)
    assert len(week.buckets) == 29
    assert sum(b.total for b in week.buckets) == 33


def seed_delivered_at(destination: Destination, source: Source, moments: list[datetime]) -> None:
    for n, moment in enumerate(moments):
        Delivery.objects.create(
            event=make_event(source, n),
            destination=destination,
            status=DeliveryStatus.DELIVERED,
            created_at=moment,
            received_at=moment,
            retry_until=moment + timedelta(hours=4),
            finished_at=moment,
        )


@pytest.mark.parametrize("key", ["1h", "24h", "7d"])
def test_the_chart_counts_what_the_tiles_count_from_the_windows_first_minute(
    refiner_destination: Destination, source: Source, key: str
) -> None:
    window = delivery_window(key)
    # The window starts half a bucket into its oldest bucket.
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC) + window.bucket / 2
    since = now - window.span
    seed_delivered_at(
        refiner_destination,
        source,
        [
            since + timedelta(seconds=1),
            since + window.bucket / 4,
            now - window.span / 2,
            now,
            since - timedelta(seconds=1),  # before the window: in neither
        ],
    )
    report = delivery_report(refiner_destination, window=window, now=now)
    assert report.counts.delivered == 4
    assert sum(b.delivered for b in report.buckets) == 4
    oldest, newest = report.buckets[0], report.buckets[-1]
    assert oldest.start < since < oldest.end and oldest.delivered == 2
    assert newest.start <= now < newest.end and newest.delivered == 1
    assert all(a.end == b.start for a, b in itertools.pairwise(report.buckets))
    assert len(report.buckets) == window.span / window.bucket + 1


def test_a_delivery_created_after_now_is_in_no_number(
    refiner_destination: Destination, source: Source
) -> None:
    now = datetime(2026, 3, 10, 12, 59, 59, tzinfo=UTC)
    seed_delivered_at(refiner_destination, source, [now, now + timedelta(seconds=2)])
    report = delivery_report(refiner_destination, window=delivery_window("24h"), now=now)
    assert report.counts.delivered == sum(b.delivered for b in report.buckets) == 1


def test_errors_are_grouped_by_reason_with_three_samples(
    staff_client: Client, seeded: dict[str, Any]
) -> None:
    response = delivery_page(staff_client, seeded["destination"])
    groups = response.context["report"].error_groups
    assert [(g.reason, g.count) for g in groups] == [
        (seeded["rejected"], 5),
        (seeded["gave_up"], 2),
        ("no userId or email: Refiner cannot identify this user", 1),
    ]
    rejected, gave_up, skipped = groups
    newest_three = sorted((d.pk for d in seeded["failed"][:5]), reverse=True)[:3]
    assert [s.delivery.pk for s in rejected.samples] == newest_three
    assert rejected.last_seen == max(d.finished_at for d in seeded["failed"][:5])
    # The sample shows the latest attempt, not the first.
    assert [s.attempt.number for s in gave_up.samples] == [9, 9]
    assert gave_up.samples[0].attempt.request["json"]["event"] == "attempt-9"
    assert skipped.samples[0].attempt is None

    body = text_of(response)
    assert body.count("<h3>You sent</h3>") == 6
    assert body.count("<h3>Request to destination</h3>") == 6
    assert body.count("<h3>Response from destination</h3>") == 6
    assert '"Authorization": "Bearer ••••7788"' in body
    assert "HTTP 404\nContent-Type: application/json" in body
    assert '"message": "API key not valid"' in body
    assert f'"messageId": "{rejected.samples[0].delivery.event.message_id}"' in body
    assert "No request was made." in body
    assert body.count(">Retry</button>") == 5  # not on the skipped one: it would skip again


def test_event_delivery_page_stays_within_a_query_budget(
    staff_client: Client,
    refiner_destination: Destination,
    source: Source,
    django_assert_max_num_queries: Any,
) -> None:
    for n in range(60):
        delivery = seed_delivery(
            refiner_destination, make_event(source, n), "failed", reason=f"reason {n % 15}"
        )
        seed_attempt(delivery, 1, status=400)
        seed_attempt(delivery, 2, status=400)
    with django_assert_max_num_queries(14):
        response = delivery_page(staff_client, refiner_destination)
    groups = response.context["report"].error_groups
    assert len(groups) == 15 and all(len(g.samples) == 3 for g in groups)


def test_htmx_refresh_renders_only_the_stats(staff_client: Client, seeded: dict[str, Any]) -> None:
    url = reverse("destination-delivery", args=[seeded["destination"].pk])
    response = staff_client.get(f"{url}?window=1h", headers={"HX-Request": "true"})
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="delivery-stats"')
    assert "<html" not in body
    assert "HX-Request" in response["Vary"]
    # Deliveries are in flight, so the numbers refresh themselves.
    assert 'hx-trigger="job-done from:body, every 2s"' in body


def test_retry_one_failed_delivery(staff_client: Client, seeded: dict[str, Any]) -> None:
    delivery = seeded["failed"][0]
    page = reverse("destination-delivery", args=[seeded["destination"].pk])
    response = staff_client.post(
        reverse("delivery-retry", args=[delivery.pk]), {"next": f"{page}?window=24h"}, follow=True
    )
    assert response.redirect_chain == [(f"{page}?window=24h", 302)]
    assert "Delivery to Refiner queued again." in text_of(response)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.reason == "" and delivery.finished_at is None
    again = staff_client.post(reverse("delivery-retry", args=[delivery.pk]), follow=True)
    assert "Only a failed delivery can be retried" in text_of(again)


def test_retry_is_offered_only_where_sending_again_can_change_the_outcome(
    staff_client: Client, source: Source, refiner_destination: Destination, post_ingest: Any
) -> None:
    kana = destination_create(
        kind="kana",
        name="Kana",
        settings_values={"api_url": "http://127.0.0.1:9/graphql"},
        secret_values={"api_key": "prv_test"},
    )
    post_ingest("track", {"userId": "u1", "event": "Viewed Pricing", "messageId": "unmapped"})
    post_ingest("track", {"anonymousId": "a1", "event": "Viewed Pricing", "messageId": "anon"})
    bad_delta = {"featureId": "seats", "delta": 1.5}
    post_ingest("track", {"userId": "u1", "event": "Seat Added", "properties": bad_delta,
                          "messageId": "bad-delta"})  # fmt: skip
    anonymous = Delivery.objects.get(event__message_id="anon", destination=refiner_destination)
    engine.deliver([anonymous.pk])  # Refiner skips it when translating: no one to identify
    rows = {
        (d.event.message_id, d.destination.name): d
        for d in Delivery.objects.select_related("event", "destination")
    }
    assert rows["unmapped", "Kana"].reason.startswith("unmapped")
    assert rows["anon", "Kana"].reason == "rejected: Kana needs a userId"
    assert rows["anon", "Refiner"].reason.startswith("no userId or email")
    assert rows["bad-delta", "Kana"].status == DeliveryStatus.FAILED
    # Refiner refused the key once: fixing the key is what a retry is for.
    refused = rows["unmapped", "Refiner"]
    Delivery.objects.filter(pk=refused.pk).update(
        status=DeliveryStatus.FAILED, reason="Refiner refused the API key (HTTP 404): no"
    )

    def retry_form(delivery: Delivery) -> bool:
        page = text_of(staff_client.get(reverse("event-detail", args=[delivery.event_id])))
        return reverse("delivery-retry", args=[delivery.pk]) in page

    assert retry_form(refused)
    for key in (("unmapped", "Kana"), ("anon", "Kana"), ("anon", "Refiner"), ("bad-delta", "Kana")):
        assert not retry_form(rows[key]), key
        answer = staff_client.post(reverse("delivery-retry", args=[rows[key].pk]), follow=True)
        assert "Only a failed delivery can be retried" in text_of(answer)
        assert Delivery.objects.get(pk=rows[key].pk).status == rows[key].status
    unmapped_page = text_of(staff_client.get(reverse("event-detail", args=[refused.event_id])))
    rule_link = reverse("mapping-rule-new", args=[kana.pk]) + "?event=Viewed%20Pricing"
    assert f'<a href="{rule_link}">Add a mapping rule</a>' in unmapped_page

    # Retry all failed leaves out the failure over the event's content.
    staff_client.post(reverse("destination-retry-failed", args=[kana.pk]))
    assert Job.objects.get().total == 0
    assert Delivery.objects.get(pk=rows["bad-delta", "Kana"].pk).status == DeliveryStatus.FAILED


def test_retry_all_failed_runs_a_job_whose_progress_stops_polling_when_done(
    staff_client: Client, seeded: dict[str, Any]
) -> None:
    destination = seeded["destination"]
    started = staff_client.post(
        reverse("destination-retry-failed", args=[destination.pk]),
        headers={"HX-Request": "true"},
    )
    job = Job.objects.get()
    assert job.total == 8 and job.params == {"destination_id": destination.pk}
    assert job.created_by is not None and job.created_by.get_username() == "op"
    fragment = started.content.decode()
    assert fragment.lstrip().startswith(f'<div id="job-{job.pk}"')
    assert f'hx-get="{reverse("job-detail", args=[job.pk])}" hx-trigger="every 1s"' in fragment

    # No worker in this test: the job is still queued, and polling goes on.
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED
    url = reverse("job-detail", args=[job.pk])
    waiting = staff_client.get(url, headers={"HX-Request": "true"})
    assert waiting.status_code == 200
    assert "Waiting for a worker" in text_of(waiting)

    jobs.run_job(job.pk)
    done = staff_client.get(url, headers={"HX-Request": "true"})
    assert done.status_code == 286
    assert done["HX-Trigger"] == '{"job-done": {}}'
    assert "Done: 8 failed deliveries re-queued." in text_of(done)
    assert "hx-trigger" not in done.content.decode()
    assert not Delivery.objects.filter(destination=destination, status="failed").exists()
    # The full page works too (no JS): a plain 200 with the finished bar.
    page = staff_client.get(url)
    assert page.status_code == 200
    assert '<progress max="100" value="100"' in page.content.decode()


def test_retry_all_without_htmx_redirects_to_the_page_with_the_job(
    staff_client: Client, seeded: dict[str, Any]
) -> None:
    destination = seeded["destination"]
    response = staff_client.post(reverse("destination-retry-failed", args=[destination.pk]))
    job = Job.objects.get()
    page = reverse("destination-delivery", args=[destination.pk])
    assert response["Location"] == f"{page}?job={job.pk}"
    shown = staff_client.get(response["Location"])
    assert shown.context["job"] == job
    assert "Retrying 8 failed deliveries to Refiner." in text_of(shown)


# --- deliveries on the event page ----------------------------------------------------------


def test_event_page_lists_deliveries_attempts_and_why_not_routed(
    staff_client: Client, refiner_destination: Destination, post_ingest: Any
) -> None:
    post_ingest("track", {"userId": "u-1", "event": "Signed Up", "messageId": "sent"})
    post_ingest(
        "track",
        {
            "userId": "u-1",
            "event": "Internal",
            "messageId": "held",
            "integrations": {"Refiner": False},
        },
    )
    sent = Event.objects.get(message_id="sent")
    delivery = Delivery.objects.get(event=sent)
    seed_attempt(delivery, 1, status=500, body='{"message": "Server Error"}')
    seed_attempt(delivery, 2, status=422, body='{"message": "The event field is required."}')
    Delivery.objects.filter(pk=delivery.pk).update(
        status="failed",
        attempts=2,
        reason="HTTP 422 from Refiner: The event field is required.",
        finished_at=timezone.now(),
    )

    response = staff_client.get(reverse("event-detail", args=[sent.pk]))
    [shown] = response.context["deliveries"]
    assert [a.number for a in shown.attempt_log.all()] == [1, 2]
    body = text_of(response)
    assert "HTTP 422 from Refiner: The event field is required." in body
    assert body.count('<span class="badge outcome-') == 2
    assert "<summary>Request and response</summary>" in body
    assert reverse("delivery-retry", args=[delivery.pk]) in body
    assert response.context["not_routed"] == []

    held = Event.objects.get(message_id="held")
    assert not Delivery.objects.filter(event=held).exists()
    held_page = staff_client.get(reverse("event-detail", args=[held.pk]))
    [reason] = held_page.context["not_routed"]
    assert reason.destination == refiner_destination
    assert reason.reason == 'integrations object has "Refiner": false'
    assert '<span class="reason">integrations object has "Refiner": false</span>' in text_of(
        held_page
    )
    assert "No deliveries for this event." in text_of(held_page)

    staff_client.post(
        reverse("delivery-retry", args=[delivery.pk]),
        {"next": reverse("event-detail", args=[sent.pk])},
    )
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING


def test_event_page_explains_a_destination_created_after_the_event(
    staff_client: Client, source: Source, fake_refiner: FakeRefiner, post_ingest: Any
) -> None:
    post_ingest("identify", {"userId": "u-9", "messageId": "early"})
    destination_create(
        kind="refiner", name="Late", settings_values={}, secret_values={"api_key": "k"}
    )
    event = Event.objects.get(message_id="early")
    [reason] = staff_client.get(reverse("event-detail", args=[event.pk])).context["not_routed"]
    assert reason.reason == "created after this event was received"


# --- pure helpers ------------------------------------------------------------------------


def test_percentile_and_chart_geometry() -> None:
    assert percentile([], 95) is None
    assert percentile([1.0], 95) == 1.0
    assert percentile([float(n) for n in range(1, 101)], 95) == 95.0
    assert [nice_ceiling(n) for n in (0, 1, 3, 7, 11, 260, 999)] == [1, 1, 5, 10, 20, 500, 1000]
    start = timezone.now().replace(microsecond=0)
    buckets = [
        VolumeBucket(start=start, end=start + timedelta(hours=1), delivered=8, not_delivered=2),
        VolumeBucket(start=start + timedelta(hours=1), end=start + timedelta(hours=2)),
    ]
    chart = volume_chart(buckets)
    first, empty = chart.bars
    assert [r.css_class for r in first.rects] == ["delivered", "not-delivered"]
    # Ten deliveries against a scale of ten: the stack fills the plot exactly.
    assert first.rects[-1].y == pytest.approx(chart.plot_top)
    assert empty.rects == []
    assert "8 delivered, 2 not delivered, 0 pending" in first.title
    assert not chart.empty
