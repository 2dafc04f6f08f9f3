"""Kana mapping in a real browser: events from the Segment SDK map to no feature, the operator
finds them under Unmapped events, makes a rule from one with Kana's feature list and a
preview, saves it, watches it applied to the stored events, and the usage arrives in Kana,
sent by a real Celery worker."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from playwright.sync_api import Page, expect
from segment.analytics.client import Client as SegmentClient

from destinations.connectors.kana.rules import rule_save
from destinations.models import Delivery, DeliveryStatus, Destination
from destinations.standins.kana import FakeKana
from tests.browser.conftest import artifact_path
from tests.helpers.worker import Worker, wait_until

pytestmark = pytest.mark.browser

# Delivery and the reprocessing job run in another process; give them more than a few seconds.
WORKER_TIMEOUT_MS = 20_000


@pytest.fixture
def kana(kana_destination: Destination, fake_kana: FakeKana) -> Destination:
    """The Kana destination, its stand-in offering three features."""
    fake_kana.add_feature("exports", "Exports")
    fake_kana.add_feature("seats", "Seats")
    fake_kana.add_feature("dashboards", "Dashboards viewed")
    return kana_destination


def delivered_count() -> int:
    return Delivery.objects.filter(status=DeliveryStatus.DELIVERED).count()


def test_operator_maps_unmapped_events_to_a_feature_and_usage_reaches_kana(
    logged_in_page: Page,
    kana: Destination,
    fake_kana: FakeKana,
    worker: Worker,
    sdk: SegmentClient,
) -> None:
    page = logged_in_page
    users = ("u-ada", "u-bob", "u-cy")
    for user in users:
        sdk.identify(user, {"name": user[2:].title(), "email": f"{user[2:]}@example.com"})
    wait_until(lambda: delivered_count() == 3, 20, worker.describe)  # Kana knows the users

    sdk.track("u-ada", "Report Exported", {"object": {"name": "invoice"}, "format": "pdf"})
    sdk.track("u-bob", "Report Exported", {"object": {"name": "invoice"}, "format": "csv"})
    sdk.track("u-cy", "Report Exported", {"object": {"name": "memo"}})
    sdk.track("u-ada", "Seat Added", {"seats": 2})
    sdk.track("u-bob", "Dashboard Viewed", {"dashboard": "Revenue"})
    sdk.track("u-cy", "Dashboard Viewed", {"dashboard": "Churn"})

    # The destination's page counts what mapped to nothing.
    page.goto(f"/destinations/{kana.pk}/")
    expect(page.get_by_role("link", name="Mapping rules (0)")).to_be_visible()
    page.screenshot(path=artifact_path("kana-destination"), full_page=False)
    page.get_by_role("link", name="Unmapped events (6)").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Unmapped events 6")
    rows = page.locator("table.unmapped tbody tr")
    expect(rows).to_have_count(3)
    report_row = rows.filter(has_text="Report Exported")
    expect(report_row.locator("td").nth(1)).to_have_text("3")
    expect(rows.filter(has_text="Dashboard Viewed").locator("td").nth(1)).to_have_text("2")
    page.mouse.move(0, 0)
    page.screenshot(path=artifact_path("kana-unmapped-events"), full_page=True)

    # A rule from the unmapped event: prefilled, narrowed by a property, Kana's feature.
    report_row.get_by_role("link", name="Create a rule from this").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New mapping rule")
    expect(page.get_by_label("Event name")).to_have_value("Report Exported")
    conditions = page.locator("#condition-rows .condition-row")
    expect(conditions).to_have_count(1)
    page.get_by_role("button", name="+ Add condition").click()
    expect(conditions).to_have_count(2)  # added by htmx, in place
    conditions.nth(1).get_by_role("button", name="Remove condition").click()
    expect(conditions).to_have_count(1)
    conditions.nth(0).get_by_label("Property path").fill("object.name")
    conditions.nth(0).get_by_label("Operator").select_option("equals")
    conditions.nth(0).get_by_label("Value").fill("invoice")
    feature = page.get_by_label("Records usage of feature")
    expect(feature.locator("option")).to_have_text(
        [
            "Choose a Kana feature…",
            "Dashboards viewed (dashboards)",
            "Exports (exports)",
            "Seats (seats)",
        ]
    )
    feature.select_option(label="Exports (exports)")

    page.get_by_role("button", name="Preview").click()
    preview = page.locator("#rule-preview")
    expect(preview.locator("#preview-count")).to_have_text("2")
    expect(preview).to_contain_text("2 stored unmapped events match this rule")
    examples = preview.locator("table.examples tbody tr")
    expect(examples).to_have_count(2)
    expect(examples.nth(0)).to_contain_text("u-ada")
    expect(examples.nth(1)).to_contain_text('"format": "csv"')
    expect(page).to_have_url(re.compile(r"/rules/new/\?event=Report%20Exported$"))  # no reload
    page.screenshot(path=artifact_path("kana-rule-editor"), full_page=True)

    # Save: the rule is applied to the stored events by the worker, and the usage sent.
    page.get_by_role("button", name="Save and apply").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Applying a mapping rule to stored events"
    )
    # The events the job looks at: all three on SQLite; PostgreSQL narrows string equalities
    # in SQL first (docs/decisions/0011), so only the two that can match.
    candidates = 3 if connection.vendor == "sqlite" else 2
    expect(page.locator(".messages")).to_contain_text(
        f"Rule saved: applying it to {candidates} stored unmapped events."
    )
    job = page.locator(".job")
    expect(job).to_contain_text(
        f"Done: 2 of {candidates} unmapped events matched; 2 usage events delivered by this rule.",
        timeout=WORKER_TIMEOUT_MS,
    )
    expect(job.get_by_role("progressbar")).to_have_attribute("value", "100")
    expect(job.locator("#job-scanned")).to_have_text(str(candidates))
    expect(job.locator("#job-matched")).to_have_text("2")
    expect(job.locator("#job-delivered")).to_have_text("2")
    expect(job).not_to_have_attribute("hx-get", re.compile(".+"))  # polling stopped
    page.screenshot(path=artifact_path("kana-rule-applied"), full_page=True)

    assert fake_kana.usage("u-ada", "exports") == 1
    assert fake_kana.usage("u-bob", "exports") == 1
    assert fake_kana.usage("u-cy", "exports") == 0
    recorded = [(u.user_id, u.feature_id, u.delta) for u in fake_kana.usage_events]
    assert sorted(recorded) == [("u-ada", "exports", 1), ("u-bob", "exports", 1)]

    # Two more rules, then the list as an operator reads it.
    rule_save(destination=kana, event_name="Seat Added", conditions=[], feature_id="seats")
    rule_save(
        destination=kana,
        event_name="Dashboard Viewed",
        conditions=[{"path": "properties.dashboard", "op": "exists"}],
        feature_id="dashboards",
        enabled=False,
    )
    # The Seat Added rule is applied by the worker too (properties.delta absent: 1).
    wait_until(lambda: fake_kana.usage("u-ada", "seats") == 1, 20, worker.describe)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Mapping rules").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Mapping rules")
    table = page.locator("table.rules tbody tr")
    expect(table).to_have_count(3)
    expect(table.nth(0)).to_contain_text("properties.object.name equals 'invoice'")
    expect(table.nth(0).locator(".count-delivered")).to_have_text("2 delivered")
    expect(table.nth(1).locator(".count-delivered")).to_have_text("1 delivered")
    expect(table.nth(2)).to_contain_text("disabled")

    # Order decides: move the last rule up, in place.
    table.nth(2).get_by_role("button", name="Move rule 3 up").click()
    expect(table.nth(1)).to_contain_text("dashboards")
    page.reload()
    expect(table.nth(1)).to_contain_text("dashboards")
    page.get_by_role("link", name="Unmapped events (3)").wait_for()
    page.mouse.move(0, 0)
    page.screenshot(path=artifact_path("kana-mapping-rules"), full_page=True)

    # A destination filter, with the same condition editor.
    page.goto(f"/destinations/{kana.pk}/filters/")
    page.get_by_label("Event name").fill("Dashboard Viewed")
    row = page.locator("#condition-rows .condition-row").first
    row.get_by_label("Property path").fill("context.app.build")
    row.get_by_label("Operator").select_option("lt")
    row.get_by_label("Value").fill("100")
    page.get_by_role("button", name="Add filter").click()
    expect(page.locator(".messages")).to_contain_text("Filter 1 added")
    expect(page.locator("#filter-1")).to_contain_text(
        "event equals 'Dashboard Viewed' and context.app.build is less than '100'"
    )
    page.screenshot(path=artifact_path("kana-event-filters"), full_page=True)
