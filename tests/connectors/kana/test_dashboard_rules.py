"""Kana's mapping rules in the dashboard: login and navigation, what a viewer may do, and
the rules list (order, moves, disable, enable, delete, bounded queries)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from destinations.delivery.services import destination_create
from destinations.models import Delivery, Destination, Event, Job, JobKind, MappingRule, Source
from destinations.sources import source_create
from tests.helpers.ingest import IngestPost, send
from tests.helpers.kana_rules import (
    HX,
    KEY,
    PAGE_QUERY_CEILING,
    page_data_queries,
    rule,
    track,
    urls,
)
from tests.helpers.members import MakeMember
from tests.helpers.pages import squashed, text_of


def listed_rule_ids(response: Any) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr id="rule-(\d+)"', text_of(response))]


def seed_usage(destination: Destination, rule: MappingRule, statuses: list[str]) -> None:
    """Deliveries that ``rule`` gave a feature to, in the given statuses."""
    source = Source.objects.first() or source_create(name="Seeds")
    now = timezone.now()
    for n, status in enumerate(statuses):
        event = Event.objects.create(
            source=source,
            message_id=f"seed-{rule.pk}-{n}",
            type="track",
            user_id=f"s{n}",
            event=rule.event_name or "Seeded",
            timestamp=now,
            received_at=now,
            payload={"type": "track", "userId": f"s{n}", "event": rule.event_name},
        )
        Delivery.objects.create(
            event=event,
            destination=destination,
            status=status,
            received_at=now,
            retry_until=now + timedelta(hours=4),
            mapping_rule=rule,
        )


# --- access and navigation ------------------------------------------------------------------


def test_every_page_requires_login(client: Client, kana: Destination) -> None:
    saved = rule(kana, "Report Exported", "exports")
    job = Job.objects.get(kind=JobKind.REPROCESS)
    pk = kana.pk
    for url in [
        reverse("mapping-rules-index"),
        *urls(kana).values(),
        reverse("mapping-rule-edit", args=[pk, saved.pk]),
        reverse("mapping-rule-job", args=[pk, job.pk]),
        reverse("condition-row"),
    ]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/login/"), url


def test_nav_leads_to_the_rules_of_the_kana_destination(staff_client: Client, db: None) -> None:
    index = reverse("mapping-rules-index")
    empty = staff_client.get(index)
    assert "there is none yet" in squashed(empty)
    # Adding destinations is an admin's job: an operator is told, not offered the button.
    assert reverse("destination-new-kind", args=["kana"]) not in text_of(empty)

    first = destination_create(
        kind="kana", name="Kana EU", settings_values={}, secret_values={"api_key": KEY}
    )
    response = staff_client.get(index)
    assert response.status_code == 302
    assert response["Location"] == reverse("mapping-rules", args=[first.pk])

    destination_create(
        kind="kana", name="Kana US", settings_values={}, secret_values={"api_key": KEY}
    )
    listed = staff_client.get(index)
    assert [d.name for d in listed.context["destinations"]] == ["Kana EU", "Kana US"]
    # The rules pages exist only for Kana destinations.
    refiner = destination_create(
        kind="refiner", name="Refiner", settings_values={}, secret_values={"api_key": "rk"}
    )
    assert staff_client.get(reverse("mapping-rules", args=[refiner.pk])).status_code == 404
    assert staff_client.get(reverse("mapping-unmapped", args=[refiner.pk])).status_code == 404


def test_destination_page_links_rules_unmapped_events_and_filters(
    staff_client: Client, kana: Destination, post_ingest: IngestPost
) -> None:
    send(post_ingest, [track(1), track(2), track(3, "Seat Added")])
    rule(kana, "Seat Added", "seats")
    page = staff_client.get(reverse("destination-delivery", args=[kana.pk]))
    text = squashed(page)
    assert "Mapping rules (1)" in text
    assert "Unmapped events (3)" in text  # the rule's job has not run: still 3
    assert "Event filters (0)" in text
    body = text_of(page)
    assert f'href="{urls(kana)["rules"]}"' in body
    assert f'href="{urls(kana)["unmapped"]}"' in body

    refiner = destination_create(
        kind="refiner", name="Refiner", settings_values={}, secret_values={"api_key": "rk"}
    )
    other = squashed(staff_client.get(reverse("destination-delivery", args=[refiner.pk])))
    assert "Event filters (0)" in other
    assert "Mapping rules (" not in other and "Unmapped events" not in other


def test_a_viewer_reads_rules_unmapped_events_and_filters_but_changes_nothing(
    client: Client, make_member: MakeMember, kana: Destination, post_ingest: IngestPost
) -> None:
    send(post_ingest, [track(1)])
    saved = rule(kana, "Seat Added", "seats")
    client.force_login(make_member(username="vi", role="viewer"))
    rules_page = client.get(urls(kana)["rules"])
    assert rules_page.status_code == 200
    assert listed_rule_ids(rules_page) == [saved.pk]
    body = text_of(rules_page)
    assert "New rule" not in body and "Move rule" not in body and "Delete rule" not in body
    unmapped_page = client.get(urls(kana)["unmapped"])
    assert unmapped_page.status_code == 200
    assert "Create a rule from this" not in text_of(unmapped_page)
    filters_page = client.get(urls(kana)["filters"])
    assert filters_page.status_code == 200
    assert "Add a filter" not in text_of(filters_page)
    refused = [
        client.get(urls(kana)["new"]),
        client.post(reverse("mapping-rule-move", args=[kana.pk, saved.pk]), {"direction": "up"}),
        client.post(reverse("mapping-rule-delete", args=[kana.pk, saved.pk])),
        client.post(urls(kana)["filters"], {"event_name": "X"}),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403, 403]
    assert MappingRule.objects.filter(pk=saved.pk).exists()


# --- the rules list -------------------------------------------------------------------------


def test_rules_are_listed_in_order_with_conditions_feature_and_counts(
    staff_client: Client, kana: Destination
) -> None:
    wide = rule(kana, "Report Exported", "exports")
    narrow = rule(
        kana,
        "",
        "api_calls",
        conditions=[{"path": "properties.object.name", "op": "equals", "value": "invoice"}],
    )
    off = rule(kana, "Seat Added", "seats", enabled=False)
    seed_usage(kana, wide, ["delivered", "delivered", "pending", "retrying", "failed"])
    seed_usage(kana, narrow, ["delivered"])

    response = staff_client.get(urls(kana)["rules"])
    assert response.status_code == 200
    rules = response.context["rules"]
    assert [r.pk for r in rules] == [wide.pk, narrow.pk, off.pk]
    assert [(r.delivered, r.pending, r.failed) for r in rules] == [(2, 2, 1), (1, 0, 0), (0, 0, 0)]
    text = squashed(response)
    assert "event name is Report Exported" in text
    assert "any event name and properties.object.name equals 'invoice'" in text
    assert "2 delivered 2 pending 1 failed" in text
    rows = re.findall(r'<tr id="rule-(\d+)" class="rule( rule-disabled)?"', text_of(response))
    assert rows == [(str(wide.pk), ""), (str(narrow.pk), ""), (str(off.pk), " rule-disabled")]


def test_move_changes_the_order_in_place_and_without_javascript(
    staff_client: Client, kana: Destination
) -> None:
    a, b, c = (rule(kana, name, "exports") for name in ("A", "B", "C"))
    move = reverse("mapping-rule-move", args=[kana.pk, c.pk])

    fragment = staff_client.post(move, {"direction": "up"}, headers=HX)
    assert fragment.status_code == 200
    assert text_of(fragment).lstrip().startswith('<div id="rule-list">')
    assert listed_rule_ids(fragment) == [a.pk, c.pk, b.pk]

    full = staff_client.post(
        reverse("mapping-rule-move", args=[kana.pk, a.pk]), {"direction": "down"}
    )
    assert full.status_code == 302 and full["Location"] == urls(kana)["rules"]
    ordered = MappingRule.objects.filter(destination=kana).order_by("position")
    assert list(ordered.values_list("event_name", flat=True)) == ["C", "A", "B"]
    # The first rule cannot go further up.
    staff_client.post(reverse("mapping-rule-move", args=[kana.pk, c.pk]), {"direction": "up"})
    assert list(ordered.values_list("event_name", flat=True)) == ["C", "A", "B"]


def test_disable_enable_and_delete(staff_client: Client, kana: Destination) -> None:
    saved = rule(kana, "Report Exported", "exports")
    toggle = reverse("mapping-rule-toggle", args=[kana.pk, saved.pk])
    jobs_before = Job.objects.count()

    disabled = staff_client.post(toggle, follow=True)
    saved.refresh_from_db()
    assert saved.enabled is False
    assert Job.objects.count() == jobs_before  # disabling applies nothing
    assert "Rule disabled: new events no longer match it." in squashed(disabled)

    enabled = staff_client.post(toggle)
    saved.refresh_from_db()
    job = Job.objects.latest("id")
    assert saved.enabled is True
    assert (job.kind, job.params) == (JobKind.REPROCESS, {"rule_id": saved.pk})
    assert enabled["Location"] == reverse("mapping-rule-job", args=[kana.pk, job.pk])

    deleted = staff_client.post(
        reverse("mapping-rule-delete", args=[kana.pk, saved.pk]), follow=True
    )
    assert not MappingRule.objects.filter(pk=saved.pk).exists()
    assert "Rule for exports deleted. Usage it recorded stays recorded in Kana." in squashed(
        deleted
    )
    assert "No mapping rules yet." in squashed(deleted)


def test_rules_list_query_count_does_not_grow_with_rules(
    staff_client: Client, kana: Destination
) -> None:
    for n in range(15):
        saved = rule(
            kana,
            f"Event {n}",
            "exports",
            conditions=[{"path": "properties.n", "op": "gt", "value": str(n)}],
        )
        seed_usage(kana, saved, ["delivered", "failed", "pending"])
    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get(urls(kana)["rules"])
    # The destination, the rules with their counts, the unmapped total: whatever the number
    # of rules. The rest is the page frame's (session, user, role...), within a ceiling.
    assert len(page_data_queries(queries)) == 3, page_data_queries(queries)
    assert len(queries) <= PAGE_QUERY_CEILING
    assert len(response.context["rules"]) == 15
    assert all((r.delivered, r.pending, r.failed) == (1, 1, 1) for r in response.context["rules"])
