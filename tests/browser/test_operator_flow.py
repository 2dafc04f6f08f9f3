"""The operator's day in a real browser: the Overview over demo data delivered by a real Celery
worker (numbers, drawn charts, a permanent failure's samples, removing the demo data); the
live debugger following events sent with the Segment SDK, paused and resumed; and what a
viewer and an operator may see and do. No page may break the Content-Security-Policy."""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.utils import timezone
from playwright.sync_api import ConsoleMessage, Page, expect
from segment.analytics.client import Client as SegmentClient

from dashboard.members import set_role_groups
from destinations.delivery.services import destination_create
from destinations.demo import seed_demo
from destinations.models import (
    FINISHED,
    AttemptOutcome,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Destination,
    Event,
    Source,
)
from destinations.standins.kana import FakeKana
from destinations.standins.refiner import FakeRefiner
from tests.browser.conftest import artifact_path
from tests.helpers.worker import Worker, wait_until

pytestmark = pytest.mark.browser

# Delivery runs in another process; give it more than the default few seconds.
WORKER_TIMEOUT_S = 30
PASSWORD = "a long browser passphrase"

# Pixels of each series on a chart's canvas: uPlot paints the bars with these colours
# (charts.js), the axes in grey.
COUNT_SERIES_PIXELS = """
(slot) => {
  const canvas = slot.querySelector("canvas");
  if (!canvas) return null;
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let volume = 0, failed = 0;
  for (let i = 0; i < data.length; i += 4) {
    const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
    if (!a) continue;
    if (b > r + 60 && b > g + 60) volume++;
    if (r > g + 80 && r > b + 80) failed++;
  }
  return { volume, failed };
}
"""


@pytest.fixture
def csp_violations(page: Page) -> list[str]:
    """Whatever the browser refused under the Content-Security-Policy, and any script error."""
    found: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            found.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: found.append(f"script error: {error}"))
    return found


def demo_state() -> str:
    rows = Delivery.objects.values_list("destination__name", "destination__paused_at", "status")
    counts = Counter((name, paused is not None, status) for name, paused, status in rows)
    return f"deliveries (destination, paused, status): {dict(counts)}\n"


def demo_deliveries_finished() -> bool:
    deliveries = Delivery.objects.filter(destination__demo=True)
    return deliveries.exists() and not deliveries.exclude(status__in=FINISHED).exists()


def test_demo_overview_failure_samples_and_removal(
    logged_in_page: Page,
    csp_violations: list[str],
    demo_refiner: FakeRefiner,
    demo_kana: FakeKana,
    worker: Worker,
) -> None:
    page = logged_in_page
    seeded = seed_demo(refiner_url=demo_refiner.base_url, kana_url=demo_kana.base_url)
    # The banner and the conflict counts are cached for a few seconds; the login page filled them.
    cache.clear()
    wait_until(demo_deliveries_finished, WORKER_TIMEOUT_S, lambda: demo_state() + worker.describe())
    failed = Delivery.objects.filter(status=DeliveryStatus.FAILED)
    assert not failed.exclude(destination__name__contains="wrong key").exists()
    failed_count = failed.count()

    page.goto("/?window=1h")
    expect(page.locator(".demo-banner")).to_contain_text("Demo data is loaded.")
    numbers = page.locator("#overview-numbers")
    expect(numbers.locator("#count-received")).to_have_text(str(seeded["events"]))
    delivered = Delivery.objects.filter(status=DeliveryStatus.DELIVERED).count()
    expect(numbers.locator("#count-delivered")).to_have_text(str(delivered))
    expect(numbers.locator("#count-failed")).to_have_text(str(failed_count))
    expect(numbers.locator("#count-pending")).to_have_text("0")

    # One chart per destination, drawn on a canvas: volume everywhere, failures where they are.
    slots = page.locator(".chart-slot[data-drawn] canvas")
    expect(slots).to_have_count(3)
    expect(page.locator(".chart-fallback")).to_have_count(0)
    for name in ("Kana (demo)", "Refiner (demo)", "Refiner, wrong key (demo)"):
        chart = page.locator(".overview-chart").filter(has=page.get_by_role("link", name=name))
        pixels = chart.locator(".chart-slot").evaluate(COUNT_SERIES_PIXELS)
        assert pixels["volume"] > 50, (name, pixels)
        if "wrong key" in name:
            assert pixels["failed"] > 50, (name, pixels)
    health = page.locator("#health")
    # Every delivery to the revoked key failed (the breaker spares a destination this new).
    wrong_key = health.locator("tr", has_text="wrong key")
    expect(wrong_key.locator(".badge.health-failing")).to_have_text("failing")
    expect(wrong_key.locator("td.last-error")).to_contain_text("HTTP 404")
    expect(
        health.locator("tr", has_text="Kana (demo)").locator(".badge.health-healthy")
    ).to_have_text("healthy")
    expect(page.locator("#open-conflicts #count-duplicate-emails")).to_have_text("2")
    unmapped = page.locator("#unmapped li", has_text="Kana (demo)")
    expect(unmapped.locator("strong")).not_to_have_text("0")
    page.mouse.move(0, 0)
    page.screenshot(path=artifact_path("overview"), full_page=True)

    # A permanent failure, then its samples on the destination's Event delivery page.
    failures = page.locator("#recent-failures tbody tr")
    expect(failures).to_have_count(10)
    first = failures.first
    expect(first).to_contain_text("Refiner, wrong key (demo)")
    reason = first.locator("td.reason-cell a")
    expect(reason).to_contain_text("HTTP 404")
    reason.click()
    expect(page).to_have_url(re.compile(r"/destinations/\d+/\?window=1h#errors$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Refiner, wrong key (demo)")
    group = page.locator(".error-group").first
    expect(group).to_contain_text("HTTP 404")
    sample = group.locator(".sample").first
    expect(sample).to_be_visible()
    expect(sample).to_contain_text("You sent")
    expect(sample.locator("pre").nth(2)).to_contain_text("HTTP 404")

    # Remove the demo data from the banner: first what goes, counted; then the Overview is
    # empty again, its conflict counts (cached a few seconds) with it.
    page.goto("/")
    expect(page.locator("#open-conflicts #count-duplicate-emails")).to_have_text("2")
    page.locator(".demo-banner").get_by_role("link", name="Remove demo data").click()
    expect(page.get_by_role("heading", name="Remove demo data?")).to_be_visible()
    expect(page.locator("#remove-events")).to_contain_text(f"{seeded['events']} from Demo web app")
    expect(page.locator("#remove-users")).to_contain_text("10")
    expect(page.locator("#remove-accounts")).to_contain_text("3")
    expect(page.locator("#remove-destinations")).to_contain_text("Kana (demo): 1 mapping rule")
    assert Destination.objects.count() == 3  # nothing goes before the operator confirms
    page.get_by_role("button", name="Remove demo data").click()
    expect(page.locator(".messages")).to_contain_text("Demo data removed")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator(".demo-banner")).to_have_count(0)
    expect(page.locator("#traffic")).to_contain_text("No destinations yet")
    expect(page.locator("#count-received")).to_have_text("0")
    expect(page.locator("#open-conflicts #count-duplicate-emails")).to_have_text("0")
    assert not Destination.objects.exists() and not Event.objects.exists()
    assert csp_violations == []


def test_debugger_follows_pauses_and_resumes(
    logged_in_page: Page,
    csp_violations: list[str],
    live_server: Any,
    source: Source,
    sdk: SegmentClient,
) -> None:
    page = logged_in_page
    sdk.identify("u-ada", {"email": "ada@example.com", "plan": "pro", "address": {"city": "Oslo"}})
    page.goto(f"/sources/{source.pk}/")
    page.get_by_role("link", name="live debugger").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Debugger")
    rows = page.locator("#debugger-rows > li.debug-row")
    expect(rows).to_have_count(1)
    expect(page.locator("#debugger-live")).to_contain_text("Live")

    # New events appear on top without a reload, and so does a message refused on ingest.
    sdk.track("u-ada", "Report Exported", {"format": "csv", "rows": 1200})
    sdk.page("u-ada", "Docs", "Getting started", {"url": "https://example.com/docs"})
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("Getting started")
    refused = requests.post(
        f"{live_server.url}/v1/track",
        json={"userId": "u-ada", "messageId": "no-name"},
        auth=(source.write_key, ""),
        timeout=5,
    )
    assert refused.status_code == 400
    expect(rows).to_have_count(4)
    expect(rows.first.locator(".badge.refused")).to_have_text("failed on ingest")

    # Pause: what is shown stays, what arrives is not shown.
    page.get_by_role("link", name="Pause").click()
    expect(page.locator("#debugger-live")).to_contain_text("Paused")
    expect(page).to_have_url(re.compile(r"/debugger/\?paused=1$"))
    sdk.track("u-bob", "Seat Added", {"seats": 3})
    sdk.track("u-cy", "Seat Added", {"seats": 1})
    page.wait_for_timeout(2500)  # more than two poll intervals
    expect(rows).to_have_count(4)
    expect(page.locator("#debugger-rows")).not_to_contain_text("Seat Added")

    # Resume: what arrived meanwhile comes in, newest first.
    page.get_by_role("link", name="Resume").click()
    expect(page.locator("#debugger-live")).to_contain_text("Live")
    expect(rows).to_have_count(6)
    expect(rows.nth(0)).to_contain_text("u-cy")
    expect(rows.nth(1)).to_contain_text("u-bob")
    expect(page).to_have_url(re.compile(r"/debugger/$"))

    # A row opens to its fields; Raw shows the JSON as stored.
    track = rows.filter(has_text="Report Exported")
    track.locator("summary").click()
    pretty = track.locator(".view.pretty")
    expect(pretty).to_be_visible()
    expect(pretty.locator("table.kv").first).to_contain_text("1200")
    track.get_by_text("Raw", exact=True).click()
    expect(pretty).to_be_hidden()
    expect(track.locator("pre.raw")).to_be_visible()
    expect(track.locator("pre.raw")).to_contain_text('"event": "Report Exported"')
    track.get_by_text("Pretty", exact=True).click()
    expect(pretty).to_be_visible()
    refusal = rows.filter(has=page.locator(".badge.refused"))
    refusal.locator("summary").click()
    expect(refusal.locator(".view.pretty")).to_contain_text("/v1/track")
    page.mouse.move(0, 0)
    page.screenshot(path=artifact_path("debugger"), full_page=True)

    # A search is server-side: only that user's events, and it keeps following.
    page.get_by_role("searchbox", name="Search").fill("u-bob")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(1)
    sdk.track("u-bob", "Report Exported", {"format": "pdf"})
    sdk.track("u-cy", "Report Exported", {"format": "pdf"})
    expect(rows).to_have_count(2)
    page.wait_for_timeout(1500)
    expect(rows).to_have_count(2)
    assert csp_violations == []


@pytest.fixture
def destination_with_a_failure(transactional_db: None, source: Source) -> Destination:
    destination = destination_create(
        kind="refiner",
        name="Refiner",
        settings_values={"base_url": "http://127.0.0.1:9/v1"},
        secret_values={"api_key": "rk_test"},
    )
    now = timezone.now()
    event = Event.objects.create(
        source=source,
        message_id="m-1",
        type="track",
        user_id="u-1",
        event="Report Exported",
        timestamp=now,
        received_at=now,
        payload={"type": "track", "userId": "u-1", "event": "Report Exported"},
    )
    delivery = Delivery.objects.create(
        event=event,
        destination=destination,
        status=DeliveryStatus.FAILED,
        created_at=now - timedelta(minutes=5),
        received_at=now - timedelta(minutes=5),
        retry_until=now + timedelta(hours=4),
        finished_at=now - timedelta(minutes=4),
        reason="Refiner refused the API key (HTTP 404)",
        attempts=1,
    )
    DeliveryAttempt.objects.create(
        delivery=delivery, number=1, outcome=AttemptOutcome.FAILED, status_code=404
    )
    return destination


def log_in_as(page: Page, role: str) -> None:
    user = get_user_model().objects.create_user(username=f"{role}-user", password=PASSWORD)
    set_role_groups(user, role)
    page.goto("/login/")
    page.get_by_label("Username").fill(user.get_username())
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator(".topbar .badge.role")).to_have_text(role)


def post_directly(page: Page, url: str) -> None:
    """Submit a POST form to ``url`` with a valid CSRF token, as a crafted page would."""
    [token] = [c["value"] for c in page.context.cookies() if c["name"] == "csrftoken"]
    with page.expect_navigation():
        page.evaluate(
            """([url, token]) => {
                const form = document.createElement("form");
                form.method = "post";
                form.action = url;
                const field = document.createElement("input");
                field.type = "hidden";
                field.name = "csrfmiddlewaretoken";
                field.value = token;
                form.append(field);
                document.body.append(form);
                form.submit();
            }""",
            [url, token],
        )


def test_viewer_and_operator_see_only_what_they_may_do(
    page: Page, csp_violations: list[str], destination_with_a_failure: Destination
) -> None:
    destination = destination_with_a_failure
    delivery = Delivery.objects.get()
    url = f"/destinations/{destination.pk}/"

    log_in_as(page, "viewer")
    page.goto(url)
    expect(page.locator(".error-group")).to_contain_text("Refiner refused the API key")
    for action in ("Edit settings", "Disable", "Retry", "Retry all failed (1)"):
        expect(page.get_by_role("button", name=action, exact=True)).to_have_count(0)
        expect(page.get_by_role("link", name=action, exact=True)).to_have_count(0)
    post_directly(page, f"/deliveries/{delivery.pk}/retry/")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.locator("main")).to_contain_text(
        "This needs the operator role; your role is viewer."
    )
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    page.context.clear_cookies()

    log_in_as(page, "operator")
    page.goto(url)
    expect(page.get_by_role("button", name="Retry", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Retry all failed (1)")).to_be_visible()
    expect(page.get_by_role("link", name="Edit settings")).to_have_count(0)
    page.get_by_role("button", name="Retry", exact=True).click()
    expect(page.locator(".messages")).to_contain_text("Delivery to Refiner queued again.")
    post_directly(page, f"/destinations/{destination.pk}/toggle/")
    expect(page.locator("main")).to_contain_text(
        "This needs the admin role; your role is operator."
    )
    assert Destination.objects.get().enabled
    assert csp_violations == []
