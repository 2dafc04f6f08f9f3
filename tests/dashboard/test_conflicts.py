"""User conflicts in the dashboard: the two lists with search and bounded queries, merge with
preview and chosen fields, refusals, undo from the audit log, delete with its options, the
billing-customer import (Stripe export and mapped columns), the CSV export, Merge all, and the
flags on a user's page."""

from __future__ import annotations

import csv
import html
import io
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.template import Context, Template
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from dashboard.selectors.conflicts import CONFLICT_PAGE_SIZE
from destinations.connectors.kana import billing_id_problem
from destinations.delivery import jobs
from destinations.delivery.services import destination_create
from destinations.identity.conflicts import without_valid_billing_id
from destinations.identity.refiner_contacts import delete_contacts
from destinations.models import (
    AnonymousId,
    AuditAction,
    AuditEntry,
    Event,
    Job,
    JobKind,
    JobStatus,
    Membership,
    Profile,
    Suppression,
    Upload,
)
from destinations.standins.refiner import FakeRefiner

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.urls_with_people")]

STRIPE = (
    b"id,Description,Email,Name,Created (UTC)\n"
    b"cus_A1,,ada@x.co,Ada,2024-01-01\n"
    b"cus_B2,,grace@x.co,Grace Hopper,2024-01-02\n"
    b"cus_C3,,,No Email,2024-01-03\n"
    b"sub_D4,,d@x.co,Wrong Object,2024-01-04\n"
)


@pytest.fixture
def operator(db: None) -> User:
    # An admin passes whatever role the conflict URLs end up needing.
    return get_user_model().objects.create_superuser(
        username="op", email="op@example.com", password="correct horse battery"
    )


@pytest.fixture
def staff_client(client: Client, operator: User) -> Client:
    client.force_login(operator)
    return client


def text_of(response: Any) -> str:
    """The response body as a reader sees it: entities decoded."""
    return html.unescape(response.content.decode())


def words_of(response: Any) -> str:
    """The response's text without its tags, whitespace collapsed: what a sentence reads."""
    words = " ".join(re.sub(r"<[^>]+>", " ", text_of(response)).split())
    return re.sub(r" ([.,;:])", r"\1", words)


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def send(post_ingest: Any, items: list[dict[str, Any]]) -> None:
    response = post_ingest("batch", {"batch": items})
    assert response.status_code == 200, response.content
    assert response.json()["failed"] == []


@pytest.fixture
def twins(post_ingest: Any) -> tuple[Profile, Profile]:
    """Two users sharing an email; the newer one has the fuller name and a billing id."""
    send(
        post_ingest,
        [
            {"type": "identify", "userId": "u-old", "anonymousId": "anon-1",
             "traits": {"email": "ada@x.co", "name": "Ada L", "plan": "free"}},
            {"type": "group", "userId": "u-old", "groupId": "g-shared"},
            {"type": "track", "userId": "u-old", "event": "Old Thing"},
        ],
    )  # fmt: skip
    send(  # a later request: created after u-old
        post_ingest,
        [
            {"type": "identify", "userId": "u-new", "anonymousId": "anon-2",
             "traits": {"email": "ADA@x.co", "name": "Ada Lovelace", "billingId": "cus_9"}},
            {"type": "group", "userId": "u-new", "groupId": "g-new-only"},
            {"type": "track", "userId": "u-new", "event": "New Thing"},
        ],
    )  # fmt: skip
    return Profile.objects.get(user_id="u-old"), Profile.objects.get(user_id="u-new")


def make_conflicts(post_ingest: Any) -> None:
    send(
        post_ingest,
        [
            {"type": "identify", "userId": f"u{n}", "traits": {"email": email, **extra}}
            for n, (email, extra) in enumerate(
                [
                    ("dup@x.co", {}),
                    ("dup@x.co", {"billingId": "cus_1"}),
                    ("dup@x.co", {}),
                    ("pair@x.co", {"billingId": "cus_2"}),
                    ("pair@x.co", {"billingId": "cus_3"}),
                    ("alone@x.co", {}),
                ]
            )
        ],
    )


def merge_form(
    survivor: Profile, profiles: list[Profile], **choices: Profile | str | list[str]
) -> dict[str, Any]:
    """The merge form as the page posts it: everyone takes part, fields default to the
    survivor's value unless chosen."""
    data: dict[str, Any] = {
        "ids": ",".join(str(p.pk) for p in profiles),
        "survivor": str(survivor.pk),
        "include": [str(p.pk) for p in profiles],
    }
    for name in ("user_id", "email", "name", "billing_id"):
        data[f"keep_{name}"] = str(survivor.pk)
    for name, value in choices.items():
        data[name] = str(value.pk) if isinstance(value, Profile) else value
    return data


# The Conflicts page ---------------------------------------------------------------------------


def test_conflicts_page_lists_both_boxes_with_counts(staff_client, post_ingest) -> None:
    make_conflicts(post_ingest)
    response = staff_client.get(reverse("conflicts"))
    assert response.status_code == 200
    page = text_of(response)
    assert "2 emails" in page  # dup@x.co and pair@x.co
    assert "3 users" in page  # u0, u2, u5 have no billing id
    groups = response.context["groups"]
    assert [(g.email, g.users) for g in groups.groups] == [("dup@x.co", 3), ("pair@x.co", 2)]
    # The oldest user first: the one a merge keeps by default.
    assert [p.user_id for p in groups.groups[0].members] == ["u0", "u1", "u2"]
    assert f"{reverse('conflicts-merge')}?email=dup%40x.co" in page
    missing = response.context["missing"]
    assert [p.user_id for p in missing.page.rows] == ["u5", "u2", "u0"]
    assert missing.shared_emails == {"dup@x.co"}
    u5 = Profile.objects.get(user_id="u5")
    assert reverse("user-delete", args=[u5.pk]) in page
    # u0 and u2 share dup@x.co: each links to the merge page.
    assert page.count('class="tag warn" title="Several users share this email') == 2


def test_each_box_searches_on_its_own_and_renders_alone_for_htmx(staff_client, post_ingest) -> None:
    make_conflicts(post_ingest)
    response = staff_client.get(reverse("conflicts"), {"email_q": "PAIR", "user_q": "u5"})
    assert [g.email for g in response.context["groups"].groups] == ["pair@x.co"]
    assert [p.user_id for p in response.context["missing"].page.rows] == ["u5"]
    assert "1 email match “PAIR”" in text_of(response)

    fragment = staff_client.get(
        reverse("conflicts"),
        {"email_q": "dup", "user_q": ""},
        headers={"HX-Request": "true", "HX-Target": "duplicate-emails"},
    )
    body = text_of(fragment)
    assert body.lstrip().startswith('<div id="duplicate-emails"')
    assert "dup@x.co" in body and "pair@x.co" not in body
    assert "<html" not in body and "missing-billing" not in body
    assert fragment["Vary"] == "HX-Request, HX-Target, Cookie"

    fragment = staff_client.get(
        reverse("conflicts"),
        {"user_q": "u0"},
        headers={"HX-Request": "true", "HX-Target": "missing-billing"},
    )
    body = text_of(fragment)
    assert body.lstrip().startswith('<div id="missing-billing"')
    assert ">u0</a>" in body and ">u2</a>" not in body and "duplicate-emails" not in body


def many_conflicts(groups: int, missing: int, prefix: str = "") -> None:
    now = timezone.now()
    Profile.objects.bulk_create(
        [
            Profile(user_id=f"{prefix}g{n}-{k}", email=f"{prefix}group{n:04}@x.co",
                    billing_id=f"cus_{n}x{k}", created_at=now)
            for n in range(groups)
            for k in range(2 + n % 3)
        ]
        + [Profile(user_id=f"{prefix}nobill-{n}", email=f"{prefix}solo{n}@x.co", created_at=now)
           for n in range(missing)]
    )  # fmt: skip


def test_conflicts_page_queries_are_bounded_and_pages_walk(
    staff_client, django_assert_max_num_queries
) -> None:
    many_conflicts(groups=1, missing=1, prefix="few-")
    with CaptureQueriesContext(connection) as baseline:
        staff_client.get(reverse("conflicts"))
    # The page of groups (carrying their total, the heading's count), the count of users
    # without a billing id, their page, and what the rows show (members of each group, which
    # emails are shared), in one query each.
    ours = [q for q in baseline.captured_queries if "destinations_profile" in q["sql"]]
    assert len(ours) == 5
    assert len(grouping_every_user(ours)) == 1
    many_conflicts(groups=3 * CONFLICT_PAGE_SIZE - 1, missing=2 * CONFLICT_PAGE_SIZE + 4)
    limit = len(baseline.captured_queries)  # the same however many conflicts there are
    with django_assert_max_num_queries(limit):
        response = staff_client.get(reverse("conflicts"))
    groups = response.context["groups"]
    assert (groups.total, groups.pages, len(groups.groups)) == (75, 3, CONFLICT_PAGE_SIZE)
    # Most users first: every third group has four users.
    counts = [g.users for g in groups.groups]
    assert counts == sorted(counts, reverse=True) and counts.count(4) == 24
    seen: list[str] = []
    for number in (1, 2, 3):
        with django_assert_max_num_queries(limit):
            page = staff_client.get(reverse("conflicts"), {"groups_page": number})
        seen += [g.email for g in page.context["groups"].groups]
    assert len(seen) == len(set(seen)) == 75

    users: list[str] = []
    before = None
    while True:
        query: dict[str, int] = {"before": before} if before else {}
        with django_assert_max_num_queries(limit):
            page = staff_client.get(reverse("conflicts"), query)
        missing = page.context["missing"]
        users += [p.user_id for p in missing.page.rows]
        before = missing.page.next_before
        if before is None:
            break
    assert len(users) == len(set(users)) == 2 * CONFLICT_PAGE_SIZE + 5


def grouping_every_user(queries: list[dict[str, str]]) -> list[str]:
    """The queries that group all users by email (not just the emails a page shows)."""
    return [q["sql"] for q in queries if "GROUP BY" in q["sql"] and " IN (" not in q["sql"]]


def test_groups_pages_count_in_the_same_query_and_stay_right_as_groups_change(
    staff_client,
) -> None:
    many_conflicts(groups=2 * CONFLICT_PAGE_SIZE + 3, missing=0)
    with CaptureQueriesContext(connection) as queries:
        last = staff_client.get(reverse("conflicts"), {"groups_page": 3}).context["groups"]
    assert (last.total, last.pages, last.number, len(last.groups)) == (53, 3, 3, 3)
    assert len(grouping_every_user(queries.captured_queries)) == 1
    # Past the end (a stale link): counted apart, and the last page shown.
    past = staff_client.get(reverse("conflicts"), {"groups_page": 9}).context["groups"]
    assert (past.total, past.number) == (53, 3)
    assert [g.email for g in past.groups] == [g.email for g in last.groups]
    # Nothing is kept between requests: a new group is counted, and moves the pages.
    now = timezone.now()
    Profile.objects.bulk_create(
        [Profile(user_id=f"late-{k}", email="zz-late@x.co", created_at=now) for k in "ab"]
    )
    box = words_of(
        staff_client.get(
            reverse("conflicts"),
            {"groups_page": 3},
            headers={"HX-Request": "true", "HX-Target": "duplicate-emails"},
        )
    )
    assert "Page 3 of 3" in box
    assert box.count("Review & merge") == 4  # two users, and last by email
    assert "zz-late@x.co" in box


def test_past_the_end_of_whole_pages_shows_the_last_full_page(staff_client) -> None:
    many_conflicts(groups=2 * CONFLICT_PAGE_SIZE, missing=0)
    last = staff_client.get(reverse("conflicts"), {"groups_page": 2}).context["groups"]
    with CaptureQueriesContext(connection) as queries:
        past = staff_client.get(reverse("conflicts"), {"groups_page": 7}).context["groups"]
    assert (past.total, past.number, len(past.groups)) == (50, 2, CONFLICT_PAGE_SIZE)
    assert [g.email for g in past.groups] == [g.email for g in last.groups]
    assert len(grouping_every_user(queries.captured_queries)) == 2  # the empty page, then the last


def test_no_groups_and_a_page_past_the_end_is_page_one(staff_client) -> None:
    groups = staff_client.get(reverse("conflicts"), {"groups_page": 4}).context["groups"]
    assert (groups.total, groups.number, groups.pages, groups.groups) == (0, 1, 1, [])


def test_a_search_on_the_full_page_keeps_the_headings_unsearched(staff_client, post_ingest) -> None:
    make_conflicts(post_ingest)
    response = staff_client.get(reverse("conflicts"), {"email_q": "pair"})
    assert response.context["groups"].total == 1
    assert response.context["counts"]["duplicate_emails"] == 2
    assert "2 emails" in text_of(response)


def test_nav_link_counts_conflicts_and_caches_them(post_ingest, django_assert_num_queries) -> None:
    make_conflicts(post_ingest)
    template = Template("{% load conflict_tags %}{% conflicts_nav_link %}")
    request = RequestFactory().get("/conflicts/")
    link = template.render(Context({"request": request}))
    assert 'href="/conflicts/"' in link
    assert (
        '<span class="badge nav-count">5</span>' in link
    )  # 2 shared emails + 3 without billing id
    assert "2 emails shared by several users · 3 users without a valid billing id" in link
    send(post_ingest, [{"type": "identify", "userId": "u9", "traits": {"email": "n@x.co"}}])
    with django_assert_num_queries(0):  # counted a moment ago: not again on every page
        assert '<span class="badge nav-count">5</span>' in template.render(
            Context({"request": request})
        )


# Billing ids Kana would refuse, as the database finds them: (value, whether Kana takes it).
BILLING_SAMPLES = [
    ("cus_A1", True),
    ("cus_" + "x" * 80, True),  # Stripe's ids have no length limit here
    ("AzZTZgSs9sXh71Xo", True),  # a generated Chargebee id
    ("a" * 50, True),
    ("a" * 51, False),
    ("12345", True),
    ("cus_", False),
    ("CUS_abc", False),
    ("cus_a-b", False),
    ("sub_9xK", False),
    ("x y", False),
    ("ada@x.co", False),
    ("é1", False),
    ("١٢٣", False),  # digits, but not 0-9
    ("cus_ab\nc", False),
    ("cus_ab cd", False),
    ("cus_é", False),
    ("ab_cd", False),
]


def test_the_databases_rule_for_billing_ids_is_kanas(db: None) -> None:
    now = timezone.now()
    Profile.objects.bulk_create(
        [Profile(user_id=f"b{n}", billing_id=value, created_at=now)
         for n, (value, _) in enumerate(BILLING_SAMPLES)]
    )  # fmt: skip
    listed = set(without_valid_billing_id().values_list("billing_id", flat=True))
    refused = {value for value, accepted in BILLING_SAMPLES if not accepted}
    assert listed == refused
    assert refused == {value for value, _ in BILLING_SAMPLES if billing_id_problem(value)}


def test_postgresql_reads_the_list_from_its_partial_index(db: None) -> None:
    """The list states the condition ``profile_needs_billing_idx`` is built on: if they drift
    apart, PostgreSQL can no longer use the index (the page stays right, but slow)."""
    if connection.vendor != "postgresql":
        pytest.skip("partial-index matching is PostgreSQL's")
    now = timezone.now()
    Profile.objects.bulk_create(
        [Profile(user_id=f"paid-{n}", billing_id=f"cus_{n}", created_at=now) for n in range(3000)]
        + [Profile(user_id=f"bad-{n}", billing_id="x y", created_at=now) for n in range(5)]
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE destinations_profile")
    for rows in (without_valid_billing_id(), without_valid_billing_id("bad")):
        assert "profile_needs_billing_idx" in rows[:25].explain()  # a page
        assert "profile_needs_billing_idx" in rows.order_by().values("pk").explain()  # a count


def test_invalid_billing_ids_are_listed_with_the_problem(staff_client, post_ingest) -> None:
    make_conflicts(post_ingest)  # u0, u2 and u5 have no billing id
    send(
        post_ingest,
        [
            {"type": "identify", "userId": "u-space", "traits": {"billingId": "x y"}},
            {"type": "identify", "userId": "u-sub", "traits": {"email": "dup@x.co",
             "billingId": "sub_9xK"}},
            {"type": "identify", "userId": "u-good", "traits": {"billingId": "AzZTZgSs9sXh71Xo"}},
        ],
    )  # fmt: skip
    response = staff_client.get(reverse("conflicts"))
    missing = response.context["missing"]
    assert [p.user_id for p in missing.page.rows] == ["u-sub", "u-space", "u5", "u2", "u0"]
    assert missing.total == 5 and response.context["counts"]["without_billing_id"] == 5
    assert "5 users" in text_of(response)
    box = words_of(response).split("Users without a valid billing id")[1]
    assert (
        "u-space invalid billing id billing id 'x y' is not a Stripe (cus_...) or Chargebee "
        "customer id"
    ) in box
    assert "billing id 'sub_9xK' is not a Stripe" in box
    assert "u-good" not in box
    # They are searched, and counted in the navigation, like the rest of the box.
    searched = staff_client.get(reverse("conflicts"), {"user_q": "u-s"}).context["missing"]
    assert [p.user_id for p in searched.page.rows] == ["u-sub", "u-space"]
    assert '<span class="badge nav-count">7</span>' in text_of(response)  # 2 emails + 5 users
    # The export says what to correct before importing the file back.
    export = staff_client.get(reverse("conflicts-export"))
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
    why = {row[1]: row[5] for row in rows[1:]}
    assert why["u-space"] == (
        "invalid billing id: billing id 'x y' is not a Stripe (cus_...) or Chargebee customer id"
    )
    assert why["u-sub"].endswith("; shared email") and why["u0"] == "no billing id; shared email"


def test_export_csv_streams_both_lists(staff_client, post_ingest) -> None:
    make_conflicts(post_ingest)
    response = staff_client.get(reverse("conflicts-export"))
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="switchboard-')
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["profile_id", "user_id", "email", "name", "billing_id", "conflict"]
    assert {row[1]: row[5] for row in rows[1:]} == {
        "u0": "no billing id; shared email",
        "u2": "no billing id; shared email",
        "u5": "no billing id",
        "u1": "shared email",
        "u3": "shared email",
        "u4": "shared email",
    }


# Merge ----------------------------------------------------------------------------------------


def test_merge_page_compares_users_and_previews_the_default(staff_client, twins) -> None:
    old, new = twins
    response = staff_client.get(reverse("conflicts-merge"), {"email": "Ada@X.co"})
    assert response.status_code == 200
    page = text_of(response)
    assert [c.profile for c in response.context["columns"]] == [old, new]
    assert response.context["survivor"] == old.pk  # created first, Kana's rule
    assert "created first" in page
    columns = {c.profile.user_id: c for c in response.context["columns"]}
    assert (columns["u-old"].events, columns["u-new"].events) == (3, 3)
    assert columns["u-new"].anonymous_ids == ["anon-2"]
    assert columns["u-new"].accounts == ["g-new-only"]
    # The default merge: each field keeps the survivor's value, else the first other one's.
    plan = response.context["plan"]
    assert plan.events == 3
    assert plan.anonymous_ids == ["anon-2"]
    assert plan.memberships == ["g-new-only"]
    assert plan.changes == [("billing_id", None, "cus_9")]
    assert "u-new will be merged into u-old." in words_of(response)


def test_preview_fragment_shows_what_moves_and_field_changes(staff_client, twins) -> None:
    old, new = twins
    data = merge_form(old, [old, new], keep_name=new, keep_billing_id=new)
    response = staff_client.post(
        reverse("conflicts-merge-preview"), data, headers={"HX-Request": "true"}
    )
    body = text_of(response)
    assert body.lstrip().startswith('<section id="merge-preview"')
    assert '<strong id="plan-events">3</strong>' in body
    assert "anon-2" in body and "g-new-only" in body
    words = words_of(response)
    assert "Name Ada L → Ada Lovelace" in words
    assert "Billing id — → cus_9" in words
    # Without htmx the same POST answers the whole page, preview included.
    page = staff_client.post(reverse("conflicts-merge-preview"), data)
    assert "<html" in text_of(page)
    assert page.context["plan"].changes == [
        ("name", "Ada L", "Ada Lovelace"),
        ("billing_id", None, "cus_9"),
    ]
    assert not conflict_entries().exists()  # a preview changes nothing


def test_merge_with_chosen_fields_applies_them(staff_client, operator, twins) -> None:
    old, new = twins
    data = merge_form(old, [old, new], keep_name=new, keep_billing_id=new)
    response = staff_client.post(reverse("conflicts-merge-confirm"), data, follow=True)
    assert response.redirect_chain == [(reverse("user-detail", args=[old.pk]), 302)]
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.user_id, old.name, old.billing_id) == ("u-old", "Ada Lovelace", "cus_9")
    assert new.merged_into_id == old.pk
    assert set(Event.objects.filter(profile=old, source__name="Web app").values_list(
        "event", flat=True
    )) >= {"Old Thing", "New Thing"}  # fmt: skip
    assert set(AnonymousId.objects.filter(profile=old).values_list("value", flat=True)) == {
        "anon-1",
        "anon-2",
    }
    assert set(
        Membership.objects.filter(profile=old).values_list("account__group_id", flat=True)
    ) == {"g-shared", "g-new-only"}
    entry = AuditEntry.objects.get(action=AuditAction.MERGE)
    assert entry.actor == operator
    assert messages_of(response) == [
        "Merged u-new into u-old (3 events moved). It can be undone from the audit log."
    ]
    page = text_of(response)
    assert "Absorbed" in page and reverse("user-detail", args=[new.pk]) in page


def test_survivor_can_be_the_newer_user(staff_client, twins) -> None:
    old, new = twins
    data = merge_form(new, [old, new])
    response = staff_client.post(reverse("conflicts-merge-confirm"), data)
    assert response.status_code == 302
    old.refresh_from_db()
    assert old.merged_into_id == new.pk
    assert Profile.objects.get(pk=new.pk).name == "Ada Lovelace"


def test_refused_merge_shows_the_reason_and_changes_nothing(staff_client, twins) -> None:
    old, new = twins
    data = merge_form(old, [old, new], keep_user_id=new)
    response = staff_client.post(reverse("conflicts-merge-confirm"), data)
    assert response.status_code == 200
    assert (
        "This merge cannot be done: the survivor keeps its own userId 'u-old'; to keep "
        "'u-new', choose that user as the survivor." in words_of(response)
    )
    assert not conflict_entries().exists()
    assert Profile.objects.get(pk=new.pk).merged_into_id is None

    # The survivor must take part, and at least two users must.
    data = merge_form(old, [old, new], include=[str(new.pk)])
    response = staff_client.post(reverse("conflicts-merge-preview"), data)
    assert "The survivor must take part in the merge." in text_of(response)

    # Users merged since the page was opened are refused by name.
    staff_client.post(reverse("conflicts-merge-confirm"), merge_form(old, [old, new]))
    again = staff_client.post(reverse("conflicts-merge-confirm"), merge_form(old, [old, new]))
    assert "u-new was already merged into another user" in text_of(again)


def test_merge_page_with_nothing_to_merge_goes_back(staff_client, twins) -> None:
    response = staff_client.get(reverse("conflicts-merge"), {"email": "nobody@x.co"}, follow=True)
    assert response.redirect_chain == [(reverse("conflicts"), 302)]
    assert messages_of(response) == ["Nothing to merge: fewer than two users are left to compare."]
    old, new = twins
    by_ids = staff_client.get(reverse("conflicts-merge"), {"ids": f"{new.pk},{old.pk},x"})
    assert [c.profile for c in by_ids.context["columns"]] == [old, new]
    # One of them deleted while the page was open: the preview sends the whole page back.
    data = merge_form(old, [old, new])
    staff_client.post(reverse("user-delete", args=[new.pk]), {})
    gone = staff_client.post(
        reverse("conflicts-merge-preview"), data, headers={"HX-Request": "true"}
    )
    assert gone["HX-Redirect"] == reverse("conflicts")


# Audit log and undo ---------------------------------------------------------------------------


def test_undo_from_the_audit_log_restores_the_users(staff_client, twins) -> None:
    old, new = twins
    staff_client.post(
        reverse("conflicts-merge-confirm"), merge_form(old, [old, new], keep_name=new)
    )
    entry = AuditEntry.objects.get(action=AuditAction.MERGE)
    log = staff_client.get(reverse("audit-list"))
    page = text_of(log)
    assert "Merged u-new into u-old (3 events moved)" in page
    assert reverse("audit-undo", args=[entry.pk]) in page

    detail = text_of(staff_client.get(reverse("audit-detail", args=[entry.pk])))
    assert "What moved to" in detail and "anon-2" in detail and "g-new-only" in detail
    assert "Ada L" in detail  # the survivor's name before the merge

    response = staff_client.post(
        reverse("audit-undo", args=[entry.pk]), {"next": reverse("audit-list")}, follow=True
    )
    assert response.redirect_chain == [(reverse("audit-list"), 302)]
    assert messages_of(response) == ["Undid: Merged u-new into u-old (3 events moved)"]
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.name, old.billing_id, new.merged_into_id) == ("Ada L", None, None)
    assert Event.objects.get(event="New Thing").profile_id == new.pk
    assert AnonymousId.objects.get(value="anon-2").profile_id == new.pk
    assert "undone" in text_of(response)
    assert AuditEntry.objects.filter(action=AuditAction.MERGE_UNDONE).count() == 1

    again = staff_client.post(reverse("audit-undo", args=[entry.pk]), follow=True)
    assert messages_of(again) == ["This merge cannot be undone: this merge was already undone."]


def test_audit_log_says_why_a_merge_cannot_be_undone(staff_client, post_ingest, twins) -> None:
    old, new = twins
    send(post_ingest, [{"type": "identify", "userId": "u-third", "traits": {"email": "t@x.co"}}])
    third = Profile.objects.get(user_id="u-third")
    staff_client.post(reverse("conflicts-merge-confirm"), merge_form(old, [old, new]))
    staff_client.post(reverse("conflicts-merge-confirm"), merge_form(third, [old, third]))
    first, second = AuditEntry.objects.filter(action=AuditAction.MERGE).order_by("id")
    page = text_of(staff_client.get(reverse("audit-list")))
    assert (
        "Cannot undo: the surviving user was merged into another user since: undo that merge "
        "first." in page
    )
    assert reverse("audit-undo", args=[first.pk]) not in page
    assert reverse("audit-undo", args=[second.pk]) in page
    # Forcing it anyway: the service refuses, and says why.
    forced = staff_client.post(reverse("audit-undo", args=[first.pk]), follow=True)
    assert messages_of(forced) == [
        "This merge cannot be undone: u-old was merged into another user since: undo that "
        "merge first."
    ]


def conflict_entries() -> Any:
    """Audit entries of conflict work, leaving out the fixtures' own (a source created)."""
    return AuditEntry.objects.exclude(action="source_changed")


def test_audit_log_filters_by_action(staff_client, twins) -> None:
    old, new = twins
    staff_client.post(reverse("conflicts-merge-confirm"), merge_form(old, [old, new]))
    staff_client.post(reverse("user-delete", args=[old.pk]), {})
    everything = staff_client.get(reverse("audit-list"))
    # The source the fixtures made is in the log too, as "source_changed".
    shown = [e.action for e, _ in everything.context["rows"]]
    assert [a for a in shown if a != "source_changed"] == ["delete", "merge"]
    deletes = staff_client.get(reverse("audit-list"), {"action": "delete"})
    assert [e.action for e, _ in deletes.context["rows"]] == ["delete"]
    fragment = staff_client.get(
        reverse("audit-list"), {"action": "merge"}, headers={"HX-Request": "true"}
    )
    assert text_of(fragment).lstrip().startswith('<div id="audit-table"')
    # The merge's survivor was deleted since: the merge can no longer be undone.
    assert "the surviving user was deleted since" in text_of(fragment)


# Delete ---------------------------------------------------------------------------------------


def test_delete_with_events_and_suppression(staff_client, post_ingest, twins) -> None:
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


def test_delete_keeping_events_and_refusing_a_merged_away_user(staff_client, twins) -> None:
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
    staff_client, twins, fake_refiner: FakeRefiner, django_capture_on_commit_callbacks
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


def test_stripe_import_previews_then_runs_as_a_job(staff_client, operator) -> None:
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
    assert entry.actor == operator
    assert reverse("audit-detail", args=[entry.pk]) in body
    # The token named a file that is gone now: asking again says so.
    again = staff_client.get(preview_url, follow=True)
    assert messages_of(again) == [
        "That upload has expired or was already imported; upload the file again."
    ]


def test_generic_csv_gets_a_column_step(staff_client, post_ingest) -> None:
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
def test_unreadable_files_are_refused_with_the_reason(staff_client, data, message) -> None:
    response = upload(staff_client, data, name="bad.csv")
    assert response.status_code == 200
    assert response.context["form"].errors == {"file": [message]}
    assert message in text_of(response)
    assert not Upload.objects.exists() and not Job.objects.exists()


def test_a_forged_upload_token_names_no_file(staff_client) -> None:
    preview_url = upload(staff_client, STRIPE)["Location"]
    token = parse_qs(urlsplit(preview_url).query)["upload"][0]
    other = Upload.objects.create(name="someone-else.csv", content=STRIPE)
    forged = token.replace(token.split(":")[0], str(other.pk), 1)
    response = staff_client.get(reverse("conflicts-import-preview"), {"upload": forged})
    assert response.status_code == 302 and response["Location"] == reverse("conflicts-import")


# Merge all ------------------------------------------------------------------------------------


def test_merge_all_previews_counts_then_runs_as_a_job(staff_client, post_ingest) -> None:
    make_conflicts(post_ingest)
    preview = staff_client.get(reverse("conflicts-merge-all"))
    page = text_of(preview)
    assert '<strong id="bulk-groups">2</strong>' in page
    assert '<strong id="bulk-users">5</strong>' in page
    assert "3 will be merged away" in page
    assert "Merge 2 groups" in page

    started = staff_client.post(reverse("conflicts-merge-all"))
    job = Job.objects.get(kind=JobKind.BULK_MERGE)
    assert started["Location"] == reverse("conflicts-job", args=[job.pk])
    jobs.run_job(job.pk)
    result = text_of(staff_client.get(started["Location"]))
    assert '<strong id="result-merged">2</strong>' in result
    assert sorted(str(p.user_id) for p in Profile.objects.filter(merged_into__isnull=True)) == [
        "u0",
        "u3",
        "u5",
    ]
    after = text_of(staff_client.get(reverse("conflicts")))
    assert "No two users share an email." in after
    assert AuditEntry.objects.filter(action=AuditAction.MERGE).count() == 2


# The user's page ------------------------------------------------------------------------------


def test_user_page_flags_billing_ids_shared_emails_and_merges(
    staff_client, post_ingest, twins
) -> None:
    old, new = twins
    send(
        post_ingest,
        [{"type": "identify", "userId": "u-bad", "traits": {"billingId": "sub_123"}}],
    )
    bad = Profile.objects.get(user_id="u-bad")
    page = text_of(staff_client.get(reverse("user-detail", args=[bad.pk])))
    assert "invalid: not a Stripe (cus_…) or Chargebee customer id" in page
    assert "billing id 'sub_123' is not a Stripe (cus_...) or Chargebee customer id" in page

    page = text_of(staff_client.get(reverse("user-detail", args=[old.pk])))
    assert '<span class="flag warn">missing</span>' in page
    assert "Shares its email with 1 other user." in page
    assert f"{reverse('conflicts-merge')}?email=ada%40x.co" in page
    assert reverse("user-delete", args=[old.pk]) in page

    staff_client.post(reverse("conflicts-merge-confirm"), merge_form(old, [old, new]))
    survivor = text_of(staff_client.get(reverse("user-detail", args=[old.pk])))
    assert "Shares its email" not in survivor
    assert f'<dd id="absorbed"><a href="/users/{new.pk}/">u-new</a></dd>' in survivor
    absorbed = text_of(staff_client.get(reverse("user-detail", args=[new.pk])))
    assert "Merged into" in absorbed and reverse("user-delete", args=[new.pk]) not in absorbed


def test_every_conflict_page_requires_login(client, twins) -> None:
    old, _ = twins
    for url in (
        reverse("conflicts"),
        reverse("conflicts-export"),
        reverse("conflicts-merge") + "?email=ada@x.co",
        reverse("conflicts-merge-all"),
        reverse("conflicts-import"),
        reverse("user-delete", args=[old.pk]),
        reverse("audit-list"),
    ):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url


def test_a_viewer_sees_the_flags_but_no_merge_or_delete(client, make_member, twins) -> None:
    old, _ = twins
    client.force_login(make_member(username="reader", role="viewer"))
    page = text_of(client.get(reverse("user-detail", args=[old.pk])))
    assert "Shares its email with 1 other user." in page
    assert '<span class="flag warn">missing</span>' in page
    assert reverse("user-delete", args=[old.pk]) not in page
    assert reverse("conflicts-merge") not in page
