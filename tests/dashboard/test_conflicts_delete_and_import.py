"""Deleting a user from the dashboard (events, suppression, the Refiner contact) and the
billing-customer import (Stripe export, mapped columns, unreadable files)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from pytest_django import DjangoCaptureOnCommitCallbacks

from destinations import jobs
from destinations.connectors.refiner.contacts import delete_contacts
from destinations.delivery.services import destination_create
from destinations.models import (
    AuditAction,
    AuditEntry,
    Event,
    Job,
    JobKind,
    JobStatus,
    Profile,
    Suppression,
    Upload,
)
from destinations.standins.refiner import FakeRefiner
from tests.helpers.conflicts import merge_form
from tests.helpers.ingest import IngestPost
from tests.helpers.pages import messages_of, text_of

pytestmark = pytest.mark.django_db

STRIPE = (
    b"id,Description,Email,Name,Created (UTC)\n"
    b"cus_A1,,ada@x.co,Ada,2024-01-01\n"
    b"cus_B2,,grace@x.co,Grace Hopper,2024-01-02\n"
    b"cus_C3,,,No Email,2024-01-03\n"
    b"sub_D4,,d@x.co,Wrong Object,2024-01-04\n"
)


# Delete ---------------------------------------------------------------------------------------


def test_delete_with_events_and_suppression(
    staff_client: Client, post_ingest: IngestPost, twins: tuple[Profile, Profile]
) -> None:
    old, _ = twins
    confirm = staff_client.get(reverse("user-delete", args=[old.pk]))
    page = text_of(confirm)
    assert "Delete u-old?" in page
    assert '<dd id="delete-events">3</dd>' in page
    assert "userId u-old" in page.replace("<code>", "").replace("</code>", "")

    response = staff_client.post(
        reverse("user-delete", args=[old.pk]),
        {"delete_events": "on", "suppress": "on"},
        follow=True,
    )
    assert response.redirect_chain == [(reverse("conflicts"), 302)]
    assert messages_of(response) == [
        "Deleted u-old and 3 events; future events suppressed for userId u-old, email ada@x.co."
    ]
    assert not Profile.objects.filter(pk=old.pk).exists()
    assert not Event.objects.filter(event="Old Thing").exists()
    assert set(Suppression.objects.values_list("kind", "value")) == {
        ("user_id", "u-old"),
        ("email", "ada@x.co"),
    }
    # Honoured at ingest: answered 200, not stored.
    result = post_ingest("batch", {"batch": [
        {"type": "track", "userId": "u-old", "event": "Ghost"},
        {"type": "track", "userId": "u-new", "event": "Alive"},
    ]})  # fmt: skip
    assert result.status_code == 200 and result.json()["suppressed"] == 1
    assert not Event.objects.filter(event="Ghost").exists()
    assert Event.objects.filter(event="Alive").exists()
    entry = AuditEntry.objects.get(action=AuditAction.DELETE)
    assert entry.data["events_deleted"] == 3


def test_delete_keeping_events_and_refusing_a_merged_away_user(
    staff_client: Client, twins: tuple[Profile, Profile]
) -> None:
    old, new = twins
    staff_client.post(reverse("conflicts-merge-confirm"), merge_form(old, [old, new]))
    refused = staff_client.post(reverse("user-delete", args=[new.pk]), {}, follow=True)
    assert refused.redirect_chain == [(reverse("user-detail", args=[new.pk]), 302)]
    assert (
        "u-new was merged into u-old: delete that user instead (the users merged into it go "
        "with it), or undo the merge first." in messages_of(refused)
    )
    assert Profile.objects.filter(pk=new.pk).exists()

    response = staff_client.post(reverse("user-delete", args=[old.pk]), {}, follow=True)
    assert messages_of(response) == ["Deleted u-old with 1 merged profile(s) (events kept)."]
    assert not Profile.objects.filter(pk__in=[old.pk, new.pk]).exists()
    assert Event.objects.filter(event="Old Thing", profile=None).exists()


def test_refiner_deletion_outcome_is_shown_in_the_audit_log(
    staff_client: Client,
    twins: tuple[Profile, Profile],
    fake_refiner: FakeRefiner,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    destination_create(
        kind="refiner",
        name="Refiner",
        settings_values={"base_url": fake_refiner.base_url},
        secret_values={"api_key": "rk_test"},
    )
    fake_refiner.add_contact(remote_id="u-old", email="ada@x.co")
    old, _ = twins
    assert "No Refiner destination is enabled" not in text_of(
        staff_client.get(reverse("user-delete", args=[old.pk]))
    )
    with django_capture_on_commit_callbacks() as callbacks:
        staff_client.post(reverse("user-delete", args=[old.pk]), {"delete_in_refiner": "on"})
    assert len(callbacks) == 1  # the Refiner deletion, handed to a worker after commit
    entry = AuditEntry.objects.get(action=AuditAction.DELETE)
    pending = text_of(staff_client.get(reverse("audit-detail", args=[entry.pk])))
    assert "the outcome appears here once a worker has done it" in pending
    delete_contacts(entry.pk, entry.data["identities"])  # what the worker's task runs
    assert fake_refiner.contact(id="u-old") is None
    detail = text_of(staff_client.get(reverse("audit-detail", args=[entry.pk])))
    assert "Refiner: deleted contact u-old" in detail
    log = text_of(staff_client.get(reverse("audit-list")))
    assert '<small class="sub">Refiner: deleted contact u-old</small>' in log


# Import ---------------------------------------------------------------------------------------


def upload(client: Client, data: bytes, name: str = "customers.csv") -> Any:
    return client.post(
        reverse("conflicts-import"), {"file": SimpleUploadedFile(name, data, "text/csv")}
    )


def test_stripe_import_previews_then_runs_as_a_job(
    staff_client: Client, staff_member: User
) -> None:
    uploaded = upload(staff_client, STRIPE)
    assert uploaded.status_code == 302
    preview_url = uploaded["Location"]
    assert preview_url.startswith(reverse("conflicts-import-preview") + "?upload=")
    preview = staff_client.get(preview_url)
    page = text_of(preview)
    assert "Stripe customers export recognised" in page
    assert "Billing id ← id · Email ← Email · Name ← Name" in page.replace("<code>", "").replace(
        "</code>", ""
    )
    outcome = preview.context["outcome"]
    assert (outcome.created, outcome.updated, outcome.unchanged) == (2, 0, 0)
    assert outcome.failed == [
        (4, "no email and no userId to find the user by"),
        (5, "billing id 'sub_D4' is not a Stripe (cus_...) or Chargebee customer id"),
    ]
    assert [(line, action) for line, action, _ in outcome.examples] == [
        (2, "new user"),
        (3, "new user"),
    ]
    assert '<strong id="preview-created">2</strong>' in page
    assert "no email and no userId to find the user by" in page
    assert not Profile.objects.exists()  # a preview writes nothing

    token = parse_qs(urlsplit(preview_url).query)["upload"][0]
    started = staff_client.post(
        reverse("conflicts-import-start"),
        {"upload": token, "billing_id": "id", "email": "Email", "name": "Name", "user_id": ""},
    )
    job = Job.objects.get(kind=JobKind.IMPORT)
    assert started["Location"] == reverse("conflicts-job", args=[job.pk])
    assert Upload.objects.count() == 1  # the job's own copy; the staged one is gone
    job_url = started["Location"]
    queued = text_of(staff_client.get(job_url))
    assert "The result appears here when the job is done." in queued
    # The shared progress bar polls this page every second.
    assert f'hx-get="{job_url}" hx-trigger="every 1s"' in queued
    poll = {"HX-Request": "true", "HX-Target": f"job-{job.pk}"}
    waiting = staff_client.get(job_url, headers=poll)
    assert waiting.status_code == 200
    assert "Waiting for a worker to start" in text_of(waiting)

    jobs.run_job(job.pk)  # no worker runs in these tests
    job.refresh_from_db()
    assert job.status == JobStatus.DONE
    done = staff_client.get(job_url, headers=poll)
    assert done.status_code == 286  # htmx stops polling
    assert done["HX-Trigger"] == '{"job-done": {}}'  # and the result refreshes
    assert 'value="100"' in text_of(done)
    result = staff_client.get(job_url, headers={"HX-Request": "true", "HX-Target": "job-result"})
    body = text_of(result)
    assert body.lstrip().startswith('<div id="job-result"')
    assert '<strong id="result-created">2</strong>' in body
    assert '<strong id="result-refused">2</strong>' in body
    assert "billing id 'sub_D4' is not a Stripe" in body
    ada = Profile.objects.get(email="ada@x.co")
    assert (ada.billing_id, ada.name, ada.user_id) == ("cus_A1", "Ada", None)
    entry = AuditEntry.objects.get(action=AuditAction.IMPORT)
    assert entry.actor == staff_member
    assert reverse("audit-detail", args=[entry.pk]) in body
    # The token named a file that is gone now: asking again says so.
    again = staff_client.get(preview_url, follow=True)
    assert messages_of(again) == [
        "That upload has expired or was already imported; upload the file again."
    ]


def test_generic_csv_gets_a_column_step(staff_client: Client, post_ingest: IngestPost) -> None:
    for user, email in (("u1", "one@x.co"), ("u2", "two@x.co")):
        post_ingest("identify", {"userId": user, "traits": {"email": email}})
    data = b"customer,mail,uid\nAzZTZgSs9sXh71Xo,,u1\ncus_two,TWO@x.co,\n"
    preview_url = upload(staff_client, data)["Location"]
    step = staff_client.get(preview_url)
    assert step.context["outcome"] is None
    assert step.context["refused"] == ""  # nothing chosen yet: a question, not an error
    page = text_of(step)
    assert "Choose which column of the file holds each field." in page
    assert '<option value="customer">customer</option>' in page
    assert "Stripe customers export recognised" not in page

    token = parse_qs(urlsplit(preview_url).query)["upload"][0]
    chosen = {"upload": token, "mapped": "1", "email": "mail", "user_id": "uid"}
    missing = staff_client.get(reverse("conflicts-import-preview"), chosen)
    assert "choose the column that holds the billing id" in text_of(missing)

    mapped = staff_client.get(
        reverse("conflicts-import-preview"), {**chosen, "billing_id": "customer"}
    )
    outcome = mapped.context["outcome"]
    assert (outcome.created, outcome.updated, outcome.failed) == (0, 2, [])
    assert [action for _, action, _ in outcome.examples] == [
        "billing id set (u1)",
        "billing id set (u2)",
    ]
    started = staff_client.post(
        reverse("conflicts-import-start"),
        {"upload": token, "billing_id": "customer", "email": "mail", "user_id": "uid"},
    )
    job = Job.objects.get(kind=JobKind.IMPORT)
    assert started["Location"] == reverse("conflicts-job", args=[job.pk])
    jobs.run_job(job.pk)
    assert Profile.objects.get(user_id="u1").billing_id == "AzZTZgSs9sXh71Xo"
    assert Profile.objects.get(user_id="u2").billing_id == "cus_two"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            "id,Email\ncus_1,\xe9@x.co\n".encode("latin-1"),
            "bad.csv: the file is not UTF-8 (byte 0xe9 on line 2, at position 15); save it as "
            "CSV UTF-8 and upload it again.",
        ),
        (b"\n\n", "bad.csv: the first line must name the columns."),
        (
            b"\x89PNG\r\n\x1a\n\x00",
            "bad.csv: the file is not UTF-8 (byte 0x89 on line 1, at position 0); save it as "
            "CSV UTF-8 and upload it again.",
        ),
    ],
)
def test_unreadable_files_are_refused_with_the_reason(
    staff_client: Client, data: bytes, message: str
) -> None:
    response = upload(staff_client, data, name="bad.csv")
    assert response.status_code == 200
    assert response.context["form"].errors == {"file": [message]}
    assert message in text_of(response)
    assert not Upload.objects.exists() and not Job.objects.exists()


def test_a_forged_upload_token_names_no_file(staff_client: Client) -> None:
    preview_url = upload(staff_client, STRIPE)["Location"]
    token = parse_qs(urlsplit(preview_url).query)["upload"][0]
    other = Upload.objects.create(name="someone-else.csv", content=STRIPE)
    forged = token.replace(token.split(":")[0], str(other.pk), 1)
    response = staff_client.get(reverse("conflicts-import-preview"), {"upload": forged})
    assert response.status_code == 302 and response["Location"] == reverse("conflicts-import")
