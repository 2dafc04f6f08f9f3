"""A rule's Preview over stored unmapped events, and saving a rule: the reprocessing job
applies it to stored events (in-process here) with its progress."""

from __future__ import annotations

import json
import re

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from destinations import jobs
from destinations.delivery import engine
from destinations.delivery.services import destination_create
from destinations.models import Delivery, Destination, Job, JobKind, JobStatus, MappingRule
from destinations.standins.kana import FakeKana
from tests.helpers.kana_rules import HX, KEY, rule, rule_form, urls
from tests.helpers.pages import squashed, text_of

PREVIEW_CASES: list[tuple[str, list[tuple[str, str, str]], list[str]]] = [
    ("Report Exported", [], ["u1", "u2", "u3", "u5"]),
    ("", [("object.name", "equals", "invoice")], ["u1", "u3"]),
    ("Report Exported", [("object.name", "not_equals", "invoice")], ["u2", "u5"]),
    ("", [("object.name", "contains", "voice")], ["u1", "u3", "u5"]),
    ("", [("tags", "contains", "monthly")], ["u1"]),
    ("", [("format", "exists", "")], ["u3"]),
    ("", [("object.pages", "gt", "10")], ["u2", "u3"]),
    ("", [("object.pages", "lt", "10")], ["u1"]),
    ("", [("seats", "equals", "2.0")], ["u4"]),  # numbers compare as numbers
    ("", [("context.app.version", "equals", "2.1")], ["u5"]),  # a top-level path
    (
        "Report Exported",
        [("object.name", "equals", "invoice"), ("object.pages", "gt", "10")],
        ["u3"],  # conditions are ANDed
    ),
    ("Nothing Like This", [], []),
]


@pytest.mark.parametrize(("event_name", "rows", "users"), PREVIEW_CASES)
def test_preview_counts_stored_unmapped_events_with_examples(
    staff_client: Client,
    kana: Destination,
    stored_events: None,
    event_name: str,
    rows: list[tuple[str, str, str]],
    users: list[str],
) -> None:
    data = rule_form(event_name, "", rows=rows)  # no feature needed to preview
    response = staff_client.post(urls(kana)["preview"], data, headers=HX)
    assert response.status_code == 200
    assert text_of(response).lstrip().startswith('<section id="rule-preview"')
    body = text_of(response)
    count = re.search(r'id="preview-count">(\d+)<', body)
    assert count, body
    assert count[1] == str(len(users))
    # Up to five examples, oldest first: the user ids are the table's second column.
    examples = re.findall(r"<tr><td>[^<]*</td><td>([^<]*)</td>", body)
    assert examples == users
    noun = "event matches" if len(users) == 1 else "events match"
    assert f"{len(users)} stored unmapped {noun} this rule" in squashed(response)
    assert not MappingRule.objects.exists()


def test_preview_examples_show_event_user_and_properties(
    staff_client: Client, kana: Destination, stored_events: None
) -> None:
    response = staff_client.post(
        urls(kana)["preview"], rule_form("", "", rows=[("object.name", "equals", "invoice")])
    )
    # Without JavaScript the editor comes back whole, with the preview and what was typed.
    assert "<html" in text_of(response)
    assert response.context["form"].editing_rows[0].path == "object.name"
    text = squashed(response)
    assert (
        "2 stored unmapped events match this rule: saving records usage for each of them." in text
    )
    assert (
        'Report Exported u1 {"object": {"name": "invoice", "pages": 3}, "tags": ["monthly", "b"]}'
        in text
    )
    assert (
        'Report Exported u3 {"format": "pdf", "object": {"name": "invoice", "pages": 20}}' in text
    )

    invalid = staff_client.post(
        urls(kana)["preview"], rule_form("", "", rows=[("n", "lt", "x")]), headers=HX
    )
    assert "Cannot preview: condition 1: is less than needs a number, got 'x'." in squashed(invalid)


# --- saving applies the rule: the reprocessing job's progress -------------------------------


def test_saving_a_rule_applies_it_to_stored_events_with_progress(
    staff_client: Client,
    kana: Destination,
    fake_kana: FakeKana,
    stored_events: None,
) -> None:
    for n in range(1, 6):
        fake_kana.add_user(f"u{n}")
    data = rule_form("Report Exported", "exports", rows=[("object.name", "equals", "invoice")])
    saved = staff_client.post(urls(kana)["new"], data)
    new_rule = MappingRule.objects.get()
    job = Job.objects.get(kind=JobKind.REPROCESS)
    progress_url = reverse("mapping-rule-job", args=[kana.pk, job.pk])
    assert saved["Location"] == progress_url
    # The events the scan looks at: on PostgreSQL, string equalities already narrow it in SQL.
    scanned = 4 if connection.vendor == "sqlite" else 2
    assert (job.status, job.total, job.params) == ("queued", scanned, {"rule_id": new_rule.pk})

    page = staff_client.get(progress_url)
    text = squashed(page)
    assert f"Rule saved: applying it to {scanned} stored unmapped events." in text
    assert "event name is Report Exported and properties.object.name equals 'invoice'" in text
    assert "Waiting for a worker to start…" in text
    assert f'hx-get="{progress_url}" hx-trigger="every 1s"' in text_of(page)

    jobs.run_job(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.DONE
    assert (job.counters["scanned"], job.counters["matched"]) == (scanned, 2)

    # Scanned and matched; the usage is queued and not yet sent: the bar keeps polling.
    sending = staff_client.get(progress_url, headers=HX)
    assert sending.status_code == 200
    assert re.search(rf'id="job-scanned">{scanned}<', text_of(sending))
    assert re.search(r'id="job-matched">2<', text_of(sending))
    assert re.search(r'id="job-delivered" class="">0<', text_of(sending))
    assert "Scan done. Sending the usage of 2 matched events to Kana…" in squashed(sending)
    assert 'hx-trigger="every 1s"' in text_of(sending)

    queued = list(Delivery.objects.filter(mapping_rule=new_rule).values_list("id", flat=True))
    stats = engine.deliver(queued)
    assert stats.outcomes["delivered"] == 2
    assert fake_kana.usage("u1", "exports") == 1
    assert fake_kana.usage("u3", "exports") == 1
    assert fake_kana.usage("u5", "exports") == 0

    done = staff_client.get(progress_url, headers=HX)
    assert done.status_code == 286  # htmx stops polling
    assert json.loads(done["HX-Trigger"]) == {"job-done": {}}
    assert re.search(r'id="job-delivered" class="ok">2<', text_of(done))
    summary = (
        f"Done: 2 of {scanned} unmapped events matched; 2 usage events delivered by this rule."
    )
    assert summary in squashed(done)
    assert "hx-trigger" not in text_of(done)
    listed = staff_client.get(urls(kana)["rules"]).context["rules"]
    assert [(r.delivered, r.pending, r.failed) for r in listed] == [(2, 0, 0)]


def test_progress_stops_following_when_the_destination_is_disabled(
    staff_client: Client, kana: Destination, stored_events: None
) -> None:
    staff_client.post(urls(kana)["new"], rule_form("Report Exported", "exports"))
    job = Job.objects.get(kind=JobKind.REPROCESS)
    jobs.run_job(job.pk)
    Destination.objects.filter(pk=kana.pk).update(enabled=False)
    response = staff_client.get(reverse("mapping-rule-job", args=[kana.pk, job.pk]), headers=HX)
    assert response.status_code == 286
    assert "Scan done. Kana is disabled: the usage waits until it is enabled again." in (
        squashed(response)
    )
    assert re.search(r'id="job-in-flight" class="warn">4<', text_of(response))


def test_a_job_of_another_destination_is_not_shown(
    staff_client: Client, kana: Destination, fake_kana: FakeKana
) -> None:
    other = destination_create(
        kind="kana", name="Kana 2", settings_values={}, secret_values={"api_key": KEY}
    )
    rule(other, "E", "exports")
    job = Job.objects.get(kind=JobKind.REPROCESS)
    assert staff_client.get(reverse("mapping-rule-job", args=[kana.pk, job.pk])).status_code == (
        404
    )
    assert staff_client.get(reverse("mapping-rule-job", args=[other.pk, job.pk])).status_code == (
        200
    )
