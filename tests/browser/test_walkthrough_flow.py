"""What a new operator trips over, in a real browser: Test connection says what failed in words
(the raw error behind Details) and shows that it is running; accounts' seen times and event
pages; the source's curl and RudderStack snippets, run as pasted; where each event went; Retry
only where it can help; Send test on a webhook's page."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from destinations.delivery.services import destination_create
from destinations.demo import seed_demo
from destinations.models import Account, Destination, Source
from destinations.standins.refiner import FakeRefiner
from tests.helpers.ingest import IngestPost
from tests.helpers.webhook_receiver import WebhookReceiver, serve_webhook_receiver
from tests.helpers.worker import Worker

pytestmark = pytest.mark.browser

# Delivery runs in another process.
DELIVERY_TIMEOUT_MS = 20_000


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    yield from serve_webhook_receiver(token="hook-token-123")


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
    logged_in_page: Page, post_ingest: IngestPost
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


def snippet(page: Page, name: str) -> str:
    return page.locator(f"#snippet-{name}").inner_text()


def test_source_snippets_work_and_events_show_where_they_went(
    logged_in_page: Page,
    source: Source,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    worker: Worker,
    post_ingest: IngestPost,
) -> None:
    page = logged_in_page
    page.goto(f"/sources/{source.pk}/")
    curl = snippet(page, "curl")
    assert source.write_key in curl
    # The snippets as an operator would paste them: curl in a shell, RudderStack's in Python.
    subprocess.run(["bash", "-c", curl], check=True, capture_output=True, timeout=30)
    rudder = snippet(page, "rudderstack")
    assert rudder.startswith("pip install rudder-sdk-python\n")
    code = rudder.split("\n", 1)[1]
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=60)
    post_ingest("page", {"anonymousId": "visitor-1", "name": "Pricing"})

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Events").click()
    table = page.locator("#event-table")
    expect(table.locator("tbody tr")).to_have_count(4)  # curl, identify and track, the page
    states = table.locator("td.delivery-states")
    # Newest first; the table refreshes itself while the worker delivers.
    expect(states.nth(0)).to_have_text("Refiner: skipped", timeout=DELIVERY_TIMEOUT_MS)
    for row in (1, 2, 3):
        expect(states.nth(row)).to_have_text("Refiner: delivered", timeout=DELIVERY_TIMEOUT_MS)
    assert fake_refiner.requests_to("/track-event")[0].body["event"] == "Report Exported"
    assert len(fake_refiner.requests_to("/track-event")) == 2  # curl's and RudderStack's

    # The anonymous page view was skipped (Refiner needs a userId or email): no Retry for it.
    states.nth(0).get_by_role("link").click()
    deliveries = page.locator("#deliveries")
    expect(deliveries).to_contain_text("no userId or email: Refiner cannot identify this user")
    expect(deliveries.get_by_role("button", name="Retry")).to_have_count(0)


def test_send_test_from_a_webhook_s_page(
    logged_in_page: Page, receiver: WebhookReceiver, settings: Any
) -> None:
    page = logged_in_page
    webhook = destination_create(
        kind="webhook",
        name="Ops hook",
        settings_values={"url": receiver.url, "trigger": "events"},
        secret_values={"auth_token": "hook-token-123"},
    )
    page.goto("/webhooks/outbound/")
    page.get_by_role("link", name="Ops hook").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Ops hook")
    page.get_by_role("button", name="Send test").click()
    result = page.locator("#test-result")
    expect(result).to_contain_text("✓ Test event accepted: HTTP 200")
    [call] = receiver.received
    assert call.body["event"] == "Switchboard Test"
    assert call.header("Authorization") == "Bearer hook-token-123"

    receiver.fail(500, times=1)
    page.get_by_role("button", name="Send test").click()
    expect(result).to_contain_text("The test was not accepted: HTTP 500 from the webhook URL")
    assert webhook.deliveries.count() == 0  # a test is not a delivery


# What sticks out past the window's right edge, for the failure message.
WIDER_THAN_THE_WINDOW = """() => [...document.querySelectorAll("body *")]
  .filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
  .slice(0, 5)
  .map((e) => `${e.tagName}.${e.className}: ${(e.textContent || "").trim().slice(0, 40)}`)"""

NARROW_PAGES = [
    "/",
    "/events/",
    "/users/",
    "/accounts/",
    "/sources/",
    "/destinations/",
    "/rules/",
    "/conflicts/",
    "/refiner/webhooks/",
    "/webhooks/outbound/",
    "/audit/",
    "/members/",
]


def test_a_phone_wide_screen_folds_the_menu_and_never_scrolls_sideways(
    logged_in_page: Page,
) -> None:
    page = logged_in_page
    seed_demo(refiner_url="http://127.0.0.1:9/v1", kana_url="http://127.0.0.1:9/graphql")
    source = Source.objects.get(demo=True)
    account = Account.objects.order_by("id").first()
    assert account is not None
    page.set_viewport_size({"width": 390, "height": 844})
    for path in [*NARROW_PAGES, f"/sources/{source.pk}/", f"/accounts/{account.pk}/"]:
        page.goto(path)
        expect(page.get_by_role("heading", level=1).first).to_be_visible()
        wide = page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        offenders = page.evaluate(WIDER_THAN_THE_WINDOW)
        assert wide[0] <= wide[1], (
            f"{path} is {wide[0]} px wide in a {wide[1]} px window {offenders}"
        )

    # The menu is folded behind one button, and opens on a tap.
    menu = page.get_by_role("button", name="Menu")
    nav = page.get_by_role("navigation", name="Main")
    expect(menu).to_be_visible()
    expect(menu).to_have_attribute("aria-expanded", "false")
    expect(nav).to_be_hidden()
    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    nav.get_by_role("link", name="Events").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Events")
    expect(nav).to_be_hidden()

    # Wide again: no button, the menu in the bar.
    page.set_viewport_size({"width": 1280, "height": 800})
    expect(page.get_by_role("button", name="Menu")).to_be_hidden()
    expect(nav.get_by_role("link", name="Accounts")).to_be_visible()


def test_favicon_is_served_on_every_page(page: Page, live_server: Any) -> None:
    icon = page.request.get(f"{live_server.url}/favicon.ico")
    assert icon.status == 200
    assert icon.headers["content-type"] in ("image/x-icon", "image/vnd.microsoft.icon")
    assert icon.body()[:4] == b"\x00\x00\x01\x00"  # an ICO file
    page.goto("/login/")
    link = page.locator('link[rel="icon"]')
    expect(link).to_have_attribute("type", "image/svg+xml")
    svg = page.request.get(f"{live_server.url}{link.get_attribute('href')}")
    assert svg.status == 200 and svg.headers["content-type"].startswith("image/svg+xml")
