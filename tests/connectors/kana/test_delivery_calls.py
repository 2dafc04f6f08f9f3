"""End to end: a real SDK -> ingest -> a real Celery worker -> the fake Kana over HTTP, for
each kind of call: identify, track, and track named by mapping rules.

Every test checks both sides: what the fake Kana stored (users, usage, the GraphQL operations
it received) and what Switchboard recorded (each delivery's status, reason, plan, attempts).
"""

from __future__ import annotations

from typing import Any

from segment.analytics.client import Client as SegmentClient

from destinations.connectors.kana.connector import NEEDS_USER_ID, UNMAPPED
from destinations.connectors.kana.rules import rule_move, rule_save
from destinations.models import (
    AttemptOutcome,
    Delivery,
    DeliveryStatus,
    Destination,
    Event,
    Job,
    JobStatus,
    MappingRule,
    Source,
)
from destinations.standins.kana import FakeKana
from tests.helpers.kana_deliveries import (
    built,
    composer,
    explain,
    finished,
    kana_delivery,
    outcomes,
    send_batch,
    sent,
)
from tests.helpers.worker import Worker, wait_until

# --- identify ----------------------------------------------------------------------------------


def test_identify_sends_only_kana_user_fields_and_updates_a_known_user(
    live_server: Any,
    source: Source,
    kana_destination: Destination,
    fake_kana: FakeKana,
    worker: Worker,
    sdk: SegmentClient,
) -> None:
    sdk.identify(
        "u-1",
        {
            "name": "Ada",
            "email": "ada@example.com",
            "billingUserId": "cus_Ada1",
            "plan": "pro",
            "company": {"name": "Initech"},
            "logins": 7,
        },
        message_id="identify-1",
    )
    # Segment's own example writes billingId: taken too (here a Chargebee customer id).
    sdk.identify(
        "u-2", {"name": "Grace", "billingId": "AzZTZgSs9sXh71Xo", "plan": "team"}, message_id="id-2"
    )
    # Neither an email nor another Stripe object's id is a customer id: not sent, and noted.
    sdk.identify(
        "u-3", {"email": "lin@example.com", "billingId": "lin@example.com"}, message_id="id-3"
    )
    sdk.identify("u-4", {"billingUserId": "sub_123"}, message_id="id-4")
    ids = ["identify-1", "id-2", "id-3", "id-4"]
    wait_until(finished(ids), 20, explain(worker, fake_kana))

    for message_id in ids:
        row = kana_delivery(message_id)
        assert (row.status, row.attempts, row.reason) == (DeliveryStatus.DELIVERED, 1, "")
        assert outcomes(row) == [AttemptOutcome.DELIVERED]
    assert kana_delivery("identify-1").plan == {}
    assert kana_delivery("id-2").plan == {}
    assert kana_delivery("id-3").plan == {
        "note": "billing id 'lin@example.com' is not a Stripe (cus_...) or Chargebee customer id"
    }
    assert kana_delivery("id-4").plan == {
        "note": "billing id 'sub_123' is not a Stripe (cus_...) or Chargebee customer id"
    }

    # Separate requests are separate tasks: compare as a set, not in order.
    creates = {v["input"]["id"]: v for v in sent(fake_kana, "createUser")}
    assert creates == {
        "u-1": {
            "input": {
                "id": "u-1",
                "name": "Ada",
                "email": "ada@example.com",
                "billingId": "cus_Ada1",
            }
        },
        "u-2": {"input": {"id": "u-2", "name": "Grace", "billingId": "AzZTZgSs9sXh71Xo"}},
        "u-3": {"input": {"id": "u-3", "email": "lin@example.com"}},
        "u-4": {"input": {"id": "u-4"}},
    }
    assert len(fake_kana.received) == 4
    assert {r.header("Authorization") for r in fake_kana.received} == {"prv_test"}
    assert {u.id: u.as_json() for u in fake_kana.users} == {
        "u-1": {
            "id": "u-1",
            "name": "Ada",
            "email": "ada@example.com",
            "billingId": "cus_Ada1",
            "metadata": None,
        },
        "u-2": {
            "id": "u-2",
            "name": "Grace",
            "email": None,
            "billingId": "AzZTZgSs9sXh71Xo",
            "metadata": None,
        },
        "u-3": {
            "id": "u-3",
            "name": None,
            "email": "lin@example.com",
            "billingId": None,
            "metadata": None,
        },
        "u-4": {"id": "u-4", "name": None, "email": None, "billingId": None, "metadata": None},
    }

    # Kana knows u-1 now: createUser conflicts and updateUser sends the name, the only field
    # Kana's API can change.
    fake_kana.clear()
    sdk.identify(
        "u-1",
        {"name": "Ada Lovelace", "email": "ada@lovelace.example", "billingUserId": "cus_Other"},
        message_id="identify-2",
    )
    wait_until(finished(["identify-2"]), 20, explain(worker, fake_kana))
    again = kana_delivery("identify-2")
    assert (again.status, again.attempts) == (DeliveryStatus.DELIVERED, 1)
    assert outcomes(again) == [AttemptOutcome.DELIVERED]
    # The fake answers a second createUser for an id with a CONFLICT error; only that makes
    # the connector fall back to updateUser.
    create, update = fake_kana.received
    assert create.operation == "createUser"
    assert create.variables["input"] == {
        "id": "u-1",
        "name": "Ada Lovelace",
        "email": "ada@lovelace.example",
        "billingId": "cus_Other",
    }
    assert update.operation == "updateUser"
    assert update.variables == {"id": "u-1", "input": {"name": "Ada Lovelace"}}
    user = fake_kana.user("u-1")
    assert user is not None
    assert (user.name, user.email, user.billing_id) == (
        "Ada Lovelace",
        "ada@example.com",
        "cus_Ada1",
    )


# --- track -------------------------------------------------------------------------------------


def test_track_records_usage_and_bad_calls_are_decided_at_ingest(
    live_server: Any,
    source: Source,
    kana_destination: Destination,
    fake_kana: FakeKana,
    worker: Worker,
    sdk: SegmentClient,
) -> None:
    fake_kana.add_feature("exports", "Exports")
    fake_kana.add_user("u-1")  # known to Kana already: no waiting for an identify
    sdk.track("u-1", "Report Exported", {"featureId": "exports", "delta": 3}, message_id="t-3")
    sdk.track("u-1", "Report Exported", {"featureId": "exports"}, message_id="t-default")
    sdk.track("u-1", "Report Exported", {"featureId": "exports", "delta": 1.5}, message_id="t-1.5")
    sdk.track("u-1", "Report Exported", {"featureId": "exports", "delta": "2"}, message_id="t-'2'")
    sdk.track(
        anonymous_id="anon-1",
        event="Report Exported",
        properties={"featureId": "exports"},
        message_id="t-anon",
    )
    sdk.page("u-1", "Docs", "Getting started", message_id="page-1")
    sdk.group("u-1", "acct-1", {"name": "Initech"}, message_id="group-1")

    # Decided at ingest, before any worker: final at once, never attempted.
    refused = {
        "t-1.5": (DeliveryStatus.FAILED, "properties.delta must be a whole number, got 1.5"),
        "t-'2'": (DeliveryStatus.FAILED, "properties.delta must be a whole number, got '2'"),
        "t-anon": (DeliveryStatus.SKIPPED, NEEDS_USER_ID),
    }
    for message_id, (status, reason) in refused.items():
        row = kana_delivery(message_id)
        assert (row.status, row.reason, row.attempts) == (status, reason, 0), message_id
        assert row.finished_at is not None
        assert outcomes(row) == []
    # Kana accepts identify and track only: page and group are stored, with no Kana delivery.
    assert Event.objects.filter(message_id__in=["page-1", "group-1"]).count() == 2
    assert not Delivery.objects.filter(event__message_id__in=["page-1", "group-1"]).exists()
    assert Delivery.objects.count() == 5

    wait_until(finished(["t-3", "t-default"]), 20, explain(worker, fake_kana))
    for message_id, delta in (("t-3", 3), ("t-default", 1)):
        row = kana_delivery(message_id)
        assert (row.status, row.attempts) == (DeliveryStatus.DELIVERED, 1)
        assert row.plan == {"featureId": "exports", "delta": delta}
        assert outcomes(row) == [AttemptOutcome.DELIVERED]
    assert fake_kana.usage("u-1", "exports") == 4
    assert sorted(e.delta for e in fake_kana.usage_events) == [1, 3]
    # Nothing for the refused calls ever reached Kana.
    assert sorted(sent(fake_kana, "recordUsage"), key=lambda v: v["input"]["delta"]) == [
        {"input": {"userId": "u-1", "featureId": "exports", "delta": 1}},
        {"input": {"userId": "u-1", "featureId": "exports", "delta": 3}},
    ]
    assert len(fake_kana.received) == 2


# --- mapping rules -----------------------------------------------------------------------------


def test_mapping_rules_saved_before_sending_decide_the_feature(
    live_server: Any,
    source: Source,
    kana_destination: Destination,
    fake_kana: FakeKana,
    worker: Worker,
) -> None:
    def rule(event_name: str, path: str, op: str, value: Any, feature: str) -> MappingRule:
        condition = {"path": path, "op": op, "value": value}
        if op == "exists":
            del condition["value"]
        saved, _ = rule_save(
            destination=kana_destination,
            event_name=event_name,
            conditions=[condition],
            feature_id=feature,
        )
        return saved

    # In this order: an invoice export matches the first two rules, and the first one wins.
    invoice = rule("Report Exported", "properties.object.name", "equals", "invoice", "invoices")
    other = rule("Report Exported", "properties.object.name", "not_equals", "memo", "exports")
    api = rule("", "properties.query", "contains", "api", "api-searches")
    seats = rule("Seat Added", "properties.seat.id", "exists", None, "seats")
    big = rule("Storage Used", "properties.gb", "gt", 10, "big-uploads")
    small = rule("Storage Used", "properties.gb", "lt", "1", "small-uploads")
    for feature in ("invoices", "exports", "api-searches", "seats", "big-uploads", "small-uploads"):
        fake_kana.add_feature(feature, feature.title())
    fake_kana.add_user("u-1")

    compose = composer(source)

    def track(message_id: str, event: str, properties: dict[str, Any]) -> dict[str, Any]:
        return built(compose.track("u-1", event, properties, message_id=message_id))

    expected: dict[str, tuple[MappingRule | None, dict[str, Any], str]] = {
        "invoice": (invoice, {"object": {"name": "invoice"}}, "Report Exported"),
        "csv": (other, {"object": {"name": "csv"}}, "Report Exported"),
        "memo": (None, {"object": {"name": "memo"}}, "Report Exported"),
        "api": (api, {"query": "public api docs"}, "Searched"),
        "pricing": (None, {"query": "pricing"}, "Searched"),
        "seat": (seats, {"seat": {"id": "s-1"}}, "Seat Added"),
        "no-seat": (None, {"seat": {"name": "s-1"}}, "Seat Added"),
        "big": (big, {"gb": 25, "delta": 2}, "Storage Used"),
        "small": (small, {"gb": 0.5}, "Storage Used"),
        "middling": (None, {"gb": 5}, "Storage Used"),
    }
    send_batch(
        source,
        live_server,
        [track(mid, event, properties) for mid, (_, properties, event) in expected.items()],
    )
    # Order decides, also after a move: the not-equals rule now comes first.
    rule_move(other, up=True)
    send_batch(
        source,
        live_server,
        [track("invoice-after-move", "Report Exported", {"object": {"name": "invoice"}})],
    )
    expected["invoice-after-move"] = (other, {}, "Report Exported")

    wait_until(finished(expected), 30, explain(worker, fake_kana))
    for message_id, (matched, properties, _) in expected.items():
        row = kana_delivery(message_id)
        if matched is None:
            assert (row.status, row.reason, row.attempts) == (
                DeliveryStatus.SKIPPED,
                UNMAPPED,
                0,
            ), message_id
            assert row.mapping_rule_id is None
            continue
        assert (row.status, row.attempts) == (DeliveryStatus.DELIVERED, 1), message_id
        plan = {"featureId": matched.feature_id, "ruleId": matched.pk}
        assert row.plan == {**plan, "delta": properties.get("delta", 1)}, message_id
        assert row.mapping_rule_id == matched.pk
    # The csv export, then the invoice export after the move, count as "exports".
    assert sorted((e.user_id, e.feature_id, e.delta) for e in fake_kana.usage_events) == [
        ("u-1", "api-searches", 1),
        ("u-1", "big-uploads", 2),
        ("u-1", "exports", 1),
        ("u-1", "exports", 1),
        ("u-1", "invoices", 1),
        ("u-1", "seats", 1),
        ("u-1", "small-uploads", 1),
    ]
    assert len(fake_kana.operations_received("recordUsage")) == 7

    # Each save started a reprocessing job; nothing was stored before the rules, so nothing
    # unmapped then matched them.
    wait_until(lambda: all(j.status == JobStatus.DONE for j in Job.objects.all()), 20)
    assert [j.counters["matched"] for j in Job.objects.order_by("id")] == [0] * 6
