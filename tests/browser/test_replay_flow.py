"""Replay history in a real browser: events from the Segment SDK are stored before a Kana
destination exists; the operator takes its page's offer of the last 30 days, previews what
would be sent, starts the replay and watches a real Celery worker take it to done; then finds
the replayed deliveries under the Replays filter and the replay badge on an event's page.

With ``SWITCHBOARD_GUIDE_SCREENSHOTS=1`` it also writes the operator guide's two pictures of
Replay history (docs/operator-guide.md, "Pictures in this guide")."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from segment.analytics.client import Client as SegmentClient

from destinations.models import Delivery, Event, Job, JobStatus, Replay
from destinations.standins.kana import FakeKana
from tests.browser.conftest import artifact_path
from tests.browser.test_guide_screenshots import IMAGES, SCREENSHOTS, squeeze
from tests.helpers.kana_rules import kana_with_rule
from tests.helpers.worker import Worker

pytestmark = pytest.mark.browser

# The replay runs in another process, paced; give it more than a few seconds.
WORKER_TIMEOUT_MS = 30_000
USERS = ("u-ada", "u-bob", "u-cy")


def guide_picture(page: Page, name: str, top: str) -> None:
    """With SWITCHBOARD_GUIDE_SCREENSHOTS=1, the operator guide's picture of this page (the
    viewport, ``top`` scrolled to the top), as the guide's own walk writes its pictures."""
    if not SCREENSHOTS:
        return
    page.mouse.move(0, 0)
    page.locator(top).evaluate("element => element.scrollIntoView({block: 'start'})")
    path = IMAGES / f"{name}.png"
    page.screenshot(path=str(path), animations="disabled", caret="hide")
    squeeze(path)


def test_operator_replays_history_to_a_destination_added_later(
    logged_in_page: Page, fake_kana: FakeKana, worker: Worker, sdk: SegmentClient
) -> None:
    page = logged_in_page
    # History first: three users, each identified and exporting a report; one page view,
    # which Kana does not take.
    for user in USERS:
        sdk.identify(user, {"email": f"{user[2:]}@example.com", "billingUserId": f"cus_{user}"})
        sdk.track(user, "Report Exported", {"format": "pdf"})
    sdk.page("u-ada", name="Pricing")
    assert not Delivery.objects.exists()  # nowhere to send them yet

    kana = kana_with_rule(fake_kana)

    # The new destination's page offers its history.
    page.goto(f"/destinations/{kana.pk}/")
    expect(page.locator("#replays")).to_contain_text("No replays yet.")
    offer = page.locator("#history-offer")
    expect(offer).to_be_visible()
    offer.get_by_role("link", name="Send the last 30 days of history to it").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Replay history")
    expect(page.get_by_label("Last 30 days")).to_be_checked()
    received = page.get_by_label("Also send events this destination already received")
    expect(received).not_to_be_checked()

    # Preview: counted in place, nothing started.
    page.get_by_role("button", name="Preview").click()
    preview = page.locator("#replay-preview")
    expect(preview.locator("#preview-sending")).to_have_text("6")
    expect(preview.locator("#preview-candidates")).to_have_text("7")
    expect(preview).to_contain_text(
        "6 events would be sent to Kana, of 7 stored events from the last 30 days that it has not"
    )
    expect(preview.locator("#preview-type-identify")).to_contain_text("3")
    expect(preview.locator("#preview-type-track")).to_contain_text("3")
    expect(preview).to_contain_text("Kana does not accept page calls: 1")
    examples = preview.locator("table.examples tbody tr")
    expect(examples).to_have_count(5)
    expect(examples.nth(0)).to_contain_text("u-ada")
    expect(page).to_have_url(re.compile(rf"/destinations/{kana.pk}/replay/\?range=30d$"))
    assert not Replay.objects.exists()
    page.screenshot(path=artifact_path("replay-preview"), full_page=True)
    guide_picture(page, "replay-preview", "#replay-form .form-actions")

    # Start: back on the destination's page, the replay's bar runs to done.
    page.get_by_role("button", name="Start replay").click()
    expect(page.locator(".messages")).to_contain_text(
        "Replay started: 7 stored events to look at for Kana."
    )
    replay = Replay.objects.get()
    expect(page).to_have_url(re.compile(rf"/destinations/{kana.pk}/\?job={replay.job_id}"))
    card = page.locator(f"#replay-{replay.job_id}")
    expect(card).to_contain_text("Started by operator")
    job = card.locator(".job")
    expect(job).to_contain_text(
        "Done: 6 delivered, 0 failed, 1 skipped of 7 stored events.", timeout=WORKER_TIMEOUT_MS
    )
    expect(job.get_by_role("progressbar")).to_have_attribute("value", "100")
    expect(job.locator("#job-delivered")).to_have_text("6")
    expect(job.locator("#job-skipped")).to_have_text("1")
    expect(job).not_to_have_attribute("hx-get", re.compile(".+"))  # polling stopped
    expect(page.locator("#history-offer")).to_have_count(0)  # it has had its history
    page.screenshot(path=artifact_path("replay-done"), full_page=True)
    guide_picture(page, "replay-done", "#replays")
    assert {user.id for user in fake_kana.users} == set(USERS)
    assert sorted(u.user_id for u in fake_kana.usage_events) == sorted(USERS)
    assert Job.objects.get(pk=replay.job_id).status == JobStatus.DONE

    # The replay's deliveries under the Replays filter; none under Live.
    stats = page.locator("#delivery-stats")
    traffic = stats.get_by_role("navigation", name="Live or replay")
    traffic.get_by_role("link", name="Live").click()
    expect(stats.locator("#count-delivered")).to_have_text("0")
    traffic.get_by_role("link", name="Replays").click()
    expect(stats.locator("#count-delivered")).to_have_text("6")
    expect(page).to_have_url(re.compile(r"traffic=replay"))

    # An event's page: its delivery to Kana is the replay's, badged, linking to the replay.
    event = Event.objects.get(type="track", user_id="u-bob")
    page.goto(f"/events/{event.pk}/")
    deliveries = page.locator("#deliveries")
    expect(deliveries.locator("tbody.delivery")).to_have_count(1)
    badge = deliveries.locator("a.badge.replay")
    expect(badge).to_have_text("replay")
    page.screenshot(path=artifact_path("replay-event"), full_page=True)
    badge.click()
    expect(page).to_have_url(re.compile(rf"/destinations/{kana.pk}/\?job={replay.job_id}"))
    expect(page.locator(f"#replay-{replay.job_id}")).to_contain_text("Done: 6 delivered")
