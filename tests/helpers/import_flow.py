"""The dashboard's billing-customer import as an operator goes through it: upload, preview with
the guessed (or given) columns, Import, and the job the worker would run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from destinations import jobs
from destinations.models import Job, JobKind, JobStatus
from destinations.people import imports

MAPPED_FIELDS = ("billing_id", "email", "name", "user_id")


@dataclass
class Imported:
    refusal: str = ""  # why the whole file was refused, as the page says it
    preview: imports.Outcome | None = None
    job: Job | None = None
    refused: dict[int, str] = field(default_factory=dict)  # line -> reason, from the job

    @property
    def counters(self) -> dict[str, Any]:
        assert self.job is not None
        return self.job.counters


def import_file(
    client: Client,
    data: bytes,
    *,
    name: str = "customers.csv",
    mapping: Mapping[str, str] | None = None,
) -> Imported:
    """Upload ``data``, preview it and import it; no step may answer with a server error."""
    uploaded = client.post(
        reverse("conflicts-import"), {"file": SimpleUploadedFile(name, data, "text/csv")}
    )
    assert uploaded.status_code < 500
    if uploaded.status_code == 200:
        errors = uploaded.context["form"].errors["file"]
        assert len(errors) == 1, errors
        return Imported(refusal=errors[0])
    assert uploaded.status_code == 302, uploaded.status_code
    token = parse_qs(urlsplit(uploaded["Location"]).query)["upload"][0]
    query = {"upload": token, "mapped": "1", **mapping} if mapping else {"upload": token}
    preview = client.get(reverse("conflicts-import-preview"), query)
    assert preview.status_code == 200, preview.status_code
    outcome = preview.context["outcome"]
    if outcome is None:
        assert preview.context["refused"], "a preview without an outcome says why"
        return Imported(refusal=preview.context["refused"])
    used = dict(mapping) if mapping else imports.guess_mapping(preview.context["columns"])
    started = client.post(
        reverse("conflicts-import-start"),
        {"upload": token, **{f: used.get(f, "") for f in MAPPED_FIELDS}},
    )
    assert started.status_code == 302, started.status_code
    job = Job.objects.filter(kind=JobKind.IMPORT).latest("pk")
    assert started["Location"] == reverse("conflicts-job", args=[job.pk])
    jobs.run_job(job.pk)  # what the worker's task runs
    job.refresh_from_db()
    assert job.status == JobStatus.DONE, job.error
    page = client.get(started["Location"])
    assert page.status_code == 200
    refused = {error["line"]: error["reason"] for error in job.counters["errors"]}
    return Imported(preview=outcome, job=job, refused=refused)
