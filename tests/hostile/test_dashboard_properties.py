"""The dashboard with poisoned data and hostile query strings: anything stored renders on every
page that shows it, and any query parameter gets a page or a 400, never a 500."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from hypothesis import example, given
from hypothesis import strategies as st

from destinations import jobs
from destinations.audiences.services import audience_create
from destinations.audiences.trait_services import trait_create
from destinations.connectors.refiner.receivers import receiver_create
from destinations.delivery.services import destination_create
from destinations.models import (
    Account,
    AuditAction,
    AuditEntry,
    Destination,
    Event,
    Profile,
    RefinerReceiver,
    Source,
)
from tests.helpers.ingest import basic
from tests.helpers.members import MakeMember
from tests.helpers.urls import dashboard_urls
from tests.hostile import strategies as gen
from tests.hostile.conftest import record

pytestmark = pytest.mark.django_db

# What once broke a page for every operator: integers past 64 bits (PostgreSQL's jsonb reads a
# big float back as one), nesting near the limit, and escapes of lone surrogates.
BIG = "123456789012345678901234567890"
POISON_TEXT = (
    '{"userId": "poison", "type": "identify", "messageId": "poison-%(n)s", '
    '"traits": {"email": "poison@example.com", "plan": "\\\\ud800", "n": %(big)s, '
    '"deep": %(deep)s}, "context": {"n": -%(big)s, "s": "\\\\udfff"}}'
)


def deep_text(levels: int) -> str:
    return '{"a": ' * levels + "1" + "}" * levels


def send(client: Client, source: Source, path: str, body: str) -> Any:
    return client.generic(
        "POST",
        f"/v1/{path}",
        data=body.encode(),
        content_type="application/json",
        HTTP_AUTHORIZATION=basic(source.write_key),
    )


@pytest.fixture
def poisoned(client: Client, source: Source, make_member: MakeMember) -> dict[str, Any]:
    """Everything a page might show, made through the entry points where they can make it."""
    kana = destination_create(
        kind="kana",
        name="Kana",
        settings_values={"api_url": "http://127.0.0.1:9/graphql"},
        secret_values={"api_key": "prv_test"},
    )
    # Accepted: a big number, nesting just under the limit, surrogate escapes as text.
    identify = POISON_TEXT % {"n": 1, "big": BIG, "deep": deep_text(28)}
    assert send(client, source, "identify", identify).status_code == 200
    group = (
        '{"userId": "poison", "groupId": "g-poison", "messageId": "poison-g", '
        f'"traits": {{"name": "\\\\ud800", "seats": {BIG}, "deep": {deep_text(29)}}}}}'
    )
    assert send(client, source, "group", group).status_code == 200
    track = (
        '{"userId": "poison", "event": "Unmapped \\\\ud800", "messageId": "poison-t", '
        f'"properties": {{"n": {BIG}, "deep": {deep_text(29)}}}}}'
    )
    assert send(client, source, "track", track).status_code == 200
    # Refused, and kept as an excerpt the debugger parses: a lone surrogate escape, a number
    # past 64 bits, nesting past the limit in the envelope and in an item.
    refusals = [
        ("track", '{"userId": "u", "event": 5, "x": "\\ud800", "n": §}'.replace("§", BIG)),
        ("track", '{"userId": "u", "event": 5, "n": §}'.replace("§", "9" * 400)),
        ("batch", '{"context": §, "batch": [{"type": "track"}]}'.replace("§", deep_text(300))),
        (
            "batch",
            '{"batch": [{"type": "identify", "userId": "u", "traits": §}]}'.replace(
                "§", deep_text(400)
            ),
        ),
        (
            "batch",
            '{"batch": [{"type": "track", "event": "E", "properties": §}]}'.replace(
                "§", deep_text(31)
            ),
        ),
    ]
    for path, body in refusals:
        response = send(client, source, path, body)
        record(response, "/v1")
        assert response.status_code == 400, response.content
    receiver, token = receiver_create(name="NPS", trigger="any")
    hook_body = (
        '{"triggered_event": "Saw Survey", "remote_id": "poison", '
        f'"attributes": {{"n": {BIG}, "s": "\\\\ud800", "deep": {deep_text(25)}}}}}'
    )
    response = client.generic(
        "POST",
        f"/hooks/refiner/{receiver.public_id}",
        data=hook_body.encode(),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 200, response.content
    bad_hook = '{"triggered_event": 5, "x": "\\ud800", "n": §}'.replace("§", BIG)
    client.generic(
        "POST",
        f"/hooks/refiner/{receiver.public_id}",
        data=bad_hook.encode(),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    AuditEntry.objects.create(
        action=AuditAction.RULE_CHANGED,
        summary="poisoned \ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
        data={"n": 2**70, "deep": gen.nested(30), "text": "\\ud800"},
    )
    # An audience whose name and condition hold what broke pages before, computed: the poisoned
    # user is its member, and its sync is an event of its own.
    audience, job = audience_create(
        name="Poison \\ud800 <script>alert(1)</script> " + BIG,
        subject="users",
        definition={"match": "any", "conditions": [
            {"type": "trait", "path": "email", "op": "equals", "value": "poison@example.com"},
            {"type": "group", "match": "all", "conditions": [
                {"type": "event", "event": "Unmapped \\ud800", "count": "at_least",
                 "times": 1_000_000, "within_days": 3650,
                 "where": [{"path": "properties.n", "op": "gt", "value": BIG}]}]}]},
    )  # fmt: skip
    jobs.run_job(job.pk)
    assert audience.states.filter(member=True, profile__user_id="poison").exists()
    # A computed trait whose name and value are as hostile: the poisoned user's last "n".
    trait, job = trait_create(
        name="Poison trait \\ud800 <b>x</b> " + BIG,
        definition={"kind": "last_value", "event": "Unmapped \\ud800", "property": "properties.n"},
    )
    jobs.run_job(job.pk)
    assert trait.values.filter(profile__user_id="poison").exists()
    staff = make_member(username="staff", role="admin")
    client.force_login(staff)
    return {
        "kana": kana,
        "receiver": receiver,
        "source": source,
        "audience": audience,
        "trait": trait,
    }


def pages_showing_stored_data(world: dict[str, Any]) -> list[str]:
    source: Source = world["source"]
    kana: Destination = world["kana"]
    receiver: RefinerReceiver = world["receiver"]
    profile = Profile.objects.get(user_id="poison")
    account = Account.objects.get(group_id="g-poison")
    pages = [
        "/",
        "/events/",
        "/events/?q=poison",
        f"/sources/{source.pk}/",
        f"/sources/{source.pk}/debugger/",
        "/users/",
        f"/users/{profile.pk}/",
        "/accounts/",
        f"/accounts/{account.pk}/",
        f"/destinations/{kana.pk}/",
        f"/destinations/{kana.pk}/rules/",
        f"/destinations/{kana.pk}/unmapped/",
        "/refiner/webhooks/",
        f"/refiner/webhooks/{receiver.pk}/",
        "/audit/",
        f"/audit/{AuditEntry.objects.latest('id').pk}/",
        "/conflicts/",
        "/conflicts/export.csv",
        "/audiences/",
        f"/audiences/{world['audience'].pk}/",
        f"/audiences/{world['audience'].pk}/edit/",
        f"/audiences/{world['audience'].pk}/delete/",
        "/computed-traits/",
        f"/computed-traits/{world['trait'].pk}/edit/",
    ]
    pages += [f"/events/{pk}/" for pk in Event.objects.values_list("pk", flat=True)]
    return pages


def test_poisoned_data_renders_on_every_page_that_shows_it(
    client: Client, poisoned: dict[str, Any]
) -> None:
    for page in pages_showing_stored_data(poisoned):
        response = client.get(page)
        record(response, "dashboard")
        assert response.status_code == 200, (page, response.status_code)


def test_search_terms_with_surrogate_escapes_are_searched_not_fatal(
    client: Client, poisoned: dict[str, Any]
) -> None:
    source = poisoned["source"]
    pages = ("/events/", "/users/", "/accounts/", "/conflicts/", "/audit/")
    audience = poisoned["audience"]
    for page in (*pages, f"/sources/{source.pk}/debugger/", f"/audiences/{audience.pk}/"):
        for term in ("\\ud800", "\\udfff\\ud800", "\\u0000", "%", "_"):
            response = client.get(page, {"q": term})
            record(response, "dashboard")
            assert response.status_code == 200, (page, term, response.status_code)
        response = client.get(page, {"q": "a\x00b"})
        record(response, "dashboard")
        assert response.status_code == 400
        assert "'q' holds a NUL character" in response.content.decode()


def get_pages() -> list[str]:
    """Every dashboard page that answers a GET, with the ids of real objects."""
    return [
        path
        for name, path in dashboard_urls()
        if not path.startswith(("/v1/", "/hooks/", "/admin/", "/logout"))
        and name not in {"demo-remove", "healthz", "login"}
    ]


QUERY_NAMES = [
    "q",
    "page",
    "before",
    "after",
    "after_refused",
    "window",
    "ids",
    "groups_page",
    "event",
    "email",
    "destination",
    "outcome",
    "paused",
    "job",
    "upload",
    "status",
    "type",
    "source",
    "kind",
    "cursor",
    "action",
    "actor",
    "since",
    "until",
    "rule",
    "feature",
    "name",
    "reason",
    "call",
    "trigger",
    "segment",
    "form",
    "sort",
    "per_page",
    "limit",
    "offset",
]


@pytest.fixture
def staff_world(client: Client, poisoned: dict[str, Any]) -> dict[str, Any]:
    pages = pages_showing_stored_data(poisoned)
    objects = {
        "999999": str(poisoned["kana"].pk),
    }
    for path in get_pages():
        for placeholder, real in objects.items():
            path = path.replace(placeholder, real)
        pages.append(path)
    return {"pages": sorted(set(pages))}


@given(
    data=st.data(),
    params=st.dictionaries(st.sampled_from(QUERY_NAMES), gen.query_values, min_size=1, max_size=4),
)
@example(data=None, params={"groups_page": "9223372036854775808"})
@example(data=None, params={"ids": "999999999999999999999999999999"})
@example(data=None, params={"q": "\\ud800"})
def test_any_query_string_on_any_page_gets_a_page_or_a_400(
    client: Client, staff_world: dict[str, Any], data: Any, params: dict[str, str]
) -> None:
    pages = staff_world["pages"]
    targets = pages if data is None else [data.draw(st.sampled_from(pages))]
    for page in targets:
        joiner = "&" if "?" in page else "?"
        response = client.get(page + joiner + urlencode(params))
        record(response, "dashboard")
        allowed = (200, 302, 400, 404, 405)  # 405: a page that only takes POST
        assert response.status_code in allowed, (page, params, response.status_code)


TRAIT_FIELDS = ["name", "kind", "event", "property", "within_days", "destinations",
                "where_path_1", "where_op_1", "where_value_1"]  # fmt: skip


@given(form=st.dictionaries(st.sampled_from(TRAIT_FIELDS), gen.query_values, max_size=9))
@example(form={"name": "n", "kind": "count", "event": "e", "within_days": "9" * 30})
@example(form={"name": "n", "kind": "count", "event": "e", "destinations": "999999999999"})
@example(form={"name": "n", "kind": "count", "event": "e", "where_op_1": "gt",
               "where_path_1": "properties.n", "where_value_1": "1e999"})  # fmt: skip
def test_any_computed_trait_form_gets_a_form_error_or_is_saved(
    client: Client, make_member: MakeMember, form: dict[str, str]
) -> None:
    client.force_login(make_member(username=gen.unique_id("op"), role="operator"))
    response = client.post("/computed-traits/new/", form)
    record(response, "dashboard")
    assert response.status_code in (200, 302, 400), (form, response.status_code)
