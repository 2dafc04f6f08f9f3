"""Unmapped events grouped by name, what routing decided on an event's page, and event
filters deciding the routing of new events."""

from __future__ import annotations

import re
from datetime import timedelta

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from destinations.connectors.kana.rules import rule_delete
from destinations.connectors.kana.selectors import UNMAPPED_NAMES_SHOWN
from destinations.delivery.services import destination_create
from destinations.models import Delivery, Destination, Event
from tests.helpers.ingest import IngestPost, send
from tests.helpers.kana_rules import PAGE_QUERY_CEILING, page_data_queries, rule, track, urls
from tests.helpers.pages import squashed, text_of

# --- unmapped events ------------------------------------------------------------------------


def test_unmapped_events_are_grouped_by_name_newest_first(
    staff_client: Client, kana: Destination, post_ingest: IngestPost
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
    post_ingest: IngestPost,
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
    staff_client: Client, kana: Destination, post_ingest: IngestPost
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
    staff_client: Client, kana: Destination, post_ingest: IngestPost
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
    staff_client: Client, kana: Destination, post_ingest: IngestPost
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
