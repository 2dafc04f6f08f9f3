"""Links lead somewhere, in a real browser: from an audit entry to its job's own page, an old
job link to where the job is shown now, and what is not there to a "Not found" page inside the
dashboard's layout (the live server runs with DEBUG off, as production does)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from destinations.connectors.kana.rules import rule_save
from destinations.delivery.services import retry_failed_start
from destinations.models import Destination
from tests.browser.conftest import Operator

pytestmark = pytest.mark.browser


def open_entry(page: Page, summary: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit log").click()
    page.locator("td.summary").get_by_role("link", name=re.compile(summary)).click()
    expect(page.locator("p.summary-line")).to_contain_text(summary)


def test_job_links_reach_the_job_and_a_missing_page_keeps_the_layout(
    logged_in_page: Page,
    admin_operator: Operator,
    kana_destination: Destination,
    refiner_destination: Destination,
) -> None:
    page = logged_in_page
    admin = get_user_model().objects.get(username=admin_operator.username)
    rule, reprocessing = rule_save(
        destination=kana_destination,
        event_name="Report Exported",
        conditions=[],
        feature_id="exports",
        user=admin,
    )
    assert reprocessing is not None
    retrying = retry_failed_start(refiner_destination, admin)
    rule_page = f"/destinations/{kana_destination.pk}/rules/jobs/{reprocessing.pk}/"

    # A saved rule's entry links to its reprocessing, on the rule's page.
    open_entry(page, f"Saved mapping rule {rule.pk}")
    page.get_by_role(
        "link", name=f"Apply a mapping rule to unmapped events #{reprocessing.pk}"
    ).click()
    expect(page).to_have_url(re.compile(re.escape(rule_page) + "$"))
    expect(
        page.get_by_role("heading", name="Applying a mapping rule to stored events")
    ).to_be_visible()

    # A retry's entry links to the retry's progress.
    open_entry(page, "Retried all 0 failed deliveries")
    page.get_by_role("link", name=f"Retry failed deliveries #{retrying.pk}").click()
    expect(page).to_have_url(re.compile(rf"/jobs/{retrying.pk}/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Retry failed deliveries · {refiner_destination.name}"
    )

    # Links made before (under Conflicts, or the plain job page) find the job's page too.
    for old in (f"/conflicts/jobs/{reprocessing.pk}/", f"/jobs/{reprocessing.pk}/"):
        page.goto(old)
        expect(page).to_have_url(re.compile(re.escape(rule_page) + "$"))

    # What is not there: the dashboard's own page, with its menu, saying what was missing.
    for missing, said in (
        ("/conflicts/jobs/999999/", "No Job matches the given query."),
        ("/no-such-page/", "There is no page at /no-such-page/."),
    ):
        response = page.goto(missing)
        assert response is not None and response.status == 404
        expect(page.get_by_role("heading", name="Not found")).to_be_visible()
        expect(page.locator("#not-found-message")).to_have_text(said)
        expect(page.get_by_role("navigation", name="Main")).to_be_visible()
        expect(page.locator(".topbar .who")).to_have_text(admin_operator.username)
