"""Billing-customer CSV import, the conflict lists and their CSV export, and bulk merge."""

from __future__ import annotations

import csv
import io

import pytest

from destinations import jobs
from destinations.models import AuditAction, AuditEntry, Job, JobStatus, Profile, ProfileOrigin
from destinations.people import imports
from destinations.people.conflicts import (
    conflict_counts,
    duplicate_email_groups,
    export_csv,
    without_billing_id,
)
from destinations.people.jobs import bulk_merge_start, import_start
from tests.helpers.conflicts import NOT_A_CUSTOMER, make_conflicts
from tests.helpers.ingest import IngestPost

pytestmark = pytest.mark.django_db

STRIPE = (
    b"id,Description,Email,Name,Created (UTC)\n"
    b"cus_A1,,ada@x.co,Ada,2024-01-01\n"
    b"cus_B2,,grace@x.co,Grace Hopper,2024-01-02\n"
    b"cus_C3,,,No Email,2024-01-03\n"
    b"sub_D4,,d@x.co,Wrong Object,2024-01-04\n"
    b"cus_E5,,not-an-email,Bad Email,2024-01-05\n"
    b"cus_F6,,f@x.co,Too,Many,Fields\n"
)


def run_import(data: bytes, mapping: dict[str, str] | None = None) -> Job:
    mapping = mapping or imports.guess_mapping(imports.header(data))
    job = import_start(name="customers.csv", data=data, mapping=mapping, user=None)
    jobs.run_job(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.DONE, job.error
    return job


def test_stripe_export_is_recognised_and_bad_rows_are_reported() -> None:
    data = STRIPE
    assert imports.guess_mapping(imports.header(data)) == {
        "billing_id": "id",
        "email": "Email",
        "name": "Name",
    }
    preview = imports.preview(data, imports.guess_mapping(imports.header(data)))
    assert (preview.created, preview.updated) == (2, 0)
    assert not Profile.objects.exists()  # a preview writes nothing
    job = run_import(data)
    assert job.counters["created"] == 2
    assert job.counters["errors"] == [
        {"line": 4, "reason": "no email and no userId to find the user by"},
        {"line": 5, "reason": f"billing id 'sub_D4' {NOT_A_CUSTOMER}"},
        {"line": 6, "reason": "'not-an-email' is not an email address"},
        {"line": 7, "reason": "has 6 fields; the header has 5"},
    ]  # fmt: skip
    ada = Profile.objects.get(email="ada@x.co")
    assert (ada.billing_id, ada.name, ada.user_id, ada.origin) == (
        "cus_A1",
        "Ada",
        None,
        ProfileOrigin.IMPORT,
    )
    entry = AuditEntry.objects.get(action=AuditAction.IMPORT)
    assert entry.summary == "Imported customers.csv: 2 new, 0 updated, 0 unchanged, 4 refused"


def test_reimport_changes_nothing_and_identify_claims_the_imported_user(
    post_ingest: IngestPost,
) -> None:
    run_import(STRIPE)
    again = run_import(STRIPE)
    assert (again.counters["created"], again.counters["unchanged"]) == (0, 2)
    response = post_ingest("identify", {"userId": "u-ada", "traits": {"email": "Ada@X.co"}})
    assert response.status_code == 200
    ada = Profile.objects.get(user_id="u-ada")
    assert ada.billing_id == "cus_A1"
    assert Profile.objects.count() == 2


def test_generic_csv_with_a_mapping_fills_billing_ids_by_user_id_or_email(
    post_ingest: IngestPost,
) -> None:
    for user, email in (("u1", "one@x.co"), ("u2", "two@x.co")):
        post_ingest("identify", {"userId": user, "traits": {"email": email}})
    data = b"customer,mail,uid\nAzZTZgSs9sXh71Xo,,u1\ncus_two,TWO@x.co,\n"
    with pytest.raises(imports.ImportRefused, match="no column named 'Billing'"):
        import_start(
            name="x.csv", data=data, mapping={"billing_id": "Billing", "email": "mail"}, user=None
        )
    job = run_import(data, {"billing_id": "customer", "email": "mail", "user_id": "uid"})
    assert job.counters["updated"] == 2
    assert Profile.objects.get(user_id="u1").billing_id == "AzZTZgSs9sXh71Xo"
    assert Profile.objects.get(user_id="u2").billing_id == "cus_two"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        ("id,Email\ncus_1,\xe9@x.co\n".encode("latin-1"), "the file is not UTF-8 (byte 0xe9"),
        (b"Email,Name\na@x.co,A\n", "choose the column that holds the billing id"),
    ],
)
def test_unreadable_files_are_refused_whole(data: bytes, message: str) -> None:
    with pytest.raises(imports.ImportRefused, match=message.replace("(", r"\(")):
        mapping = imports.guess_mapping(imports.header(data))
        import_start(name="bad.csv", data=data, mapping=mapping, user=None)
    assert not Job.objects.exists()


def test_shared_email_rows_are_reported_not_guessed(post_ingest: IngestPost) -> None:
    for user in ("u1", "u2"):
        post_ingest("identify", {"userId": user, "traits": {"email": "same@x.co"}})
    job = run_import(b"id,Email\ncus_1,same@x.co\n")
    assert job.counters["errors"] == [
        {"line": 2, "reason": "2 users share same@x.co: merge them first"}
    ]


def test_conflict_lists_and_export(post_ingest: IngestPost) -> None:
    make_conflicts(post_ingest)
    assert list(duplicate_email_groups()) == [
        {"email": "dup@x.co", "users": 3},
        {"email": "pair@x.co", "users": 2},
    ]
    assert list(duplicate_email_groups("PAIR")) == [{"email": "pair@x.co", "users": 2}]
    assert sorted(str(p.user_id) for p in without_billing_id()) == ["u0", "u2", "u5"]
    assert conflict_counts() == {"duplicate_emails": 2, "without_billing_id": 3}
    rows = list(csv.reader(io.StringIO("".join(export_csv()))))
    assert rows[0] == ["profile_id", "user_id", "email", "name", "billing_id", "conflict"]
    by_user = {row[1]: row[5] for row in rows[1:]}
    assert by_user == {
        "u0": "no billing id; shared email",
        "u2": "no billing id; shared email",
        "u5": "no billing id",
        "u1": "shared email",
        "u3": "shared email",
        "u4": "shared email",
    }


def test_bulk_merge_merges_each_group_into_its_oldest_user(post_ingest: IngestPost) -> None:
    make_conflicts(post_ingest)
    job = bulk_merge_start(user=None)
    assert job.total == 2
    jobs.run_job(job.pk)
    job.refresh_from_db()
    assert job.counters == {"merged": 2, "refused": 0, "errors": []}
    assert list(duplicate_email_groups()) == []
    survivors = Profile.objects.filter(merged_into__isnull=True).exclude(email="alone@x.co")
    assert sorted(str(p.user_id) for p in survivors) == ["u0", "u3"]
    assert Profile.objects.get(user_id="u0").billing_id == "cus_1"  # taken from a merged user
    assert AuditEntry.objects.filter(action=AuditAction.MERGE).count() == 2
    summary = AuditEntry.objects.get(action=AuditAction.BULK_MERGE).summary
    assert summary == "Merged 2 duplicate-email groups into their oldest user"
