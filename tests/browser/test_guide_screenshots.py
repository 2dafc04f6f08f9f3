"""The operator guide's walk through the dashboard (docs/operator-guide.md), in a real browser.

Demo data (``seed_demo``) is delivered by a real Celery worker to fake Refiner and Kana servers
that fail a little on purpose, as the demo stand-ins do. The walk opens every page the guide
shows and checks that each rendered its main heading, so the guide's tour is tested in CI.

With ``SWITCHBOARD_GUIDE_SCREENSHOTS=1`` the walk also writes the guide's pictures to
``docs/images/<name>.png`` at a 1280x800 viewport (squeezed with ``pngquant`` when it is
installed). Without it nothing is written, so CI runs leave the committed images alone::

    SWITCHBOARD_GUIDE_SCREENSHOTS=1 SWITCHBOARD_DATA_DIR=$(mktemp -d) \
        uv run pytest tests/browser/test_guide_screenshots.py -q
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from django.core.cache import cache
from django.urls import NoReverseMatch, reverse
from playwright.sync_api import Locator, Page, expect

from destinations.connectors.refiner.receivers import receiver_create
from destinations.demo import (
    DEMO_SOURCE,
    seed_demo,
)
from destinations.models import Delivery, DeliveryStatus, Destination, Source
from destinations.standins.kana import FakeKana
from destinations.standins.refiner import (
    FakeRefiner,
    sample_webhook_payload,
    send_webhook,
)
from tests.helpers.worker import Worker, wait_until

pytestmark = pytest.mark.browser

SCREENSHOTS = os.environ.get("SWITCHBOARD_GUIDE_SCREENSHOTS") == "1"
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
# Delivery runs in another process and retries the fakes' deliberate failures.
SETTLE_SECONDS = 90
IN_FLIGHT = (DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.RETRYING)
STRIPE_EXPORT = (
    "id,Email,Name,Created (UTC)\n"
    "cus_DemoAlan3,alan@demo.example,Alan Turing,2024-01-05 10:00\n"
    "cus_DemoKj5,kj@demo.example,Katherine Johnson,2024-02-11 09:30\n"
    "cus_DemoDennis6,dennis@demo.example,Dennis Ritchie,2024-03-02 14:15\n"
    "cus_NewCustomer7,new.customer@example.com,New Customer,2024-04-20 08:00\n"
)

Shot = Callable[..., None]


@pytest.fixture
def shot(page: Page) -> Shot:
    """Write the viewport as docs/images/<name>.png, only when asked to."""

    def take(name: str, *, top: Locator | None = None) -> None:
        if top is not None:
            # Put the part the guide talks about at the top of the picture.
            top.evaluate("element => element.scrollIntoView({block: 'start'})")
        if not SCREENSHOTS:
            return
        IMAGES.mkdir(parents=True, exist_ok=True)
        path = IMAGES / f"{name}.png"
        page.screenshot(path=str(path), animations="disabled", caret="hide")
        squeeze(path)

    return take


def squeeze(path: Path) -> None:
    """Committed images should be small: quantise to a palette when pngquant is there."""
    pngquant = shutil.which("pngquant")
    if pngquant:
        subprocess.run(
            [pngquant, "--force", "--skip-if-larger", "--strip", "--quality", "65-95",
             "--output", str(path), str(path)],
            check=False,
        )  # fmt: skip


def heading(page: Page, text: str | re.Pattern[str]) -> None:
    expect(page.get_by_role("heading", level=1)).to_contain_text(text)


def url_or_none(name: str, *args: Any) -> str | None:
    """Pages still being built are visited once their URL exists."""
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return None


def settled() -> bool:
    """Every delivery has an outcome, except those waiting behind a paused destination."""
    return not Delivery.objects.filter(
        status__in=IN_FLIGHT, destination__paused_at__isnull=True
    ).exists()


def test_the_operator_guide_walk(
    logged_in_page: Page,
    live_server: Any,
    worker: Worker,
    demo_refiner: FakeRefiner,
    demo_kana: FakeKana,
    make_member: Callable[..., Any],
    shot: Shot,
    tmp_path: Path,
) -> None:
    page = logged_in_page
    # A few transient failures, so the attempt logs show retries that succeeded.
    demo_refiner.server_error(times=2, path="/track-event")
    demo_kana.graphql_error(
        "Temporarily unavailable", "INTERNAL_SERVER_ERROR", times=3, operation="recordUsage"
    )
    seed_demo(refiner_url=demo_refiner.base_url, kana_url=demo_kana.base_url)
    cache.clear()  # the demo banner's few seconds of cache: show it on every page from now on
    make_member("maria", role="operator")
    make_member("sam", role="viewer")
    receiver, token = receiver_create(name="NPS survey", trigger="Survey Completed")
    hook_url = live_server.url + reverse("refiner-webhook", args=[receiver.public_id])
    assert send_webhook(hook_url, sample_webhook_payload(), token=token).status == 200
    assert send_webhook(hook_url, sample_webhook_payload(), token="rwh_wrong").status == 401
    wait_until(settled, SETTLE_SECONDS, worker.describe)

    source = Source.objects.get(name=DEMO_SOURCE)
    refiner = Destination.objects.get(name="Refiner (demo)")
    wrong_key = Destination.objects.get(name="Refiner, wrong key (demo)")
    kana = Destination.objects.get(name="Kana (demo)")

    # --- Sending events: a source's write key and SDK snippets ---
    page.goto(reverse("source-detail", args=[source.pk]))
    heading(page, DEMO_SOURCE)
    expect(page.locator("#snippet-python")).to_contain_text("analytics.host")
    shot("source-sdk-snippets")

    # --- Destinations, and the Refiner and Kana settings with Test connection ---
    page.goto(reverse("destination-list"))
    heading(page, "Destinations")
    expect(page.locator("table.destinations")).to_contain_text("Kana (demo)")
    shot("destinations")

    page.goto(reverse("destination-edit", args=[refiner.pk]))
    heading(page, "Edit Refiner (demo)")
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#test-result")).to_contain_text("Connected to Refiner project")
    shot("refiner-settings")

    page.goto(reverse("destination-edit", args=[kana.pk]))
    heading(page, "Edit Kana (demo)")
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#test-result")).to_contain_text("Connected to Kana: 3 features")
    shot("kana-settings")

    # --- Event delivery: counts, chart, and an error group opened on its samples ---
    page.goto(reverse("destination-delivery", args=[wrong_key.pk]))
    heading(page, wrong_key.name)
    errors = page.locator("#errors")
    expect(errors.locator(".error-group").first).to_contain_text("Refiner refused the API key")
    shot("event-delivery")
    expect(page.locator("#samples-1")).to_have_attribute("open", "")
    shot("event-delivery-errors", top=errors)

    # --- One event and what became of it at each destination ---
    # A track event whose Refiner delivery needed a retry, when there is one.
    delivered = Delivery.objects.filter(
        destination=refiner, event__type="track", status=DeliveryStatus.DELIVERED
    ).order_by("-attempts", "id")
    shown = delivered.first()
    assert shown is not None, "no track event reached Refiner"
    page.goto(reverse("event-detail", args=[shown.event_id]))
    heading(page, re.compile(r"track|identify|group|page"))
    deliveries = page.locator("#deliveries")
    expect(deliveries.locator("tbody.delivery").first).to_be_visible()
    shot("event-detail", top=deliveries)

    # --- Conflicts: the two boxes, a merge with a chosen field, a billing-customer import ---
    page.goto(reverse("conflicts"))
    heading(page, "Conflicts")
    expect(page.locator("#duplicate-emails")).to_contain_text("alan@demo.example")
    shot("conflicts")

    page.goto(reverse("conflicts-merge") + "?email=alan%40demo.example")
    heading(page, "Merge 2 users")
    preview = page.locator("#merge-preview")
    expect(preview.locator(".plan-summary")).to_contain_text("will be merged into")
    page.locator("tr.choice-row[data-field='name'] input[type=radio]").nth(1).check()
    expect(preview.locator("table.changes")).to_contain_text("Alan M. Turing")
    shot("merge")
    shot("merge-preview", top=preview)

    page.goto(reverse("conflicts-import"))
    heading(page, "Import billing customers")
    export = tmp_path / "stripe-customers.csv"
    export.write_text(STRIPE_EXPORT)
    page.get_by_label("CSV file").set_input_files(export)
    page.get_by_role("button", name="Upload and preview").click()
    heading(page, "Import")
    expect(page.get_by_text("Stripe customers export recognised")).to_be_visible()
    shot("import-preview", top=page.locator("main section.card").first)

    # --- Kana mapping: unmapped events, a rule previewed then saved and applied ---
    page.goto(reverse("mapping-unmapped", args=[kana.pk]))
    heading(page, "Unmapped events")
    expect(page.locator("table.unmapped")).to_contain_text("Invited Teammate")
    shot("unmapped-events")

    page.goto(reverse("mapping-rule-new", args=[kana.pk]) + "?event=Invited+Teammate")
    heading(page, "New mapping rule")
    expect(page.get_by_label("Event name")).to_have_value("Invited Teammate")
    page.get_by_label("Property path").first.fill("plan")
    page.get_by_label("Value", exact=True).first.fill("free")
    page.get_by_label("Records usage of feature").select_option("seats")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview-count")).to_be_visible()
    shot("mapping-rule-editor", top=page.locator("#rule-form"))

    page.get_by_role("button", name="Save and apply").click()
    heading(page, "Applying a mapping rule to stored events")
    expect(page.locator(".job-text")).to_contain_text("Done:", timeout=SETTLE_SECONDS * 1000)
    shot("mapping-rule-job")

    page.goto(reverse("mapping-rules", args=[kana.pk]))
    heading(page, "Mapping rules")
    expect(page.locator("table.rules tbody tr")).to_have_count(2)
    shot("mapping-rules")

    # --- A Refiner webhook receiver and its call log ---
    page.goto(reverse("receiver-detail", args=[receiver.pk]))
    heading(page, "NPS survey")
    expect(page.locator("#count-accepted")).to_have_text("1")
    expect(page.locator("#count-refused")).to_have_text("1")
    shot("refiner-receiver")

    # --- Members and roles ---
    page.goto(reverse("members"))
    heading(page, "Members")
    expect(page.locator("main table")).to_contain_text("maria")
    shot("members")

    # --- Last: the Overview and a source's live debugger ---
    page.goto(reverse("home"))
    heading(page, "Overview")
    shot("overview")

    debugger = url_or_none("source-debugger", source.pk)
    if debugger is not None:
        page.goto(debugger)
        heading(page, "Debugger")
        # While it is open: a batch with one good call and one the API refuses.
        batch = {
            "batch": [
                {"type": "track", "userId": "demo-ada", "event": "Report Exported",
                 "properties": {"format": "pdf", "rows": 1200}},
                {"type": "track", "userId": "demo-ada", "properties": {"format": "csv"}},
            ]
        }  # fmt: skip
        answer = requests.post(
            live_server.url + "/v1/batch", json=batch, auth=(source.write_key, ""), timeout=10
        )
        assert [item["index"] for item in answer.json()["failed"]] == [1]
        rows = page.locator("#debugger-rows")
        expect(rows).to_contain_text("track call without event name")
        rows.get_by_text("Report Exported").first.click()
        expect(rows).to_contain_text("1200")
        shot("debugger")
