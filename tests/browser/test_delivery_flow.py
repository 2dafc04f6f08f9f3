"""Delivery in a real browser: add Refiner with a tested connection, watch SDK events delivered
by a real Celery worker, break Refiner, read the errors with their samples, fix it, retry all
failed with a progress bar, and see everything delivered."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from segment.analytics.client import Client as SegmentClient

from destinations.models import Delivery, DeliveryStatus, Source
from destinations.standins.refiner import FakeRefiner
from tests.browser.conftest import artifact_path
from tests.helpers.worker import Worker

pytestmark = pytest.mark.browser

REJECTED = "Refiner refused the API key (HTTP 404): API key not valid or does not exist"
# Delivery runs in another process; give it more than the default few seconds.
DELIVERY_TIMEOUT_MS = 20_000


def add_refiner(page: Page, fake_refiner: FakeRefiner) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Destinations").click()
    expect(page.get_by_text("No destinations yet.")).to_be_visible()
    page.get_by_role("link", name="New destination").click()
    page.locator("main").get_by_role("link", name="Refiner").click()
    expect(page.get_by_label("Base URL")).to_have_value("https://api.refiner.io/v1")
    page.get_by_label("Name").fill("Refiner")
    page.get_by_label("Base URL").fill(fake_refiner.base_url)

    # A wrong key first: the exact error comes back inline, and nothing is saved.
    page.get_by_label("API Key").fill("rk_wrong")
    page.get_by_role("button", name="Test connection").click()
    result = page.locator("#test-result")
    expect(result).to_contain_text("Refiner answered HTTP 404: API key not valid or does not exist")
    expect(page).to_have_url(re.compile(r"/destinations/new/refiner/$"))

    page.get_by_label("API Key").fill("rk_test")
    page.get_by_role("button", name="Test connection").click()
    expect(result).to_contain_text("Connected to Refiner project 'Switchboard tests'")
    page.screenshot(path=artifact_path("destination-form"), full_page=True)

    page.get_by_role("button", name="Create destination").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Refiner")
    expect(page.locator(".messages")).to_contain_text("Destination 'Refiner' created.")


def refresh_stats(page: Page) -> None:
    page.locator("#delivery-stats").get_by_role("link", name="Refresh").click()


def test_operator_watches_delivery_break_and_recover(
    logged_in_page: Page,
    live_server: Any,
    source: Source,
    fake_refiner: FakeRefiner,
    worker: Worker,
    sdk: SegmentClient,
) -> None:
    page = logged_in_page
    add_refiner(page, fake_refiner)
    stats = page.locator("#delivery-stats")
    expect(stats.locator("#count-delivered")).to_have_text("0")

    sdk.identify("u-ada", {"email": "ada@example.com", "plan": "pro"})
    for user in ("u-ada", "u-bob", "u-cy"):
        sdk.track(user, "Report Exported", {"format": "csv"})
    refresh_stats(page)
    expect(stats.locator("#count-delivered")).to_have_text("4", timeout=DELIVERY_TIMEOUT_MS)
    expect(stats.locator("#count-pending")).to_have_text("0")
    expect(stats.locator("#latency-p95")).not_to_have_text("—")
    assert len(fake_refiner.requests_to("/track-event")) == 3

    # Refiner stops accepting the key: deliveries fail at once (a 404 is not retried).
    fake_refiner.reject_key(404)
    for user in ("u-dee", "u-eve", "u-fay"):
        sdk.track(user, "Seat Added", {"seats": 3})
    refresh_stats(page)
    expect(stats.locator("#count-not-delivered")).to_have_text("3", timeout=DELIVERY_TIMEOUT_MS)
    group = stats.locator(".error-group").filter(has_text=REJECTED)
    expect(group).to_contain_text("3 deliveries")
    samples = group.locator(".sample")
    expect(samples).to_have_count(3)
    first = samples.first
    expect(first).to_contain_text("You sent")
    expect(first.locator("pre").nth(0)).to_contain_text('"event": "Seat Added"')
    expect(first.locator("pre").nth(1)).to_contain_text('"Authorization": "Bearer ••••"')
    expect(first.locator("pre").nth(2)).to_contain_text("HTTP 404")
    expect(first.locator("pre").nth(2)).to_contain_text("API key not valid or does not exist")
    expect(page.locator("body")).not_to_contain_text("rk_test")
    page.screenshot(path=artifact_path("event-delivery-errors"), full_page=True)

    # Fixed on Refiner's side: retry everything that failed, and watch the job finish.
    fake_refiner.clear_faults()
    page.get_by_role("button", name="Retry all failed (3)").click()
    job = page.locator("#job-slot .job")
    expect(job.get_by_role("progressbar")).to_be_visible()
    expect(job).to_contain_text("Done: 3 failed deliveries re-queued.", timeout=10_000)
    expect(job.get_by_role("progressbar")).to_have_attribute("value", "100")
    expect(stats.locator("#count-delivered")).to_have_text("7", timeout=DELIVERY_TIMEOUT_MS)
    expect(stats.locator("#count-not-delivered")).to_have_text("0")
    expect(stats.locator("#count-pending")).to_have_text("0")
    expect(stats).to_contain_text("No errors in this window.")
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.DELIVERED}
    assert len(fake_refiner.requests_to("/track-event")) == 3 + 3 + 3
    page.mouse.move(0, 0)  # no hover highlight on the chart in the screenshot
    page.screenshot(path=artifact_path("event-delivery"), full_page=True)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Destinations").click()
    row = page.locator("table.destinations tbody tr").filter(has_text="Refiner")
    expect(row.locator("td").nth(5)).to_have_text("0")  # backlog
    expect(row.locator("td").nth(3)).to_have_text("just now")  # last success
    page.screenshot(path=artifact_path("destinations-list"), full_page=True)

    # The event's own page tells the same story: a failed attempt, then a delivered one.
    page.goto("/events/?event=Seat+Added")
    page.locator("#event-table tbody tr").first.get_by_role("link").first.click()
    deliveries = page.locator("#deliveries")
    expect(deliveries.locator(".badge.status-delivered")).to_have_text("delivered")
    outcomes = deliveries.locator("table.attempts tbody tr")
    expect(outcomes).to_have_count(2)
    expect(outcomes.nth(0)).to_contain_text(REJECTED)
    expect(outcomes.nth(1)).to_contain_text("delivered")
    page.screenshot(path=artifact_path("event-deliveries"), full_page=True)
