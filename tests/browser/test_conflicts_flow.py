"""User conflicts in a real browser: find users sharing an email, merge them keeping the newer
user's name, land on the survivor's page, undo the merge from the audit log; delete a user with
suppression and see its next event dropped; import a Stripe export with a real worker and watch
the progress bar finish."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import FilePayload, Page, expect

from destinations.models import AuditAction, AuditEntry, Event, Profile, Suppression
from tests.browser.conftest import artifact_path
from tests.helpers.ingest import IngestPost, send
from tests.helpers.worker import Worker

pytestmark = pytest.mark.browser

# The import runs in the worker process; give it more than the default few seconds.
JOB_TIMEOUT_MS = 20_000


@pytest.fixture
def conflicts(post_ingest: IngestPost) -> dict[str, Profile]:
    """A realistic mix: Ada twice (the newer one with her full name and a billing id), a team
    inbox shared by three users, two users billed under one email, and some without billing."""
    send(
        post_ingest,
        [
            {"type": "identify", "userId": "u-ada-1", "anonymousId": "anon-ada-laptop",
             "traits": {"email": "ada@example.com", "name": "Ada L", "plan": "free"}},
            {"type": "group", "userId": "u-ada-1", "groupId": "acme",
             "traits": {"name": "Acme Corp"}},
            {"type": "track", "userId": "u-ada-1", "event": "Report Exported"},
            {"type": "identify", "userId": "u-team-1", "traits": {"email": "team@initech.io",
             "name": "Peter Gibbons", "billingId": "cus_P1xQ"}},
            {"type": "identify", "userId": "u-sam", "traits": {"email": "sam@hooli.com",
             "name": "Sam Lee"}},
        ],
    )  # fmt: skip
    send(  # a later request: these users are newer
        post_ingest,
        [
            {"type": "identify", "userId": "u-ada-2", "anonymousId": "anon-ada-phone",
             "traits": {"email": "Ada@Example.com", "name": "Ada Lovelace",
                        "billingId": "cus_Ada42", "plan": "pro"}},
            {"type": "group", "userId": "u-ada-2", "groupId": "analytical",
             "traits": {"name": "Analytical Engines"}},
            {"type": "track", "userId": "u-ada-2", "event": "Seat Added"},
            {"type": "track", "userId": "u-ada-2", "event": "Report Exported"},
            {"type": "identify", "userId": "u-team-2", "traits": {"email": "team@initech.io",
             "name": "Michael Bolton"}},
            {"type": "identify", "userId": "u-team-3", "traits": {"email": "team@initech.io",
             "name": "Samir N."}},
            {"type": "identify", "userId": "u-fin-1", "traits": {"email": "billing@globex.com",
             "name": "Hank Scorpio", "billingId": "cus_G10bex"}},
            {"type": "identify", "userId": "u-fin-2", "traits": {"email": "billing@globex.com",
             "name": "Globex Finance", "billingId": "sub_9xK"}},
            {"type": "identify", "userId": "u-trial", "traits": {"email": "kim@umbrella.dev",
             "name": "Kim Trial"}},
            {"type": "track", "userId": "u-trial", "event": "Trial Started"},
        ],
    )  # fmt: skip
    return {p.user_id or "": p for p in Profile.objects.all()}


def test_merge_keeping_the_newer_name_then_undo_from_the_audit_log(
    logged_in_page: Page, conflicts: dict[str, Profile]
) -> None:
    page = logged_in_page
    older, newer = conflicts["u-ada-1"], conflicts["u-ada-2"]
    page.goto("/conflicts/")
    expect(page.get_by_role("heading", name="Conflicts", level=1)).to_be_visible()
    groups = page.locator("#duplicate-emails")
    expect(page.locator("#count-duplicate-emails")).to_have_text("3 emails")
    expect(groups.locator("tbody tr").first).to_contain_text("team@initech.io")  # most users
    # Five without a billing id, and Globex Finance's, which Kana would refuse (not cus_).
    billing = page.locator("#missing-billing tbody tr")
    expect(billing).to_have_count(6)
    expect(billing.filter(has_text="u-fin-2")).to_contain_text("invalid billing id")
    page.mouse.move(0, 0)
    page.screenshot(path=artifact_path("conflicts-page"), full_page=True)

    # Live search narrows the box as you type, and the URL keeps it.
    groups_search = page.get_by_role("searchbox", name="Search emails")
    groups_search.fill("ada@")
    expect(groups.locator("tbody tr")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"email_q=ada%40"))
    groups.locator("tbody tr").filter(has_text="ada@example.com").get_by_role(
        "link", name="Review & merge"
    ).click()

    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Merge 2 users sharing ada@example.com"
    )
    survivor = page.locator("tr.survivor-row")
    expect(survivor.locator(f"td[data-profile='{older.pk}'] input")).to_be_checked()  # oldest
    preview = page.locator("#merge-preview")
    expect(preview).to_contain_text("u-ada-2 will be merged into u-ada-1.")
    expect(preview.locator("#plan-events")).to_have_text("4")
    expect(preview).to_contain_text("anon-ada-phone")
    expect(preview).to_contain_text("Analytical Engines")
    expect(preview.locator("table.changes")).to_contain_text("cus_Ada42")

    # Keep the newer user's name: the preview follows without a page load.
    page.locator("tr[data-field='name']").get_by_text("Ada Lovelace").click()
    changed = preview.locator("table.changes tr.changed").filter(has_text="Name")
    expect(changed.locator("td.before")).to_have_text("Ada L")
    expect(changed.locator("td.after")).to_have_text("Ada Lovelace")
    page.mouse.move(0, 0)
    page.screenshot(path=artifact_path("merge-page"), full_page=True)

    # Choosing the newer user as survivor and back keeps its own userId choice in step.
    survivor.locator(f"td[data-profile='{newer.pk}'] input").check()
    user_id_row = page.locator("tr[data-field='user_id']")
    expect(user_id_row.locator(f"td[data-profile='{newer.pk}'] input")).to_be_checked()
    expect(preview).to_contain_text("u-ada-1 will be merged into u-ada-2 not the oldest user.")
    survivor.locator(f"td[data-profile='{older.pk}'] input").check()
    expect(user_id_row.locator(f"td[data-profile='{older.pk}'] input")).to_be_checked()
    expect(preview).to_contain_text("u-ada-2 will be merged into u-ada-1.")

    page.get_by_role("button", name="Confirm merge").click()
    expect(page).to_have_url(f"/users/{older.pk}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Ada Lovelace")
    expect(page.get_by_role("status")).to_contain_text(
        "Merged u-ada-2 into u-ada-1 (4 events moved)"
    )
    expect(page.locator("#billing-id")).to_contain_text("cus_Ada42")
    expect(page.locator("#absorbed").get_by_role("link", name="u-ada-2")).to_be_visible()
    page.screenshot(path=artifact_path("merge-survivor-page"), full_page=True)
    older.refresh_from_db()
    assert (older.name, older.billing_id) == ("Ada Lovelace", "cus_Ada42")

    # Undo from the audit log puts both users back.
    page.goto("/audit/")
    row = page.locator("table.audit tbody tr").filter(has_text="Merged u-ada-2 into u-ada-1")
    # Two steps: the first only explains what undoing does.
    row.get_by_text("Undo…").click()
    expect(row).to_contain_text("Every user in this merge goes back to how it was just before it")
    older.refresh_from_db()
    assert older.name == "Ada Lovelace"  # nothing undone yet
    row.get_by_role("button", name="Yes, undo this merge").click()
    expect(page.get_by_role("status")).to_contain_text(
        "Undid: Merged u-ada-2 into u-ada-1 (4 events moved)"
    )
    expect(row.locator(".tag.off")).to_have_text("undone")
    page.screenshot(path=artifact_path("audit-log"), full_page=True)
    older.refresh_from_db()
    newer.refresh_from_db()
    assert (older.name, older.billing_id, newer.merged_into_id) == ("Ada L", None, None)
    assert Event.objects.filter(profile=newer, event="Seat Added").exists()
    page.goto("/conflicts/")
    expect(page.locator("#count-duplicate-emails")).to_have_text("3 emails")


def test_delete_with_suppression_drops_the_users_next_events(
    logged_in_page: Page, conflicts: dict[str, Profile], post_ingest: IngestPost
) -> None:
    page = logged_in_page
    trial = conflicts["u-trial"]
    page.goto("/conflicts/")
    box = page.locator("#missing-billing")
    page.get_by_role("searchbox", name="Search users without a billing id").fill("kim")
    expect(box.locator("tbody tr")).to_have_count(1)
    box.get_by_role("link", name="Delete u-trial").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Delete u-trial?")
    expect(page.locator("#delete-events")).to_have_text("2")
    page.get_by_label("Also delete this user's events").check()
    page.get_by_label("Suppress future events for this userId and email").check()
    page.screenshot(path=artifact_path("delete-user"), full_page=True)
    page.get_by_role("button", name="Delete user").click()

    expect(page).to_have_url("/conflicts/")
    expect(page.get_by_role("status")).to_contain_text(
        "Deleted u-trial and 2 events; future events suppressed for userId u-trial, "
        "email kim@umbrella.dev."
    )
    expect(box.locator("tbody")).not_to_contain_text("u-trial")
    assert not Profile.objects.filter(pk=trial.pk).exists()
    assert set(Suppression.objects.values_list("kind", "value")) == {
        ("user_id", "u-trial"),
        ("email", "kim@umbrella.dev"),
    }
    response = post_ingest(
        "batch",
        {"batch": [
            {"type": "track", "userId": "u-trial", "event": "Trial Extended"},
            {"type": "identify", "userId": "u-kim-again", "traits": {"email": "kim@umbrella.dev"}},
        ]},
    )  # fmt: skip
    assert response.status_code == 200 and response.json()["suppressed"] == 2
    assert not Event.objects.filter(user_id__in=["u-trial", "u-kim-again"]).exists()

    page.goto("/audit/?action=delete")
    expect(page.locator("table.audit tbody tr")).to_have_count(1)
    expect(page.locator("table.audit")).to_contain_text("Deleted u-trial and 2 events")


STRIPE_EXPORT = (
    b"id,Description,Email,Name,Created (UTC),Delinquent\n"
    b"cus_NffrFeUfNV2Hib,,kim@umbrella.dev,Kim Trial,2024-03-01 10:00,false\n"
    b"cus_Q3r7Tq0dSam,,sam@hooli.com,Sam Lee,2024-03-02 11:30,false\n"
    b"cus_NewCo1,,grace@navy.mil,Grace Hopper,2024-03-03 09:15,false\n"
    b"sub_1OzBadRow,,oops@example.com,Not A Customer,2024-03-04 16:45,false\n"
    b"cus_NoEmail,,,Nameless,2024-03-05 08:00,false\n"
)


def test_stripe_import_runs_with_a_progress_bar(
    logged_in_page: Page, conflicts: dict[str, Profile], worker: Worker
) -> None:
    page = logged_in_page
    page.goto("/conflicts/")
    page.get_by_role("link", name="Import billing customers").click()
    page.get_by_label("CSV file").set_input_files(
        files=FilePayload(name="customers.csv", mimeType="text/csv", buffer=STRIPE_EXPORT)
    )
    page.get_by_role("button", name="Upload and preview").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Import customers.csv")
    expect(page.get_by_text("Stripe customers export recognised")).to_be_visible()
    expect(page.locator("#preview-created")).to_have_text("1")  # grace
    expect(page.locator("#preview-updated")).to_have_text("2")  # kim and sam get their ids
    expect(page.locator("#preview-refused")).to_have_text("2")
    refused = page.locator("table.refused")
    expect(refused).to_contain_text("billing id 'sub_1OzBadRow' is not a Stripe")
    expect(refused).to_contain_text("no email and no userId to find the user by")
    expect(page.locator("table.preview-rows")).to_contain_text("billing id set (u-trial)")
    page.screenshot(path=artifact_path("import-preview"), full_page=True)

    page.get_by_role("button", name="Import").click()
    expect(page).to_have_url(re.compile(r"/conflicts/jobs/\d+/$"))
    job = page.locator(".job")
    expect(job.get_by_role("progressbar")).to_be_visible()
    expect(job).to_contain_text("Done", timeout=JOB_TIMEOUT_MS)
    expect(job.get_by_role("progressbar")).to_have_attribute("value", "100")
    result = page.locator("#job-result")
    expect(result.locator("#result-created")).to_have_text("1")
    expect(result.locator("#result-updated")).to_have_text("2")
    expect(result.locator("#result-refused")).to_have_text("2")
    expect(result.locator("table.refused")).to_contain_text("sub_1OzBadRow")
    page.screenshot(path=artifact_path("import-job"), full_page=True)

    assert Profile.objects.get(user_id="u-trial").billing_id == "cus_NffrFeUfNV2Hib"
    assert Profile.objects.get(email="grace@navy.mil").user_id is None
    assert AuditEntry.objects.filter(action=AuditAction.IMPORT).count() == 1
    result.get_by_role("link", name="Back to conflicts").click()
    expect(page.locator("#missing-billing tbody")).not_to_contain_text("u-trial")
