"""The audience editor: the list, building conditions by posting the form back (and with htmx),
the key shown as the name is typed, Preview, saving (the first computation starts), editing
(the key stays), the engine's refusals shown beside the form, and who may do what.

Refiner is the stand-in on loopback; computations run in-process (the browser test runs them on
a real worker)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from destinations.audiences.services import audience_create
from destinations.delivery.services import destination_create
from destinations.models import (
    Audience,
    AuditAction,
    AuditEntry,
    Destination,
    Job,
    JobKind,
    Source,
)
from destinations.standins.refiner import FakeRefiner, serve_fake_refiner
from tests.dashboard.audience_support import (
    EXPORTED_TWICE,
    HX,
    TRIAL,
    compute_now,
    editor_data,
    make_event,
    make_user,
    row_cells,
    text_of,
    words_of,
)

pytestmark = pytest.mark.django_db

SEGMENT = "2e7a9c41-5b8d-4f3e-a6c2-1d9f8b7e3a54"
TRIALS = {"match": "all", "conditions": [{**TRIAL, "path": "traits.plan"}]}
KANA_REASON = (
    "Kana keeps only name, email and billing id of a user's traits, so an audience would be "
    "dropped there"
)


@pytest.fixture
def refiner_with_segments() -> Iterator[FakeRefiner]:
    for refiner in serve_fake_refiner(api_keys={"rk_test"}):
        refiner.add_segment("Power users", uuid=SEGMENT)
        refiner.add_segment("Computed by Refiner", is_manual=False)
        yield refiner


@pytest.fixture
def refiner(db: None, refiner_with_segments: FakeRefiner) -> Destination:
    return destination_create(
        kind="refiner",
        name="Refiner",
        settings_values={"base_url": refiner_with_segments.base_url},
        secret_values={"api_key": "rk_test"},
    )


@pytest.fixture
def people(source: Source) -> dict[str, Any]:
    """Two trial users who exported twice this week, one who exported once, one on pro."""
    ada = make_user("u-ada", email="ada@example.com", traits={"plan": "trial"})
    bob = make_user("u-bob", email="bob@example.com", traits={"plan": "trial"})
    cy = make_user("u-cy", traits={"plan": "trial"})
    dan = make_user("u-dan", traits={"plan": "pro"})
    for user in (ada, ada, bob, bob, cy, dan, dan):
        make_event(source, user, "Report Exported", properties={"format": "csv"})
    return {"ada": ada, "bob": bob, "cy": cy, "dan": dan}


def test_audiences_are_in_the_navigation_and_listed(operator: Client, refiner: Destination) -> None:
    page = operator.get("/audiences/")
    assert page.status_code == 200
    assert 'href="/audiences/" aria-current="page">Audiences</a>' in page.content.decode()
    assert "No audiences yet." in words_of(page)

    audience, _ = audience_create(
        name="Trial users",
        subject="users",
        definition=TRIALS,
        destination_ids=[refiner.pk],
    )
    compute_now(audience)
    cells = row_cells(operator.get("/audiences/"), f"audience-{audience.pk}")
    assert cells[:5] == ["Trial users", "trial_users", "users", "0", "Refiner"]
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d$", cells[5])  # last computed


def test_the_new_form_offers_refiner_and_webhooks_and_explains_kana(
    operator: Client, refiner: Destination, fake_kana: Any
) -> None:
    kana = destination_create(
        kind="kana",
        name="Kana",
        settings_values={"api_url": fake_kana.base_url},
        secret_values={"api_key": "prv_test"},
    )
    hook = destination_create(
        kind="webhook",
        name="CRM hook",
        settings_values={"url": "https://hooks.example.com/in"},
        secret_values={},
    )
    page = text_of(operator.get("/audiences/new/"))
    assert "The key cannot change once created: destinations key on it." in page
    assert f'name="destinations" value="{refiner.pk}">' in page
    assert f'name="destinations" value="{hook.pk}">' in page
    assert f'name="destinations" value="{kana.pk}" disabled>' in page
    assert KANA_REASON + "." in page
    # Refiner's manual segments, asked over HTTP; a computed segment cannot be kept in step.
    select = re.search(rf'<select name="segment_{refiner.pk}".*?</select>', page, re.S)
    assert select is not None
    assert re.findall(r"<option[^>]*>([^<]*)</option>", select[0]) == ["No segment", "Power users"]


def test_the_segment_is_typed_when_refiner_cannot_be_asked(operator: Client) -> None:
    down = destination_create(
        kind="refiner",
        name="Refiner down",
        settings_values={"base_url": "http://127.0.0.1:9/v1"},
        secret_values={"api_key": "rk_test"},
    )
    page = text_of(operator.get("/audiences/new/"))
    assert f'<input type="text" name="segment_{down.pk}"' in page
    assert "Refiner's segments could not be listed (Could not reach Refiner" in page


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("Power users (EU)", "Key power_users_eu"),
        ("trialExporters", "Key trial_exporters"),
        ("Café clients", "Key cafe_clients"),
        ("", "The key appears here as you type the name."),
        ("!!!", "the name needs a letter or digit to make its key from"),
        ("x" * 201, "a name is at most 200 characters"),
        ("Trial-Users", "Key trial_users — the audience 'Trial users' already has this key"),
    ],
)
def test_the_key_is_shown_as_the_name_is_typed(operator: Client, name: str, shown: str) -> None:
    audience_create(name="Trial users", subject="users", definition=TRIALS)
    response = operator.get("/audiences/key/", {"name": name}, headers=HX)
    assert response.status_code == 200
    assert response.content.decode().lstrip().startswith('<p id="key-preview"')
    assert words_of(response) == shown


def test_conditions_are_added_and_removed_by_posting_the_form_back(operator: Client) -> None:
    data = editor_data(add="event")
    page = text_of(operator.post("/audiences/new/", data))
    assert '<input type="hidden" name="c2-type" value="event">' in page
    assert 'name="c1-path" value="plan"' in page  # what was typed comes back
    assert not Audience.objects.exists()

    # A group gets a first condition of its own; a condition is added inside it.
    data = editor_data(conditions=[TRIAL, EXPORTED_TWICE], add="group")
    page = text_of(operator.post("/audiences/new/", data))
    assert '<input type="hidden" name="c3-type" value="group">' in page
    assert '<input type="hidden" name="c3-1-type" value="trait">' in page
    group = {"type": "group", "match": "any", "conditions": [TRIAL]}
    data = editor_data(conditions=[TRIAL, group], add="c2:event")
    page = text_of(operator.post("/audiences/new/", data))
    assert '<input type="hidden" name="c2-2-type" value="event">' in page
    assert re.search(r'name="c2-match".*?<option value="any" selected>', page, re.S)

    # Removing renumbers what is left; a property row is added to an event and removed again.
    data = editor_data(conditions=[TRIAL, EXPORTED_TWICE], remove="c1", add_where="c2")
    page = text_of(operator.post("/audiences/new/", data))
    assert 'name="c1-type" value="event"' in page and "c2-type" not in page
    data = editor_data(conditions=[TRIAL, EXPORTED_TWICE], add_where="c2")
    page = text_of(operator.post("/audiences/new/", data))
    assert page.count('name="c2-wpath"') == 1
    where = {**EXPORTED_TWICE, "where": [{"path": "format", "op": "equals", "value": "csv"},
                                         {"path": "size", "op": "gt", "value": "3"}]}  # fmt: skip
    page = text_of(operator.post("/audiences/new/", editor_data(
        conditions=[where], remove_where="c1:1")))  # fmt: skip
    assert re.findall(r'name="c1-wpath" value="([^"]*)"', page) == ["size"]


def test_with_htmx_only_the_conditions_come_back(operator: Client) -> None:
    response = operator.post("/audiences/new/", editor_data(add="audience"), headers=HX)
    body = response.content.decode()
    assert body.lstrip().startswith('<fieldset id="builder"')
    assert "<html" not in body
    assert 'name="c2-type" value="audience"' in body
    # Choosing accounts re-renders the conditions for accounts: no user traits to add.
    response = operator.post(
        "/audiences/new/", editor_data(subject="accounts", refresh="1"), headers=HX
    )
    buttons = re.findall(r'name="add" value="(\w+)"', response.content.decode())
    assert buttons == ["account", "event", "audience", "group"]
    assert 'name="c1-type" value="trait"' in response.content.decode()  # typed into: kept
    blank = editor_data(subject="accounts", refresh="1", conditions=[{**TRIAL, "path": "",
                                                                      "value": ""}])  # fmt: skip
    response = operator.post("/audiences/new/", blank, headers=HX)
    assert 'name="c1-type" value="account"' in response.content.decode()  # the blank one fits


def test_saving_starts_the_first_computation_and_opens_the_audience(
    operator: Client, refiner: Destination, people: dict[str, Any]
) -> None:
    exported = {**EXPORTED_TWICE, "where": [{"path": "format", "op": "equals", "value": "csv"}]}
    data = editor_data(conditions=[TRIAL, exported], destinations=[refiner.pk],
                       **{f"segment_{refiner.pk}": SEGMENT})  # fmt: skip
    response = operator.post("/audiences/new/", data)
    audience = Audience.objects.get()
    job = Job.objects.get(kind=JobKind.AUDIENCE)
    assert response.status_code == 302
    assert response["Location"] == f"/audiences/{audience.pk}/?job={job.pk}"
    assert audience.key == "trial_exporters"
    assert audience.definition == {"match": "all", "conditions": [
        {"type": "trait", "path": "traits.plan", "op": "equals", "value": "trial"},
        {"type": "event", "event": "Report Exported", "count": "at_least", "times": 2,
         "within_days": 7, "where": [
             {"path": "properties.format", "op": "equals", "value": "csv"}]}]}  # fmt: skip
    assert list(audience.targets.values_list("destination_id", "refiner_segment")) == [
        (refiner.pk, SEGMENT)
    ]
    entry = AuditEntry.objects.get(action=AuditAction.AUDIENCE_CHANGED)
    assert entry.summary == "Created audience 'Trial exporters' (trial_exporters)"
    assert entry.actor is not None and entry.actor.username == "olga"

    page = operator.get(response["Location"])
    assert "Audience 'Trial exporters' created: computing who is in it now." in words_of(page)
    assert "Waiting for a worker to start…" in words_of(page)
    compute_now(audience)
    assert audience.size == 2
    done = words_of(operator.get(response["Location"]))
    assert "Done: 2 entered, 0 left; 2 syncs stored for delivery." in done
    assert "u-ada" in done and "u-bob" in done and "u-cy" not in done


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (editor_data(name=""), "This field is required."),
        (editor_data(conditions=[{**TRIAL, "op": "gt", "value": "lots"}]),
         "Condition 1: is greater than needs a number, got 'lots'."),
        (editor_data(conditions=[{**EXPORTED_TWICE, "times": "many"}]),
         "Condition 1: times must be a whole number from 0 to 1,000,000."),
        (editor_data(conditions=[{**EXPORTED_TWICE, "within": "99999"}]),
         "Condition 1: within must be 1 to 3650 days, or ever."),
        (editor_data(conditions=[TRIAL, {"type": "group", "match": "all", "conditions": [
            TRIAL, {**TRIAL, "path": ""}]}]),
         "Condition 2: condition 2: path must be dotted names like properties.plan, got ''."),
        (editor_data(conditions=[]), "Add at least one condition."),
        (editor_data(subject="accounts"), "Condition 1: an account audience has no user traits."),
        (editor_data(conditions=[{"type": "audience", "audience": "", "member": "in"}]),
         "Condition 1: choose an audience."),
        (editor_data(conditions=[{"type": "audience", "audience": "99999999", "member": "in"}]),
         "Audience #99999999 does not exist."),
        (editor_data(destinations=[99999999]),
         "Select a valid choice. 99999999 is not one of the available choices."),
        (editor_data(subject="everyone"), "Select a valid choice. everyone is not one of"),
    ],
)  # fmt: skip
def test_what_cannot_be_saved_is_said_beside_the_form(
    operator: Client, data: dict[str, Any], message: str
) -> None:
    response = operator.post("/audiences/new/", data)
    assert response.status_code == 200
    assert message in words_of(response)
    assert not Audience.objects.exists()


def test_the_condition_named_in_a_message_is_highlighted(operator: Client) -> None:
    group = {"type": "group", "match": "any", "conditions": [TRIAL, {**TRIAL, "op": "lt"}]}
    page = text_of(operator.post("/audiences/new/", editor_data(conditions=[TRIAL, group])))
    assert re.findall(r'<li class="(?:condition|group)[^"]*invalid[^"]*" id="(c[\d-]+)"', page) == [
        "c2-2"
    ]
    where = {**EXPORTED_TWICE, "where": [{"path": "format", "op": "exists"},
                                         {"path": "", "op": "equals", "value": "x"}]}  # fmt: skip
    page = text_of(operator.post("/audiences/new/", editor_data(conditions=[where])))
    assert "Condition 1: where 2: path must be dotted names" in page
    assert page.count('<div class="condition-row invalid">') == 1


def test_names_and_keys_are_unique(operator: Client) -> None:
    operator.post("/audiences/new/", editor_data(name="Trial users"))
    assert Audience.objects.count() == 1
    response = operator.post("/audiences/new/", editor_data(name="Trial users"))
    assert "An audience named 'Trial users' already exists." in words_of(response)
    response = operator.post("/audiences/new/", editor_data(name="trial-users"))
    assert (
        "Another audience or computed trait already has the key 'trial_users'; choose another name."
        in words_of(response)
    )


def test_audience_conditions_offer_the_same_subject_and_refuse_a_circle(operator: Client) -> None:
    trials, _ = audience_create(name="Trials", subject="users", definition=TRIALS)
    seats = {"type": "account", "path": "traits.seats", "op": "gt", "value": 10}
    big = {"match": "all", "conditions": [seats]}
    audience_create(name="Big accounts", subject="accounts", definition=big)
    page = text_of(operator.post("/audiences/new/", editor_data(add="audience")))
    options = re.search(r'name="c2-audience".*?</select>', page, re.S)
    assert options is not None
    assert re.findall(r">([^<]+)</option>", options[0]) == ["Choose an audience…", "Trials"]

    uses = {"type": "audience", "audience": str(trials.pk), "member": "not_in"}
    operator.post("/audiences/new/", editor_data(name="Not trials", conditions=[uses]))
    not_trials = Audience.objects.get(name="Not trials")
    assert not_trials.definition["conditions"] == [
        {"type": "audience", "audience": trials.pk, "in": False}
    ]
    back = {"type": "audience", "audience": str(not_trials.pk), "member": "in"}
    data = editor_data(name="Trials", conditions=[back])
    response = operator.post(f"/audiences/{trials.pk}/edit/", data)
    assert "That would make audiences use each other in a circle." in words_of(response)
    # Its own page is not offered as a choice for itself.
    page = text_of(operator.get(f"/audiences/{trials.pk}/edit/"))
    assert f'<option value="{trials.pk}"' not in page


def test_preview_counts_who_matches_now_with_examples(
    operator: Client, people: dict[str, Any]
) -> None:
    data = editor_data(conditions=[TRIAL, EXPORTED_TWICE])
    response = operator.post("/audiences/preview/", data, headers=HX)
    body = response.content.decode()
    assert body.lstrip().startswith('<section id="audience-preview"')
    assert "2 users match now" in words_of(response)
    for user in (people["ada"], people["bob"]):
        assert f'<a href="/users/{user.pk}/">{user.user_id}</a>' in body
    assert not Audience.objects.exists()
    # Without JavaScript the editor comes back, with the preview and what was typed.
    page = operator.post("/audiences/preview/", data)
    assert "2 users match now" in words_of(page)
    assert 'name="c2-event" value="Report Exported"' in text_of(page)
    # A definition that cannot be evaluated says why instead.
    broken = editor_data(conditions=[{**TRIAL, "op": "gt"}])
    response = operator.post("/audiences/preview/", broken, headers=HX)
    assert "Cannot preview: condition 1: is greater than needs a number, got 'trial'." in (
        words_of(response)
    )


def test_editing_keeps_the_key_and_recomputes_only_a_changed_definition(
    operator: Client, refiner: Destination, people: dict[str, Any]
) -> None:
    operator.post("/audiences/new/", editor_data(destinations=[refiner.pk]))
    audience = Audience.objects.get()
    compute_now(audience)
    page = text_of(operator.get(f"/audiences/{audience.pk}/edit/"))
    assert '<code id="audience-key">trial_exporters</code>' in page
    assert "read-only: the key cannot change once created, destinations key on it." in page
    assert 'name="subject" value="users" checked disabled' in page
    assert 'name="c1-path" value="plan"' in page  # traits.plan, shown as typed

    data = editor_data(name="Trial people", destinations=[refiner.pk])
    response = operator.post(f"/audiences/{audience.pk}/edit/", data)
    assert response["Location"] == f"/audiences/{audience.pk}/"
    audience.refresh_from_db()
    assert (audience.name, audience.key, audience.version) == ("Trial people", "trial_exporters", 1)
    assert Job.objects.count() == 1

    # A subject posted on edit is ignored: it is fixed.
    data = editor_data(name="Trial people", subject="accounts", conditions=[TRIAL, EXPORTED_TWICE])
    response = operator.post(f"/audiences/{audience.pk}/edit/", data)
    job = Job.objects.latest("pk")
    assert response["Location"] == f"/audiences/{audience.pk}/?job={job.pk}"
    audience.refresh_from_db()
    assert (audience.subject, audience.version, audience.targets.count()) == ("users", 2, 0)
    assert compute_now(audience).counters == {"scanned": 4, "entered": 0, "left": 1, "synced": 0}
