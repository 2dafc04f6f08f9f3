"""The mapping-rule editor: Kana's feature list (or free text when Kana cannot list it),
refusals, condition rows with and without JavaScript, paths, and editing a saved rule."""

from __future__ import annotations

import re

from django.test import Client
from django.urls import reverse

from destinations.delivery.services import destination_create
from destinations.models import Destination, Job, JobKind, MappingRule
from destinations.standins.kana import serve_fake_kana
from destinations.web.condition_forms import full_path, shown_path
from tests.helpers.ingest import IngestPost
from tests.helpers.kana_rules import HX, KEY, rule, rule_form, urls
from tests.helpers.pages import squashed, text_of
from tests.helpers.server import free_port

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
    staff_client: Client, db: None, post_ingest: IngestPost
) -> None:
    port = free_port()  # nothing listens there: connecting is refused at once
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
