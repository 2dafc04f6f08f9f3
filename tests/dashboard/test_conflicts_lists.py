"""The Conflicts page: the two lists (shared emails, users without a valid billing id)
with search, paging and bounded queries, the navigation count, and the CSV export."""

from __future__ import annotations

import csv
import io

import pytest
from django.db import connection
from django.template import Context, Template
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries

from dashboard.selectors.conflicts import CONFLICT_PAGE_SIZE
from destinations.connectors.kana.connector import billing_id_problem
from destinations.models import Profile
from destinations.people.conflicts import without_valid_billing_id
from tests.helpers.conflicts import make_conflicts
from tests.helpers.ingest import IngestPost, send
from tests.helpers.pages import streamed_text, text_of, words_of

pytestmark = pytest.mark.django_db


# The Conflicts page ---------------------------------------------------------------------------


def test_conflicts_page_lists_both_boxes_with_counts(
    staff_client: Client, post_ingest: IngestPost
) -> None:
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


def test_each_box_searches_on_its_own_and_renders_alone_for_htmx(
    staff_client: Client, post_ingest: IngestPost
) -> None:
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
    staff_client: Client, django_assert_max_num_queries: DjangoAssertNumQueries
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
    staff_client: Client,
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


def test_past_the_end_of_whole_pages_shows_the_last_full_page(staff_client: Client) -> None:
    many_conflicts(groups=2 * CONFLICT_PAGE_SIZE, missing=0)
    last = staff_client.get(reverse("conflicts"), {"groups_page": 2}).context["groups"]
    with CaptureQueriesContext(connection) as queries:
        past = staff_client.get(reverse("conflicts"), {"groups_page": 7}).context["groups"]
    assert (past.total, past.number, len(past.groups)) == (50, 2, CONFLICT_PAGE_SIZE)
    assert [g.email for g in past.groups] == [g.email for g in last.groups]
    assert len(grouping_every_user(queries.captured_queries)) == 2  # the empty page, then the last


def test_no_groups_and_a_page_past_the_end_is_page_one(staff_client: Client) -> None:
    groups = staff_client.get(reverse("conflicts"), {"groups_page": 4}).context["groups"]
    assert (groups.total, groups.number, groups.pages, groups.groups) == (0, 1, 1, [])


def test_a_search_on_the_full_page_keeps_the_headings_unsearched(
    staff_client: Client, post_ingest: IngestPost
) -> None:
    make_conflicts(post_ingest)
    response = staff_client.get(reverse("conflicts"), {"email_q": "pair"})
    assert response.context["groups"].total == 1
    assert response.context["counts"]["duplicate_emails"] == 2
    assert "2 emails" in text_of(response)


def test_nav_link_counts_conflicts_and_caches_them(
    post_ingest: IngestPost, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
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


def test_invalid_billing_ids_are_listed_with_the_problem(
    staff_client: Client, post_ingest: IngestPost
) -> None:
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
    rows = list(csv.reader(io.StringIO(streamed_text(export))))
    why = {row[1]: row[5] for row in rows[1:]}
    assert why["u-space"] == (
        "invalid billing id: billing id 'x y' is not a Stripe (cus_...) or Chargebee customer id"
    )
    assert why["u-sub"].endswith("; shared email") and why["u0"] == "no billing id; shared email"


def test_export_csv_streams_both_lists(staff_client: Client, post_ingest: IngestPost) -> None:
    make_conflicts(post_ingest)
    response = staff_client.get(reverse("conflicts-export"))
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="switchboard-')
    rows = list(csv.reader(io.StringIO(streamed_text(response))))
    assert rows[0] == ["profile_id", "user_id", "email", "name", "billing_id", "conflict"]
    assert {row[1]: row[5] for row in rows[1:]} == {
        "u0": "no billing id; shared email",
        "u2": "no billing id; shared email",
        "u5": "no billing id",
        "u1": "shared email",
        "u3": "shared email",
        "u4": "shared email",
    }
