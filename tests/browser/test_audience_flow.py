"""Audiences in a real browser: users and events arrive from the Segment SDK; an operator builds
an audience of two conditions (a trait and an event count), previews it, saves it, watches a
real Celery worker compute it, sees its members, and sees its syncs delivered to the Refiner
stand-in on the destination's Event delivery page, its members added to the Refiner manual
segment chosen for it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import segment.analytics.request as segment_request
from playwright.sync_api import Page, expect
from segment.analytics.client import Client as SegmentClient

from destinations.models import Audience, Delivery, DeliveryStatus, Destination, Source
from destinations.standins.refiner import FakeRefiner
from tests.browser.conftest import artifact_path
from tests.browser.test_guide_screenshots import IMAGES, SCREENSHOTS, squeeze
from tests.helpers.worker import Worker, wait_until

pytestmark = pytest.mark.browser

# The computation and the deliveries run in another process: give them more than a few seconds.
WORKER_TIMEOUT_MS = 30_000
SEGMENT = "6f1d2c3b-4a59-4e68-9d7c-0b1a2c3d4e5f"


@pytest.fixture
def sdk(source: Source, live_server: Any) -> Iterator[SegmentClient]:
    client = SegmentClient(source.write_key, host=live_server.url, sync_mode=True, max_retries=0)
    yield client
    # The SDK keeps a module-level session; kept-alive sockets would hold a live-server thread.
    segment_request._session.close()


def guide_picture(page: Page, name: str, top: str) -> None:
    """With SWITCHBOARD_GUIDE_SCREENSHOTS=1, the operator guide's picture of this page (the
    viewport, ``top`` scrolled to the top), as the guide's own walk writes its pictures."""
    if not SCREENSHOTS:
        return
    page.locator(top).evaluate("element => element.scrollIntoView({block: 'start'})")
    path = IMAGES / f"{name}.png"
    page.screenshot(path=str(path), animations="disabled", caret="hide")
    squeeze(path)


def delivered() -> int:
    return Delivery.objects.filter(status=DeliveryStatus.DELIVERED).count()


def in_segment(fake_refiner: FakeRefiner, user_id: str) -> bool:
    contact = fake_refiner.contact(id=user_id)
    return contact is not None and SEGMENT in contact.segment_uuids


def flags(fake_refiner: FakeRefiner, key: str) -> list[tuple[str, Any]]:
    return [
        (r.body["id"], r.body[key])
        for r in fake_refiner.requests_to("/identify-user")
        if key in r.body
    ]


def test_operator_builds_an_audience_and_its_members_reach_refiner(
    logged_in_page: Page,
    refiner_destination: Destination,
    fake_refiner: FakeRefiner,
    worker: Worker,
    sdk: SegmentClient,
) -> None:
    page = logged_in_page
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    fake_refiner.add_segment("Trial exporters (kept by Switchboard)", uuid=SEGMENT)
    for user, plan in (("u-ada", "trial"), ("u-bob", "trial"), ("u-cy", "trial"), ("u-dan", "pro")):
        sdk.identify(user, {"plan": plan, "email": f"{user[2:]}@example.com"})
    for user in ("u-ada", "u-ada", "u-bob", "u-bob", "u-bob", "u-cy", "u-dan", "u-dan"):
        sdk.track(user, "Report Exported", {"format": "csv"})
    wait_until(lambda: delivered() == 12, 30, worker.describe)  # Refiner has the users

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audiences").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Audiences")
    page.get_by_role("link", name="New audience").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New audience")

    # The key follows the name as it is typed.
    page.get_by_label("Name").fill("Trial exporters")
    expect(page.locator("#key-preview")).to_have_text("Key trial_exporters")
    expect(page.locator("#audience-form")).to_contain_text(
        "The key cannot change once created: destinations key on it."
    )

    # Condition 1, there from the start: a user trait. Condition 2, added in place: an event.
    page.get_by_label("User trait path").fill("plan")
    page.get_by_label("User trait operator").select_option("equals")
    page.get_by_label("User trait value").fill("trial")
    page.locator("#builder > .row-actions").get_by_role("button", name="+ Event").click()
    conditions = page.locator("#builder > ol.condition-tree > li")
    expect(conditions).to_have_count(2)
    expect(page.get_by_label("User trait value")).to_have_value("trial")  # kept across the swap
    event = conditions.nth(1)
    event.get_by_label("Event name").fill("Report Exported")
    event.get_by_label("How often").select_option("at_least")
    event.get_by_label("Times", exact=True).fill("2")
    event.get_by_label("Within the last days").fill("7")
    expect(page).to_have_url(re.compile(r"/audiences/new/$"))  # no reload

    # Refiner is the destination, with a manual segment from Refiner's own list.
    page.get_by_role("checkbox", name="Refiner").check()
    segment = page.get_by_label("Keep a Refiner manual segment in step")
    expect(segment.locator("option")).to_have_text(
        ["No segment", "Trial exporters (kept by Switchboard)"]
    )
    segment.select_option(label="Trial exporters (kept by Switchboard)")

    page.get_by_role("button", name="Preview").click()
    preview = page.locator("#audience-preview")
    expect(preview.locator("#preview-count")).to_have_text("2")
    expect(preview).to_contain_text("2 users match now")
    assert sorted(preview.get_by_role("link").all_inner_texts()) == ["u-ada", "u-bob"]
    page.screenshot(path=artifact_path("audience-editor"), full_page=True)
    guide_picture(page, "audience-editor", "#builder")

    # Saving starts the first computation on the worker; the page follows it to the end.
    page.get_by_role("button", name="Save and compute").click()
    expect(page).to_have_url(re.compile(r"/audiences/\d+/\?job=\d+$"))
    expect(page.locator(".messages")).to_contain_text(
        "Audience 'Trial exporters' created: computing who is in it now."
    )
    job = page.locator(".job")
    expect(job).to_contain_text(
        "Done: 2 entered, 0 left; 2 syncs stored for delivery.", timeout=WORKER_TIMEOUT_MS
    )
    expect(job.get_by_role("progressbar")).to_have_attribute("value", "100")
    expect(job.locator("#job-scanned")).to_have_text("4")
    expect(job.locator("#job-entered")).to_have_text("2")
    expect(page.locator("#audience-size")).to_have_text("2")  # refreshed when the job ended
    members = page.locator("#members table.members tbody tr")
    expect(members).to_have_count(2)
    expect(members.get_by_role("link")).to_have_text(["u-bob", "u-ada"])
    expect(page.locator("#definition")).to_contain_text(
        "performed 'Report Exported' at least 2 times in the last 7 days"
    )
    audience = Audience.objects.get()
    assert list(audience.targets.values_list("refiner_segment", flat=True)) == [SEGMENT]

    # The syncs reach Refiner: one identify each, with the audience's key as a trait.
    wait_until(lambda: len(flags(fake_refiner, "trial_exporters")) == 2, 30, worker.describe)
    assert sorted(flags(fake_refiner, "trial_exporters")) == [("u-ada", True), ("u-bob", True)]

    # And into the manual segment chosen for it, after each identify.
    def both_in_segment() -> bool:
        return in_segment(fake_refiner, "u-ada") and in_segment(fake_refiner, "u-bob")

    wait_until(both_in_segment, 30, worker.describe)
    assert not in_segment(fake_refiner, "u-cy")
    wait_until(lambda: delivered() == 14, 30, worker.describe)
    page.reload()
    sync = page.locator(f"#sync-{refiner_destination.pk}")
    expect(sync.locator(".sync-delivered")).to_have_text("2")
    expect(sync.locator(".sync-pending")).to_have_text("0")
    page.screenshot(path=artifact_path("audience-page"), full_page=True)
    guide_picture(page, "audience-page", ".pagehead")

    # The destination's Event delivery page counts them with everything else it delivered.
    sync.get_by_role("link", name="Refiner").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Refiner")
    expect(page.locator("#count-delivered")).to_have_text("14")
    # And the Events list says which events are the audience's syncs.
    page.goto("/events/?type=identify")
    expect(page.locator(".badge.audience-sync")).to_have_text(
        ["audience sync: Trial exporters", "audience sync: Trial exporters"]
    )
    assert problems == []  # nothing refused by the Content-Security-Policy, no script error
