"""Kana in the dashboard: mapping rules (list, order, editor with Kana's feature list and
Preview, applying a saved rule with its progress), unmapped events, and event filters.

Kana is the fake GraphQL server on loopback; events arrive through the real ingest endpoint.
The reprocessing job and deliveries run in-process here (no worker): the browser test covers
the same flow with a real Celery worker.
"""

from __future__ import annotations

import html
import json
import re
import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from dashboard.forms_mapping import full_path, shown_path
from dashboard.selectors.mapping import UNMAPPED_NAMES_SHOWN
from destinations.connectors.kana import UNMAPPED
from destinations.delivery import engine, jobs
from destinations.delivery.services import destination_create
from destinations.mapping.services import rule_delete, rule_save
from destinations.models import (
    Delivery,
    Destination,
    Event,
    Job,
    JobKind,
    JobStatus,
    MappingRule,
    Source,
)
from destinations.sources import source_create
from destinations.standins.kana import FakeKana, serve_fake_kana

KEY = "prv_test"
HX = {"HX-Request": "true"}
# Every dashboard page also reads the session, the user and the user's role.
PAGE_QUERY_CEILING = 10  # the frame: session, user, role, demo banner, conflict counts


# --- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture
def fake_kana() -> Iterator[FakeKana]:
    for kana in serve_fake_kana(api_keys={KEY}):
        kana.add_feature("exports", "Exports")
        kana.add_feature("seats", "Seats")
        kana.add_feature("api_calls", "API calls")
        yield kana


@pytest.fixture
def kana(db: None, fake_kana: FakeKana) -> Destination:
    return destination_create(
        kind="kana",
        name="Kana",
        settings_values={"api_url": fake_kana.base_url},
        secret_values={"api_key": KEY},
    )


@pytest.fixture
def staff_client(client: Client, make_member: Any) -> Client:
    """Signed in as an operator: the role that edits mapping rules and filters."""
    client.force_login(make_member(role="operator"))
    return client


def closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def text_of(response: Any) -> str:
    return html.unescape(response.content.decode())


def squashed(response: Any) -> str:
    """The page's text with tags removed and whitespace collapsed, as a reader sees it."""
    return " ".join(re.sub(r"<[^>]+>", " ", text_of(response)).split())


def page_data_queries(queries: CaptureQueriesContext) -> list[str]:
    """The queries a page makes for destinations, rules and deliveries."""
    tables = ('"destinations_destination"', '"destinations_mappingrule"', '"destinations_delivery"')
    return [q["sql"] for q in queries.captured_queries if any(t in q["sql"] for t in tables)]


def listed_rule_ids(response: Any) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr id="rule-(\d+)"', text_of(response))]


def send(post_ingest: Any, items: list[dict[str, Any]]) -> None:
    response = post_ingest("batch", {"batch": items})
    assert response.status_code == 200, response.content
    assert response.json()["failed"] == []


def track(n: int, event: str = "Report Exported", **properties: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": f"u{n}",
        "messageId": f"m{n}-{event}",
        "event": event,
        "properties": properties,
    }


def rule(destination: Destination, event_name: str, feature: str, **extra: Any) -> MappingRule:
    saved, _ = rule_save(
        destination=destination,
        event_name=event_name,
        conditions=extra.pop("conditions", []),
        feature_id=feature,
        **extra,
    )
    return saved


def rule_form(event_name: str = "", feature: str = "", **more: Any) -> dict[str, Any]:
    """An editor POST: ``rows`` is a list of (path as typed, operator, value)."""
    rows = more.pop("rows", [])
    return {
        "event_name": event_name,
        "feature_id": feature,
        "enabled": "on",
        "path": [r[0] for r in rows],
        "op": [r[1] for r in rows],
        "value": [r[2] for r in rows],
        **more,
    }


def urls(destination: Destination) -> dict[str, str]:
    pk = destination.pk
    return {
        "rules": reverse("mapping-rules", args=[pk]),
        "new": reverse("mapping-rule-new", args=[pk]),
        "preview": reverse("mapping-rule-preview", args=[pk]),
        "unmapped": reverse("mapping-unmapped", args=[pk]),
        "filters": reverse("destination-filters", args=[pk]),
        "remove_filter": reverse("destination-filter-remove", args=[pk]),
    }


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
    staff_client: Client, kana: Destination, post_ingest: Any
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
    client: Client, make_member: Any, kana: Destination, post_ingest: Any
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


# --- the editor -----------------------------------------------------------------------------


def test_feature_picker_lists_kanas_features(staff_client: Client, kana: Destination) -> None:
    response = staff_client.get(urls(kana)["new"])
    body = text_of(response)
    options = re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', body)
    feature_options = [o for o in options if o[0] in {"", "exports", "seats", "api_calls"}]
    assert feature_options == [
        ("", "Choose a Kana feature…"),
        ("api_calls", "API calls (api_calls)"),
        ("exports", "Exports (exports)"),
        ("seats", "Seats (seats)"),
    ]
    assert '<select name="feature_id"' in body
    assert "could not be reached" not in body


def test_feature_falls_back_to_free_text_when_kana_is_unreachable(
    staff_client: Client, db: None, post_ingest: Any
) -> None:
    port = closed_port()
    offline = destination_create(
        kind="kana",
        name="Kana offline",
        settings_values={"api_url": f"http://127.0.0.1:{port}/graphql"},
        secret_values={"api_key": KEY},
    )
    response = staff_client.get(reverse("mapping-rule-new", args=[offline.pk]))
    text = squashed(response)
    assert (
        f"Kana could not be reached: Could not reach http://127.0.0.1:{port}/graphql: "
        f"connection refused by 127.0.0.1:{port} (nothing is listening there) — type the "
        "feature id" in text
    )
    assert re.search(
        r'<input type="text" name="feature_id"[^>]*id="id_feature_id"', text_of(response)
    )

    saved = staff_client.post(
        reverse("mapping-rule-new", args=[offline.pk]),
        rule_form("Report Exported", "typed_feature"),
    )
    assert saved.status_code == 302
    assert MappingRule.objects.get(destination=offline).feature_id == "typed_feature"


def test_feature_is_typed_when_kana_lists_no_features(staff_client: Client, db: None) -> None:
    for empty in serve_fake_kana(api_keys={KEY}):
        bare = destination_create(
            kind="kana",
            name="Kana without features",
            settings_values={"api_url": empty.base_url},
            secret_values={"api_key": KEY},
        )
        response = staff_client.get(reverse("mapping-rule-new", args=[bare.pk]))
        assert "Kana lists no features yet: create the feature in Kana, or type its id" in (
            squashed(response)
        )
        assert re.search(r'<input type="text" name="feature_id"', text_of(response))


def test_editor_shows_why_a_rule_is_refused_and_saves_nothing(
    staff_client: Client, kana: Destination
) -> None:
    url = urls(kana)["new"]
    cases = [
        (rule_form("Report Exported", ""), "Choose the Kana feature this rule records usage of."),
        (
            rule_form("", "exports"),
            "A rule needs an event name or at least one property condition.",
        ),
        (
            rule_form("", "exports", rows=[("plan", "equals", "pro"), ("seats", "gt", "many")]),
            "Condition 2: is greater than needs a number, got 'many'.",
        ),
        (
            rule_form("E", "exports", rows=[("object..name", "equals", "x")]),
            "Condition 1: path must be dotted names like properties.plan, got "
            "'properties.object..name'.",
        ),
    ]
    for data, message in cases:
        response = staff_client.post(url, data)
        assert response.status_code == 200
        assert message in squashed(response), message
    assert not MappingRule.objects.exists()
    # The offending row is marked, and what was typed is kept.
    response = staff_client.post(url, cases[2][0])
    rows = response.context["form"].editing_rows
    assert [(r.path, r.op, r.value, r.invalid) for r in rows[:2]] == [
        ("plan", "equals", "pro", False),
        ("seats", "gt", "many", True),
    ]
    assert 'class="condition-row invalid"' in text_of(response)


def test_condition_rows_are_added_and_removed_with_and_without_javascript(
    staff_client: Client, kana: Destination
) -> None:
    fragment = staff_client.get(reverse("condition-row"), headers=HX)
    body = text_of(fragment).strip()
    assert body.startswith('<div class="condition-row">')
    assert 'name="path" value=""' in body
    assert re.findall(r'<option value="(\w+)"', body) == [
        "equals",
        "not_equals",
        "contains",
        "exists",
        "gt",
        "lt",
    ]

    # Without JavaScript "Add condition" and "Remove" submit the form; nothing is saved.
    typed = rule_form("E", "exports", rows=[("a", "equals", "1"), ("b", "exists", "")])
    added = staff_client.post(urls(kana)["new"], {**typed, "add_condition": "1"})
    rows = added.context["form"].editing_rows
    assert [(r.path, r.op) for r in rows] == [("a", "equals"), ("b", "exists"), ("", "equals")]
    removed = staff_client.post(urls(kana)["new"], {**typed, "remove_condition": "1"})
    rows = removed.context["form"].editing_rows
    assert [(r.path, r.op) for r in rows] == [("b", "exists"), ("", "equals")]
    assert not MappingRule.objects.exists()


def test_paths_are_inside_properties_unless_they_name_another_top_level_object() -> None:
    assert full_path("object.name") == "properties.object.name"
    assert full_path(" plan ") == "properties.plan"
    assert full_path("context.page.path") == "context.page.path"
    assert full_path("traits.email") == "traits.email"
    assert full_path("properties.plan") == "properties.plan"
    assert full_path("") == ""
    for path in ["object.name", "context.page.path", "traits.email", "properties.context.x"]:
        assert full_path(shown_path(full_path(path))) == full_path(path)
    assert shown_path("properties.context.x") == "properties.context.x"
    assert shown_path("properties.object.name") == "object.name"


@pytest.fixture
def stored_events(post_ingest: Any, kana: Destination) -> None:
    """Five unmapped track events with nested properties, and one Kana has no use for."""
    invoice = {"name": "invoice", "pages": 3}
    send(
        post_ingest,
        [
            track(1, object=invoice, tags=["monthly", "b"]),
            track(2, object={"name": "memo", "pages": 12}),
            track(3, object={"name": "invoice", "pages": 20}, format="pdf"),
            track(4, "Seat Added", seats=2),
            {
                **track(5, object={"name": "Invoice archive"}),
                "context": {"app": {"version": "2.1"}},
            },
            {"type": "page", "userId": "u1", "messageId": "p1", "name": "Home"},
        ],
    )
    assert Delivery.objects.filter(reason=UNMAPPED).count() == 5


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
    assert re.search(r'id="preview-count">(\d+)<', body)[1] == str(len(users))  # type: ignore[index]
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


def test_a_new_rule_from_an_unmapped_event_name_is_prefilled(
    staff_client: Client, kana: Destination, stored_events: None
) -> None:
    response = staff_client.get(urls(kana)["new"] + "?event=Seat+Added")
    body = text_of(response)
    assert re.search(r'<input type="text" name="event_name" value="Seat Added"', body)
    assert 'list="unmapped-event-names"' in body
    names = re.findall(r'<option value="([^"]+)"></option>', body)
    assert sorted(names) == ["Report Exported", "Seat Added"]


def test_editing_a_rule_shows_its_conditions_as_typed_and_saves_changes(
    staff_client: Client, kana: Destination
) -> None:
    saved = rule(
        kana,
        "Report Exported",
        "exports",
        conditions=[
            {"path": "properties.object.name", "op": "equals", "value": "invoice"},
            {"path": "context.app.version", "op": "exists"},
        ],
    )
    url = reverse("mapping-rule-edit", args=[kana.pk, saved.pk])
    form = staff_client.get(url).context["form"]
    assert [(r.path, r.op, r.value) for r in form.editing_rows] == [
        ("object.name", "equals", "invoice"),
        ("context.app.version", "exists", ""),
        ("", "equals", ""),
    ]
    response = staff_client.post(
        url, rule_form("Report Exported", "seats", rows=[("object.name", "contains", "inv")])
    )
    saved.refresh_from_db()
    assert saved.feature_id == "seats"
    assert saved.conditions == [
        {"path": "properties.object.name", "op": "contains", "value": "inv"}
    ]
    job = Job.objects.filter(kind=JobKind.REPROCESS).latest("id")
    assert response["Location"] == reverse("mapping-rule-job", args=[kana.pk, job.pk])


def test_a_feature_gone_from_kana_stays_selectable_and_a_disabled_rule_applies_nothing(
    staff_client: Client, kana: Destination, stored_events: None
) -> None:
    saved = rule(kana, "Seat Added", "retired_feature")
    jobs_before = Job.objects.count()
    url = reverse("mapping-rule-edit", args=[kana.pk, saved.pk])
    body = text_of(staff_client.get(url))
    assert re.search(
        r'<option value="retired_feature" selected>retired_feature \(not in Kana\'s list\)',
        body,
    )
    # Preview without JavaScript while editing: the editor comes back still editing this rule.
    previewed = staff_client.post(
        urls(kana)["preview"], {**rule_form("Seat Added", "retired_feature"), "rule": saved.pk}
    )
    assert previewed.context["action"] == url
    assert "1 stored unmapped event matches this rule" in squashed(previewed)

    data = rule_form("Seat Added", "seats")
    del data["enabled"]  # unticked
    response = staff_client.post(url, data, follow=True)
    saved.refresh_from_db()
    assert (saved.feature_id, saved.enabled) == ("seats", False)
    assert Job.objects.count() == jobs_before
    assert "Rule saved, disabled: it matches nothing until enabled." in squashed(response)


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


# --- unmapped events ------------------------------------------------------------------------


def test_unmapped_events_are_grouped_by_name_newest_first(
    staff_client: Client, kana: Destination, post_ingest: Any
) -> None:
    send(post_ingest, [track(n, "Report Exported") for n in range(1, 4)])
    send(post_ingest, [track(n, "Seat Added") for n in range(1, 3)])
    send(
        post_ingest,
        [
            {**track(9, "Report Exported"), "properties": {"featureId": "exports"}},  # mapped
            {"type": "track", "anonymousId": "anon", "event": "Seat Added", "messageId": "a"},
        ],
    )
    # Older than everything else, though stored last.
    send(post_ingest, [track(7, "Old Event")])
    Delivery.objects.filter(event__event="Old Event").update(
        received_at=timezone.now() - timedelta(days=3)
    )

    response = staff_client.get(urls(kana)["unmapped"])
    groups = response.context["groups"]
    assert [(g.event_name, g.count) for g in groups] == [
        ("Seat Added", 2),
        ("Report Exported", 3),
        ("Old Event", 1),
    ]
    assert groups[0].last_seen >= groups[1].last_seen > groups[2].last_seen
    assert response.context["unmapped_total"] == 6
    text = squashed(response)
    assert "Unmapped events 6" in text
    assert "Old Event 1 3 days ago" in text
    body = text_of(response)
    assert f'href="{urls(kana)["new"]}?event=Report%20Exported"' in body
    assert 'href="/events/?type=track&event=Report%20Exported"' in body
    assert body.count("Create a rule from this") == 3


def test_unmapped_view_is_one_grouped_query_and_bounded(
    staff_client: Client,
    kana: Destination,
    post_ingest: Any,
) -> None:
    send(post_ingest, [track(n, f"Event {n:03d}") for n in range(UNMAPPED_NAMES_SHOWN + 5)])
    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get(urls(kana)["unmapped"])
    # The destination, one GROUP BY for the names, the total.
    assert len(page_data_queries(queries)) == 3, page_data_queries(queries)
    assert len(queries) <= PAGE_QUERY_CEILING
    assert len(response.context["groups"]) == UNMAPPED_NAMES_SHOWN
    assert response.context["unmapped_total"] == UNMAPPED_NAMES_SHOWN + 5
    assert "The 100 most recently seen event names." in squashed(response)


def test_unmapped_view_when_everything_maps(staff_client: Client, kana: Destination) -> None:
    response = staff_client.get(urls(kana)["unmapped"])
    assert "No unmapped events" in squashed(response)


# --- what routing decided, on an event's page -----------------------------------------------


def event_page_text(client: Client, message_id: str) -> str:
    """The event's page as a sentence reads: no space before punctuation after a tag."""
    event = Event.objects.get(message_id=message_id)
    page = squashed(client.get(reverse("event-detail", args=[event.pk])))
    return re.sub(r" ([.,;:])", r"\1", page)


def test_event_page_shows_the_feature_delta_and_what_named_the_feature(
    staff_client: Client, kana: Destination, post_ingest: Any
) -> None:
    api_calls = rule(kana, "API calls", "api_calls")
    pro_seats = rule(
        kana, "", "seats", conditions=[{"path": "properties.plan", "op": "equals", "value": "pro"}]
    )
    doomed = rule(kana, "Old Thing", "exports")
    send(
        post_ingest,
        [
            track(1, "API calls", delta=3),
            track(2, "Seat Added", plan="pro"),
            track(3, "Anything", featureId="exports", delta=-2),
            track(4, "Old Thing"),
            {"type": "identify", "userId": "u5", "messageId": "id5",
             "traits": {"billingId": "sub_1"}},
            {"type": "identify", "userId": "u6", "messageId": "id6",
             "traits": {"billingId": "cus_6"}},
        ],
    )  # fmt: skip
    rule_delete(doomed)
    rules_url = reverse("mapping-rules", args=[kana.pk])

    assert "Kana usage: feature api_calls, delta 3, by rule 'API calls'" in event_page_text(
        staff_client, "m1-API calls"
    )
    assert "feature seats, delta 1, by rule properties.plan equals 'pro'" in event_page_text(
        staff_client, "m2-Seat Added"
    )
    for user_id, named_by in (("u1", api_calls), ("u2", pro_seats)):
        event = Event.objects.get(user_id=user_id)
        page = text_of(staff_client.get(reverse("event-detail", args=[event.pk])))
        assert f'href="{rules_url}#rule-{named_by.pk}"' in page
    assert "feature exports, delta -2, by featureId in the event" in event_page_text(
        staff_client, "m3-Anything"
    )
    assert "feature exports, delta 1, by a mapping rule since deleted" in event_page_text(
        staff_client, "m4-Old Thing"
    )
    assert (
        "Kana user: billing id left out: billing id 'sub_1' is not a Stripe (cus_...) or "
        "Chargebee customer id" in event_page_text(staff_client, "id5")
    )
    assert "Kana user" not in event_page_text(staff_client, "id6")


def test_the_plan_costs_the_event_page_no_query(
    staff_client: Client, kana: Destination, post_ingest: Any
) -> None:
    rule(kana, "API calls", "api_calls")
    send(post_ingest, [track(1, "API calls"), track(2, "Seat Added", featureId="seats")])
    staff_client.get(reverse("event-list"))  # the navigation's counts, cached for both pages
    counts = []
    for user_id in ("u1", "u2"):
        event = Event.objects.get(user_id=user_id)
        with CaptureQueriesContext(connection) as queries:
            staff_client.get(reverse("event-detail", args=[event.pk]))
        counts.append(len(queries.captured_queries))
    # The rule comes joined to its delivery: a page naming a rule costs no more queries.
    assert counts[0] == counts[1]
    alone = [q for q in queries.captured_queries if 'FROM "destinations_mappingrule"' in q["sql"]]
    assert alone == []


# --- event filters --------------------------------------------------------------------------


def filter_form(event_name: str = "", rows: list[tuple[str, str, str]] | None = None) -> dict:
    rows = rows or []
    return {
        "event_name": event_name,
        "path": [r[0] for r in rows],
        "op": [r[1] for r in rows],
        "value": [r[2] for r in rows],
    }


def kana_deliveries(kana: Destination) -> set[str]:
    return set(
        Delivery.objects.filter(destination=kana).values_list("event__message_id", flat=True)
    )


def test_filters_are_added_and_removed_and_decide_routing_of_new_events(
    staff_client: Client, kana: Destination, post_ingest: Any
) -> None:
    url = urls(kana)["filters"]
    assert "No filters: every event Kana accepts is sent to it." in squashed(staff_client.get(url))

    added = staff_client.post(
        url, filter_form("Debug Ping", [("internal", "equals", "true")]), follow=True
    )
    assert "Filter 1 added: matching events received from now on are not sent to Kana." in (
        squashed(added)
    )
    staff_client.post(url, filter_form("", [("context.app.build", "lt", "100")]))
    kana.refresh_from_db()
    assert kana.event_filters == [
        [
            {"path": "event", "op": "equals", "value": "Debug Ping"},
            {"path": "properties.internal", "op": "equals", "value": "true"},
        ],
        [{"path": "context.app.build", "op": "lt", "value": "100"}],
    ]
    text = squashed(staff_client.get(url))
    assert (
        "Drop events where event equals 'Debug Ping' and properties.internal equals 'true'" in text
    )
    assert "Drop events where context.app.build is less than '100'" in text

    old_build = {"app": {"build": 42}}
    send(
        post_ingest,
        [
            {**track(1, "Debug Ping", internal=True), "messageId": "dropped"},
            {**track(2, "Debug Ping", internal=False), "messageId": "kept"},
            {**track(3, "Report Exported"), "messageId": "old-build", "context": old_build},
            {**track(4, "Report Exported"), "messageId": "new-build"},
        ],
    )
    assert kana_deliveries(kana) == {"kept", "new-build"}

    rules = staff_client.get(url).context["rules"]
    removed = staff_client.post(
        urls(kana)["remove_filter"],
        {"number": "1", "fingerprint": rules[0].fingerprint},
        follow=True,
    )
    assert "Filter removed" in squashed(removed)
    kana.refresh_from_db()
    assert kana.event_filters == [[{"path": "context.app.build", "op": "lt", "value": "100"}]]
    send(post_ingest, [{**track(5, "Debug Ping", internal=True), "messageId": "dropped-before"}])
    assert "dropped-before" in kana_deliveries(kana)

    # A stale page (the filter numbered 1 is now another one) removes nothing.
    stale = staff_client.post(
        urls(kana)["remove_filter"],
        {"number": "1", "fingerprint": rules[0].fingerprint},
        follow=True,
    )
    assert "Nothing removed: the filters changed since this page was loaded." in squashed(stale)
    kana.refresh_from_db()
    assert len(kana.event_filters) == 1


def test_invalid_filters_are_refused_with_the_reason(
    staff_client: Client, kana: Destination
) -> None:
    url = urls(kana)["filters"]
    empty = staff_client.post(url, filter_form())
    assert "A filter needs an event name or at least one condition." in squashed(empty)
    wrong = staff_client.post(
        url, filter_form("Debug Ping", [("a", "exists", ""), ("build", "gt", "new")])
    )
    assert "Condition 3: is greater than needs a number, got 'new'." in squashed(wrong)
    rows = wrong.context["form"].editing_rows
    assert [(r.path, r.invalid) for r in rows[:2]] == [("a", False), ("build", True)]
    kana.refresh_from_db()
    assert kana.event_filters == []


def test_filters_work_for_any_destination_kind(staff_client: Client, db: None) -> None:
    refiner = destination_create(
        kind="refiner", name="Refiner", settings_values={}, secret_values={"api_key": "rk"}
    )
    url = reverse("destination-filters", args=[refiner.pk])
    staff_client.post(url, filter_form("", [("traits.email", "contains", "@example.com")]))
    refiner.refresh_from_db()
    assert refiner.event_filters == [
        [{"path": "traits.email", "op": "contains", "value": "@example.com"}]
    ]
    page = staff_client.get(reverse("destination-delivery", args=[refiner.pk]))
    assert "Event filters (1)" in squashed(page)
