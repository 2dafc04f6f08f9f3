"""Dashboard pages: login required, lists and filters, keyset paging, query counts."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Q
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from dashboard.selectors.events import EVENTS_PAGE_SIZE
from dashboard.selectors.people import EVENTS_PAGE_SIZE as ACCOUNT_EVENTS_PAGE_SIZE
from destinations.delivery.services import destination_create
from destinations.models import (
    Account,
    Delivery,
    DeliveryStatus,
    Event,
    IngestFailure,
    Profile,
    Source,
)
from destinations.sources import source_create
from tests.helpers.ingest import IngestPost

pytestmark = pytest.mark.django_db


@pytest.fixture
def sample(post_ingest: IngestPost, source: Source) -> dict[str, Any]:
    post_ingest("identify", {"userId": "u1", "traits": {"email": "ada@x.io", "name": "Ada"}})
    post_ingest("group", {"userId": "u1", "groupId": "acct-1", "traits": {"name": "Initech"}})
    post_ingest("track", {"userId": "u1", "event": "Report Exported", "messageId": "t-1"})
    post_ingest("page", {"anonymousId": "anon-7", "name": "Pricing"})
    return {
        "profile": Profile.objects.get(user_id="u1"),
        "account": Account.objects.get(group_id="acct-1"),
        "event": Event.objects.get(message_id="t-1"),
        "source": source,
    }


def page_urls(sample: dict[str, Any]) -> list[str]:
    return [
        reverse("home"),
        reverse("event-list"),
        reverse("event-detail", args=[sample["event"].pk]),
        reverse("user-list"),
        reverse("user-detail", args=[sample["profile"].pk]),
        reverse("account-list"),
        reverse("account-detail", args=[sample["account"].pk]),
        reverse("source-list"),
        reverse("source-new"),
        reverse("source-detail", args=[sample["source"].pk]),
        reverse("source-edit", args=[sample["source"].pk]),
    ]


def test_every_page_requires_login(client: Client, sample: dict[str, Any]) -> None:
    for url in page_urls(sample):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url


def test_every_page_renders_for_a_logged_in_operator(
    staff_client: Client, sample: dict[str, Any]
) -> None:
    for url in page_urls(sample):
        response = staff_client.get(url)
        assert response.status_code == 200, url


def test_login_form_logs_in(client: Client, db: None) -> None:
    get_user_model().objects.create_user(username="op", password="correct horse battery")
    response = client.post(
        reverse("login"), {"username": "op", "password": "correct horse battery"}, follow=True
    )
    assert response.status_code == 200
    assert response.wsgi_request.user.is_authenticated
    bad = Client().post(reverse("login"), {"username": "op", "password": "wrong"})
    assert b"Please enter a correct username and password" in bad.content


def test_event_detail_shows_raw_json(staff_client: Client, sample: dict[str, Any]) -> None:
    body = staff_client.get(reverse("event-detail", args=[sample["event"].pk])).content.decode()
    assert "Report Exported" in body
    assert "&quot;messageId&quot;: &quot;t-1&quot;" in body


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("type=track", {"t-1"}),
        ("event=Report+Exported", {"t-1"}),
        ("user=u1", {"t-1", "identify", "group"}),
        ("user=anon-7", {"page"}),
    ],
)
def test_event_filters(
    staff_client: Client, sample: dict[str, Any], query: str, expected: set[str]
) -> None:
    response = staff_client.get(f"{reverse('event-list')}?{query}")
    shown = {e.message_id for e in response.context["page"].rows}
    stored = {e.message_id: e.type for e in Event.objects.all()}
    assert {m if m == "t-1" else stored[m] for m in shown} == expected


def test_event_filter_by_source_and_time(staff_client: Client, sample: dict[str, Any]) -> None:
    other = source_create(name="Other")
    url = reverse("event-list")
    shown = staff_client.get(f"{url}?source={other.pk}").context["page"].rows
    assert shown == []
    future = (timezone.now() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    assert staff_client.get(f"{url}?since={future}").context["page"].rows == []
    assert len(staff_client.get(f"{url}?until={future}").context["page"].rows) == 4


def test_events_keyset_pagination_walks_every_row_once(
    staff_client: Client, post_ingest: IngestPost
) -> None:
    total = EVENTS_PAGE_SIZE * 2 + 7
    batch = [
        {"type": "track", "userId": f"u{i % 5}", "event": "Tick", "messageId": f"k{i}"}
        for i in range(total)
    ]
    assert post_ingest("batch", {"batch": batch}).status_code == 200
    seen: list[int] = []
    url = reverse("event-list")
    while url:
        page = staff_client.get(url).context["page"]
        seen.extend(e.pk for e in page.rows)
        url = f"{reverse('event-list')}?before={page.next_before}" if page.next_before else ""
    assert len(seen) == total
    assert seen == sorted(seen, reverse=True)


def test_events_show_each_destination_s_delivery_state_in_one_query(
    staff_client: Client, post_ingest: IngestPost
) -> None:
    for name in ("Refiner", "Ops hook"):
        destination_create(
            kind="refiner" if name == "Refiner" else "webhook",
            name=name,
            settings_values={"url": "https://hooks.example.com/in", "trigger": "events"}
            if name == "Ops hook"
            else {},
            secret_values={"api_key": "rk"} if name == "Refiner" else {},
        )
    url = reverse("event-list")
    staff_client.get(url)  # the session and role lookups, cached after the first page

    def queries_for(count: int) -> int:
        batch = [{"type": "track", "userId": f"u{i}", "event": "Tick"} for i in range(count)]
        assert post_ingest("batch", {"batch": batch}).status_code == 200
        with CaptureQueriesContext(connection) as queries:
            staff_client.get(url)
        return len(queries)

    few = queries_for(2)
    assert queries_for(EVENTS_PAGE_SIZE) == few  # one query for the page's deliveries

    newest = Event.objects.order_by("-id")[0]
    Delivery.objects.filter(event=newest, destination__name="Refiner").update(
        status=DeliveryStatus.DELIVERED
    )
    Delivery.objects.filter(event=newest, destination__name="Ops hook").update(
        status=DeliveryStatus.FAILED
    )
    body = staff_client.get(url).content.decode()
    first_row = body.split("<tbody>")[1].split("</tr>")[0]
    cells = re.findall(r'<a class="badge status-(\w+)"[^>]*>([^<]+)</a>', first_row)
    assert cells == [("failed", "Ops hook: failed"), ("delivered", "Refiner: delivered")]
    second_row = body.split("<tbody>")[1].split("</tr>")[1]
    assert re.findall(r">([^<]+: \w+)</a>", second_row) == ["Ops hook: pending", "Refiner: pending"]


def test_event_list_htmx_request_renders_only_the_table(
    staff_client: Client, sample: dict[str, Any]
) -> None:
    response = staff_client.get(reverse("event-list"), headers={"HX-Request": "true"})
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="event-table"')
    assert "<html" not in body
    assert "HX-Request" in response["Vary"]


def test_list_pages_do_not_query_per_row(staff_client: Client, post_ingest: IngestPost) -> None:
    batch = []
    for i in range(30):
        batch.append({"type": "identify", "userId": f"u{i}", "traits": {"email": f"{i}@x.io"}})
        batch.append({"type": "group", "userId": f"u{i}", "groupId": f"g{i % 10}"})
        batch.append({"type": "track", "userId": f"u{i}", "event": "E"})
    assert post_ingest("batch", {"batch": batch}).status_code == 200
    # event-list: one of its queries reads the page's delivery states.
    for name, ceiling in [("event-list", 9), ("user-list", 6), ("account-list", 7)]:
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(reverse(name)).status_code == 200
        assert len(queries) <= ceiling, (name, [q["sql"] for q in queries])


def test_users_and_accounts_search(staff_client: Client, sample: dict[str, Any]) -> None:
    users = staff_client.get(f"{reverse('user-list')}?q=ada@").context["page"].rows
    assert [p.user_id for p in users] == ["u1"]
    assert staff_client.get(f"{reverse('user-list')}?q=nobody").context["page"].rows == []
    accounts = staff_client.get(f"{reverse('account-list')}?q=init").context["page"].rows
    assert [a.group_id for a in accounts] == ["acct-1"]
    assert [p.user_id for p in accounts[0].shown_members] == ["u1"]


def searched(client: Client, term: str) -> list[str | None]:
    rows = client.get(reverse("user-list"), {"q": term}).context["page"].rows
    return sorted(p.user_id for p in rows)


def test_user_search_matches_the_start_of_a_user_id(staff_client: Client) -> None:
    for user_id in ("demo-alan", "demo-alan-2", "Demo-Alan-3", "x-demo-alan", "a_b", "axb",
                    "50%", "50x", "a*b", "acb", "a?", "az", "[x]y", "xy"):  # fmt: skip
        Profile.objects.create(user_id=user_id)
    Profile.objects.create(user_id="someone", email="twin@example.com", name="DEMO-ALAN's twin")
    assert searched(staff_client, "demo-alan") == ["demo-alan", "demo-alan-2", "someone"]
    # As typed: a user id is case-sensitive (the email and name match in any case).
    assert searched(staff_client, "demo-alan-") == ["demo-alan-2"]
    assert searched(staff_client, "Demo-Alan-") == ["Demo-Alan-3"]
    # LIKE's and GLOB's wildcards in the term stand for themselves.
    assert searched(staff_client, "a_") == ["a_b"]
    assert searched(staff_client, "50%") == ["50%"]
    assert searched(staff_client, "a*") == ["a*b"]
    assert searched(staff_client, "a?") == ["a?"]
    assert searched(staff_client, "[x]") == ["[x]y"]


def test_a_user_id_prefix_is_found_through_an_index(db: None) -> None:
    """The prefix alone: on SQLite the user id's unique index (GLOB keeps its binary order),
    on PostgreSQL the varchar_pattern_ops index Django makes beside it, which serves a LIKE
    prefix whatever the database's collation."""
    prefixed = Profile.objects.filter(user_id__prefix="demo-alan")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")  # a table this small is scanned
        plan = prefixed.explain()
        # An index scan, or a bitmap scan of the index (the planner's pick on a small table).
        used = r"(Index (Only )?Scan using|Bitmap Index Scan on) destinations_profile_user_id_\w+"
        assert re.search(used, plan), plan
        assert "~>=~ 'demo-alan'" in plan, plan  # the pattern-ops range, not a filter
    else:
        plan = prefixed.explain()
        index_range = r"USING (COVERING )?INDEX \S+ \(user_id>\? AND user_id<\?\)"
        assert re.search(rf"SEARCH destinations_profile {index_range}", plan), plan


def test_user_and_account_detail_show_identity(
    staff_client: Client, sample: dict[str, Any]
) -> None:
    user_page = staff_client.get(reverse("user-detail", args=[sample["profile"].pk]))
    assert user_page.context["accounts"] == [sample["account"]]
    assert "Report Exported" in user_page.content.decode()
    account_page = staff_client.get(reverse("account-detail", args=[sample["account"].pk]))
    assert account_page.context["members"] == [sample["profile"]]
    assert "Initech" in account_page.content.decode()


def facts_of(body: str) -> dict[str, str]:
    return dict(re.findall(r"<dt>([^<]+)</dt><dd>([^<]*)</dd>", body))


def test_an_account_is_first_seen_at_its_earliest_group_call(
    staff_client: Client, post_ingest: IngestPost
) -> None:
    group = {"userId": "u1", "groupId": "acct-9", "traits": {"name": "Hooli"}}
    # Calls arrive out of order (an SDK's queue, a replay): seen is when they were made.
    for minute in (20, 5, 30, 12):
        post_ingest("group", {**group, "timestamp": f"2025-06-01T10:{minute:02d}:00Z"})
    account = Account.objects.get(group_id="acct-9")
    facts = facts_of(
        staff_client.get(reverse("account-detail", args=[account.pk])).content.decode()
    )
    assert facts["First seen"] == "2025-06-01T10:05:00+00:00"
    assert facts["Last seen"] == "2025-06-01T10:30:00+00:00"


def test_an_account_s_events_page_back_to_the_first(
    staff_client: Client, post_ingest: IngestPost
) -> None:
    post_ingest("group", {"userId": "u1", "groupId": "acct-2", "traits": {"name": "Globex"}})
    for n in range(ACCOUNT_EVENTS_PAGE_SIZE + 5):  # and 30 events of its member
        post_ingest("track", {"userId": "u1", "event": f"Step {n}"})
    post_ingest("track", {"userId": "someone-else", "event": "Not theirs"})
    account = Account.objects.get(group_id="acct-2")
    url = reverse("account-detail", args=[account.pk])

    seen: list[int] = []
    pages = 0
    next_url: str | None = url
    while next_url:
        with CaptureQueriesContext(connection) as queries:
            response = staff_client.get(next_url)
        body = response.content.decode()
        rows = response.context["events"].rows
        seen += [event.pk for event in rows]
        pages += 1
        older = re.search(r'<a href="(\?before=\d+)#events">Older', body)
        next_url = url + older[1] if older else None
        assert ("Newest</a>" in body) == (pages > 1)
        assert len(queries) <= 12  # the same for every page
    assert pages == 2
    member_events = Event.objects.filter(Q(group_id="acct-2") | Q(user_id="u1"))
    assert seen == sorted(member_events.values_list("pk", flat=True), reverse=True)
    assert len(seen) == ACCOUNT_EVENTS_PAGE_SIZE + 6  # the group call and 30 tracks, once each


def test_create_source_through_the_form_and_see_snippets(staff_client: Client, db: None) -> None:
    response = staff_client.post(
        reverse("source-new"),
        {"name": "Mobile", "enabled": "on", "rate_limit_per_second": 50},
        follow=True,
    )
    body = response.content.decode()
    source = response.context["source"]
    assert source.name == "Mobile" and source.rate_limit_per_second == 50
    assert f'analytics.write_key = "{source.write_key}"' in body
    assert 'analytics.host = "http://testserver"' in body
    assert "@segment/analytics-node" in body and "@segment/analytics-next" in body
    duplicate = staff_client.post(
        reverse("source-new"), {"name": "Mobile", "rate_limit_per_second": 50}
    )
    assert "already exists" in duplicate.content.decode()


def test_disable_source_and_rotate_key(
    staff_client: Client, post_ingest: IngestPost, source: Source
) -> None:
    staff_client.post(
        reverse("source-edit", args=[source.pk]),
        {"name": source.name, "rate_limit_per_second": 10},
    )
    refused = post_ingest("track", {"userId": "u", "event": "E"})
    assert refused.status_code == 403
    staff_client.post(
        reverse("source-edit", args=[source.pk]),
        {"name": source.name, "enabled": "on", "rate_limit_per_second": 10},
    )
    old_key = source.write_key
    staff_client.post(reverse("source-rotate", args=[source.pk]))
    source.refresh_from_db()
    assert source.write_key != old_key
    assert post_ingest("track", {"userId": "u", "event": "E"}, write_key=old_key).status_code == 401
    assert post_ingest("track", {"userId": "u", "event": "E"}).status_code == 200


def test_failed_on_ingest_is_counted_per_source(
    staff_client: Client, post_ingest: IngestPost, source: Source
) -> None:
    post_ingest("batch", {"batch": [{"type": "track", "userId": "u"}, {"type": "nope"}]})
    assert IngestFailure.objects.filter(source=source).count() == 2
    listed = staff_client.get(reverse("source-list")).context["sources"]
    assert [s.failed_on_ingest for s in listed] == [2]
    detail = staff_client.get(reverse("source-detail", args=[source.pk])).content.decode()
    assert "track call without event name" in detail
    assert "unknown type" in detail
