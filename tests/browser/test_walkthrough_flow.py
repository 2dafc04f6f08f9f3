"""What a new operator trips over, in a real browser: Test connection says what failed in words
(the raw error behind Details) and shows that it is running."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.fakes.refiner import FakeRefiner

pytestmark = pytest.mark.browser


def test_test_connection_shows_progress_then_says_what_failed(
    logged_in_page: Page, fake_refiner: FakeRefiner, settings: Any
) -> None:
    page = logged_in_page
    settings.DELIVERY_TIMEOUT_SECONDS = 10
    page.goto("/destinations/new/refiner/")
    page.get_by_label("Name").fill("Refiner")
    page.get_by_label("Base URL").fill(fake_refiner.base_url)
    page.get_by_label("API Key").fill("rk_test")
    progress = page.locator("#test-progress")
    expect(progress).to_be_hidden()

    # Refiner takes a moment: the operator sees the test running, and cannot start another.
    fake_refiner.hang(seconds=2, times=1)
    button = page.get_by_role("button", name="Test connection")
    button.click()
    expect(progress).to_be_visible()
    expect(progress).to_have_text("Testing…")
    expect(button).to_be_disabled()
    result = page.locator("#test-result")
    expect(result).to_contain_text("Connected to Refiner project 'Switchboard tests'")
    expect(progress).to_be_hidden()
    expect(button).to_be_enabled()

    # A host that does not resolve: words first, urllib3's text only behind Details.
    page.get_by_label("Base URL").fill("https://api.refiner.invalid/v1")
    button.click()
    expect(result.locator("p")).to_have_text(
        "Could not reach https://api.refiner.invalid/v1/: could not resolve the host "
        "api.refiner.invalid"
    )
    raw = result.locator("details pre")
    expect(raw).to_be_hidden()
    result.get_by_text("Details").click()
    expect(raw).to_be_visible()
    expect(raw).to_contain_text("NameResolutionError")


def test_an_account_page_shows_seen_times_in_order_and_pages_its_events(
    logged_in_page: Page, post_ingest: Any
) -> None:
    page = logged_in_page
    group = {"userId": "u-ada", "groupId": "acct-acme", "traits": {"name": "Acme"}}
    for minute in (20, 5):  # the older call arrives last
        post_ingest("group", {**group, "timestamp": f"2025-06-01T10:{minute:02d}:00Z"})
    for n in range(30):
        post_ingest("track", {"userId": "u-ada", "event": f"Step {n:02d}"})

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Accounts").click()
    page.get_by_role("link", name="Acme").click()
    facts = page.locator("dl.facts")
    expect(facts.locator("dt:has-text('First seen') + dd")).to_have_text(
        "2025-06-01T10:05:00+00:00"
    )
    expect(facts.locator("dt:has-text('Last seen') + dd")).to_have_text("2025-06-01T10:20:00+00:00")

    rows = page.locator("#events tbody tr")
    expect(rows).to_have_count(25)
    expect(rows.first).to_contain_text("Step 29")
    page.locator("#events").get_by_role("link", name="Older →").click()
    expect(rows).to_have_count(7)  # five more steps and the two group calls
    expect(rows.first).to_contain_text("Step 04")
    expect(page.locator("#events").get_by_role("link", name="Older →")).to_have_count(0)
    page.locator("#events").get_by_role("link", name="← Newest").click()
    expect(rows.first).to_contain_text("Step 29")
