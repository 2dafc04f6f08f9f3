"""End to end: a real SDK -> ingest -> a real Celery worker -> the fake Kana over HTTP.

Every test checks both sides: what the fake Kana stored (users, usage, the GraphQL operations
it received) and what Switchboard recorded (each delivery's status, reason, plan, attempts).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from segment.analytics.client import Client as SegmentClient
from segment.analytics.request import post as sdk_post

from destinations.connectors.kana import NEEDS_USER_ID, UNMAPPED
from destinations.delivery.services import (
    destination_create,
    destination_resume,
    destination_set_enabled,
)
from destinations.ingest.message import Message, validate_message
from destinations.ingest.store import store_messages
from destinations.mapping.services import rule_move, rule_save
from destinations.mapping.unmapped import SCAN_CHUNK, unmapped_deliveries
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
from tests.helpers.worker import TEST_DELIVERY_ENV, Worker, wait_until

FINISHED = (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED)
WRONG_KEY = "prv_wrong_key"

# A request that timed out may have been carried out: a retried createUser then conflicts, a
# retried recordUsage counts twice (Kana has no idempotency key). That is delivery's
# at-least-once, not what these tests check, so a busy machine must not cause it: the workers
# wait longer for an answer than TEST_DELIVERY_ENV's 2 s.
PATIENT = {"DELIVERY_TIMEOUT_SECONDS": "10"}
# For the tests sending hundreds of usage events at once, also one request at a time per task:
# the fake Kana is a small threaded server whose listen backlog (socketserver's default, 5)
# resets connections when dozens arrive together.
STEADY_DELIVERY = {**PATIENT, "DELIVERY_CONCURRENCY": "1"}

StartWorker = Callable[..., Worker]


# --- sending through the SDK -------------------------------------------------------------------


def sdk(source: Source, live_server: Any) -> SegmentClient:
    """The SDK as an app embeds it; sync mode sends each call at once and raises unless 200."""
    return SegmentClient(source.write_key, host=live_server.url, sync_mode=True, max_retries=0)


def composer(source: Source) -> SegmentClient:
    """The SDK with sending off: each call returns the message it would send, so several can
    go out in ONE batch request, which sync mode never does."""
    return SegmentClient(source.write_key, send=False)


def built(result: tuple[bool, dict[str, Any]]) -> dict[str, Any]:
    queued, msg = result
    assert queued
    return msg


def send_batch(source: Source, live_server: Any, batch: list[dict[str, Any]]) -> None:
    """POST /v1/batch with the SDK's own request code; it raises unless ingest answers 200."""
    sdk_post(source.write_key, live_server.url, timeout=15, batch=batch)


# --- reading the outcome -----------------------------------------------------------------------


def kana_delivery(message_id: str) -> Delivery:
    return Delivery.objects.select_related("event").get(
        event__message_id=message_id, destination__kind="kana"
    )


def finished(message_ids: Iterable[str]) -> Callable[[], bool]:
    ids = list(message_ids)

    def check() -> bool:
        done = Delivery.objects.filter(
            event__message_id__in=ids, destination__kind="kana", status__in=FINISHED
        )
        return done.count() == len(ids)

    return check


def job_done(job: Job) -> Callable[[], bool]:
    return lambda: Job.objects.get(pk=job.pk).status == JobStatus.DONE


def outcomes(delivery: Delivery) -> list[str]:
    return [attempt.outcome for attempt in delivery.attempt_log.all()]


def sent(fake: FakeKana, operation: str) -> list[dict[str, Any]]:
    """The variables of every ``operation`` request the fake received, oldest first."""
    return [request.variables for request in fake.operations_received(operation)]


def explain(worker: Worker, fake: FakeKana) -> Callable[[], str]:
    """What a timed-out wait prints: the rows, the jobs, the fake's requests, the worker log."""

    def describe() -> str:
        unsettled = Delivery.objects.exclude(
            status__in=(DeliveryStatus.DELIVERED, DeliveryStatus.SKIPPED)
        )
        rows = "\n  ".join(
            f"{d.event.message_id} ({d.event.user_id}): {d.status} attempts={d.attempts} "
            f"plan={d.plan} reason={d.reason!r}"
            for d in unsettled.select_related("event").order_by("id")[:40]
        )
        statuses = dict(Counter(Delivery.objects.values_list("status", flat=True)))
        jobs = "\n  ".join(f"job {j.pk}: {j.status} {j.counters}" for j in Job.objects.all())
        seen = "\n  ".join(r.summary() for r in fake.received[-40:])
        return (
            f"deliveries {statuses}:\n  {rows}\njobs:\n  {jobs}\nfake Kana received:\n  {seen}\n"
            f"{worker.describe()}"
        )

    return describe


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def start_worker(transactional_db: None, settings: Any) -> Iterator[StartWorker]:
    """Start workers with TEST_DELIVERY_ENV plus overrides, all stopped at the end. This
    process gets the same DELIVERY_* values: ingest here computes each row's first attempt."""
    for name, value in TEST_DELIVERY_ENV.items():
        setattr(settings, name, float(value) if "." in value else int(value))
    started: list[Worker] = []

    def start(**env: str) -> Worker:
        worker = Worker(env=env)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def worker(start_worker: StartWorker) -> Worker:
    """This module's worker: the shared fixture's, with PATIENT timeouts."""
    return start_worker(**PATIENT)


def crash(worker: Worker) -> None:
    """SIGKILL the worker and the beat process it forked, as when the machine dies. Killing the
    worker alone would leave its beat orphaned, still sending sweeps after the test."""
    assert worker.process is not None
    tasks = Path(f"/proc/{worker.process.pid}/task")
    children = [int(pid) for f in tasks.glob("*/children") for pid in f.read_text().split()]
    worker.kill()
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# --- identify ----------------------------------------------------------------------------------


def test_identify_sends_only_kana_user_fields_and_updates_a_known_user(
    live_server: Any,
    source: Source,
    kana_destination: Destination,
    fake_kana: FakeKana,
    worker: Worker,
) -> None:
    client = sdk(source, live_server)
    client.identify(
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
    client.identify(
        "u-2", {"name": "Grace", "billingId": "AzZTZgSs9sXh71Xo", "plan": "team"}, message_id="id-2"
    )
    # Neither an email nor another Stripe object's id is a customer id: not sent, and noted.
    client.identify(
        "u-3", {"email": "lin@example.com", "billingId": "lin@example.com"}, message_id="id-3"
    )
    client.identify("u-4", {"billingUserId": "sub_123"}, message_id="id-4")
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
    client.identify(
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
) -> None:
    fake_kana.add_feature("exports", "Exports")
    fake_kana.add_user("u-1")  # known to Kana already: no waiting for an identify
    client = sdk(source, live_server)
    client.track("u-1", "Report Exported", {"featureId": "exports", "delta": 3}, message_id="t-3")
    client.track("u-1", "Report Exported", {"featureId": "exports"}, message_id="t-default")
    client.track(
        "u-1", "Report Exported", {"featureId": "exports", "delta": 1.5}, message_id="t-1.5"
    )
    client.track(
        "u-1", "Report Exported", {"featureId": "exports", "delta": "2"}, message_id="t-'2'"
    )
    client.track(
        anonymous_id="anon-1",
        event="Report Exported",
        properties={"featureId": "exports"},
        message_id="t-anon",
    )
    client.page("u-1", "Docs", "Getting started", message_id="page-1")
    client.group("u-1", "acct-1", {"name": "Initech"}, message_id="group-1")

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


# --- the user before the usage -----------------------------------------------------------------


def identify_then_track(source: Source) -> list[dict[str, Any]]:
    compose = composer(source)
    return [
        built(
            compose.identify(
                "u-new",
                {"name": "Nia", "email": "nia@example.com", "billingUserId": "cus_Nia1"},
                message_id="new-identify",
            )
        ),
        built(
            compose.track(
                "u-new",
                "Report Exported",
                {"featureId": "exports", "delta": 2},
                message_id="new-track",
            )
        ),
    ]


def test_identify_and_track_in_one_batch_leave_a_full_user_and_usage_once(
    live_server: Any,
    source: Source,
    kana_destination: Destination,
    fake_kana: FakeKana,
    worker: Worker,
) -> None:
    fake_kana.add_feature("exports", "Exports")
    send_batch(source, live_server, identify_then_track(source))
    wait_until(finished(["new-identify", "new-track"]), 20, explain(worker, fake_kana))

    assert kana_delivery("new-identify").status == DeliveryStatus.DELIVERED
    assert kana_delivery("new-track").status == DeliveryStatus.DELIVERED
    user = fake_kana.user("u-new")
    assert user is not None
    # The identify's user, not a bare one made for the usage.
    assert user.as_json() == {
        "id": "u-new",
        "name": "Nia",
        "email": "nia@example.com",
        "billingId": "cus_Nia1",
        "metadata": None,
    }
    assert sent(fake_kana, "createUser") == [
        {
            "input": {
                "id": "u-new",
                "name": "Nia",
                "email": "nia@example.com",
                "billingId": "cus_Nia1",
            }
        }
    ]
    assert fake_kana.usage("u-new", "exports") == 2
    assert len(fake_kana.usage_events) == 1


def test_a_users_identify_is_sent_before_its_usage_in_the_same_task(
    live_server: Any,
    source: Source,
    kana_destination: Destination,
    fake_kana: FakeKana,
    worker: Worker,
) -> None:
    fake_kana.add_feature("exports", "Exports")
    # A slow createUser (well under the client timeout) makes any overtaking certain rather
    # than left to thread timing: in the user's lane the usage waits for it.
    fake_kana.hang(0.8, times=1, operation="createUser")
    send_batch(source, live_server, identify_then_track(source))
    wait_until(finished(["new-identify", "new-track"]), 20, explain(worker, fake_kana))

    assert kana_delivery("new-identify").status == DeliveryStatus.DELIVERED
    track = kana_delivery("new-track")
    assert track.status == DeliveryStatus.DELIVERED
    assert fake_kana.usage("u-new", "exports") == 2
    # Usage reached Kana only once the user existed: one recordUsage, on the first attempt.
    assert len(fake_kana.operations_received("recordUsage")) == 1, [
        r.summary() for r in fake_kana.received
    ]
    assert outcomes(track) == [AttemptOutcome.DELIVERED]


def test_usage_for_a_user_kana_never_hears_of_creates_the_user_and_is_kept(
    live_server: Any,
    source: Source,
    kana_destination: Destination,
    fake_kana: FakeKana,
    worker: Worker,
) -> None:
    fake_kana.add_feature("exports", "Exports")
    sdk(source, live_server).track(
        "u-ghost", "Report Exported", {"featureId": "exports"}, message_id="ghost"
    )
    wait_until(finished(["ghost"]), 20, explain(worker, fake_kana))

    row = kana_delivery("ghost")
    assert (row.status, row.attempts) == (DeliveryStatus.DELIVERED, 3)
    waited, waited_again, delivered = row.attempt_log.all()
    # Two attempts wait for an identify that may still be on its way ...
    for attempt in (waited, waited_again):
        assert attempt.outcome == AttemptOutcome.RETRY
        assert attempt.error == "Kana does not know the user yet: User u-ghost not found"
    # ... then the user is created from what the event says (an id only), and usage recorded.
    assert delivered.outcome == AttemptOutcome.DELIVERED
    assert [r.operation for r in fake_kana.received] == [
        "recordUsage",
        "recordUsage",
        "recordUsage",
        "createUser",
        "recordUsage",
    ]
    assert sent(fake_kana, "createUser") == [{"input": {"id": "u-ghost"}}]
    user = fake_kana.user("u-ghost")
    assert user is not None
    assert user.as_json() == {
        "id": "u-ghost",
        "name": None,
        "email": None,
        "billingId": None,
        "metadata": None,
    }
    assert fake_kana.usage("u-ghost", "exports") == 1
    assert len(fake_kana.usage_events) == 1


# --- GraphQL errors ----------------------------------------------------------------------------


def test_graphql_errors_are_retried_or_failed_by_their_code(
    live_server: Any,
    source: Source,
    kana_destination: Destination,
    fake_kana: FakeKana,
    worker: Worker,
) -> None:
    fake_kana.add_feature("exports", "Exports")
    fake_kana.add_user("u-1")
    client = sdk(source, live_server)
    describe = explain(worker, fake_kana)

    # Kana answers HTTP 200 with an errors array: INTERNAL_SERVER_ERROR is worth a retry.
    fake_kana.graphql_error("Try again later", "INTERNAL_SERVER_ERROR", times=1)
    client.track("u-1", "Report Exported", {"featureId": "exports"}, message_id="transient")
    wait_until(finished(["transient"]), 20, describe)
    row = kana_delivery("transient")
    assert (row.status, row.attempts, row.reason) == (DeliveryStatus.DELIVERED, 2, "")
    first, second = row.attempt_log.all()
    assert first.outcome == AttemptOutcome.RETRY
    assert first.status_code == 200
    assert first.error == "Kana refused recordUsage: Try again later"
    assert first.response is not None and '"INTERNAL_SERVER_ERROR"' in first.response["body"]
    assert second.outcome == AttemptOutcome.DELIVERED
    assert [r.fault for r in fake_kana.received] == ["graphql_error INTERNAL_SERVER_ERROR", None]
    assert fake_kana.usage("u-1", "exports") == 1

    # BAD_USER_INPUT will not get better: failed at once, with Kana's own words.
    fake_kana.graphql_error("Feature exports is archived", "BAD_USER_INPUT", times=1)
    client.track("u-1", "Report Exported", {"featureId": "exports"}, message_id="refused")
    wait_until(finished(["refused"]), 20, describe)
    row = kana_delivery("refused")
    assert (row.status, row.attempts) == (DeliveryStatus.FAILED, 1)
    assert row.reason == "Kana refused recordUsage: Feature exports is archived"
    assert outcomes(row) == [AttemptOutcome.FAILED]

    # A delta beyond Kana's 32-bit Int is refused at ingest, naming the value: never sent.
    client.track(
        "u-1", "Report Exported", {"featureId": "exports", "delta": 2**31}, message_id="huge"
    )
    wait_until(finished(["huge"]), 20, describe)
    row = kana_delivery("huge")
    assert (row.status, row.attempts) == (DeliveryStatus.FAILED, 0)
    assert row.reason == "properties.delta 2147483648 is outside Kana's range (32-bit)"

    # A feature Kana does not have: refused for good, in Kana's words.
    client.track("u-1", "Report Exported", {"featureId": "archived-reports"}, message_id="gone")
    wait_until(finished(["gone"]), 20, describe)
    row = kana_delivery("gone")
    assert (row.status, row.attempts) == (DeliveryStatus.FAILED, 1)
    assert row.reason == "Kana refused recordUsage: Feature archived-reports not found"

    assert fake_kana.usage("u-1", "exports") == 1
    assert len(fake_kana.usage_events) == 1
    # The too-large delta never left: four usage calls reached Kana.
    assert len(fake_kana.operations_received("recordUsage")) == 4

    # A wrong key fails every call at once (a destination of its own; the good one is off).
    destination_set_enabled(kana_destination, False)
    destination_create(
        kind="kana",
        name="Kana with a wrong key",
        settings_values={"api_url": fake_kana.base_url},
        secret_values={"api_key": WRONG_KEY},
    )
    fake_kana.clear()
    client.identify("u-2", {"name": "Grace"}, message_id="key-identify")
    client.track("u-1", "Report Exported", {"featureId": "exports"}, message_id="key-track")
    wait_until(finished(["key-identify", "key-track"]), 20, describe)
    for message_id in ("key-identify", "key-track"):
        row = kana_delivery(message_id)
        assert row.destination.name == "Kana with a wrong key"
        assert (row.status, row.attempts) == (DeliveryStatus.FAILED, 1), message_id
        assert row.reason == "Kana refused the API key: Unauthorized"
        [attempt] = row.attempt_log.all()
        assert attempt.outcome == AttemptOutcome.FAILED
        # The key went as it is, and the stored sample does not keep it.
        assert attempt.request is not None
        assert attempt.request["headers"]["Authorization"] == "••••_key"
    assert {r.header("Authorization") for r in fake_kana.received} == {WRONG_KEY}
    assert sorted(r.operation or "" for r in fake_kana.received) == ["createUser", "recordUsage"]
    assert fake_kana.user("u-2") is None
    assert len(fake_kana.usage_events) == 1


def test_usage_of_a_missing_feature_fails_at_once_whatever_its_name(
    live_server: Any,
    source: Source,
    kana_destination: Destination,
    fake_kana: FakeKana,
    worker: Worker,
) -> None:
    # The user exists; the "users" feature (a seat count) does not. Kana's answer mentions
    # "users" and "not found", yet it is not about an unknown user: no waiting, no createUser.
    fake_kana.add_user("u-1")
    sdk(source, live_server).track(
        "u-1", "Member Invited", {"featureId": "users"}, message_id="seats"
    )
    wait_until(finished(["seats"]), 20, explain(worker, fake_kana))
    row = kana_delivery("seats")
    assert (row.status, row.attempts) == (DeliveryStatus.FAILED, 1)
    assert row.reason == "Kana refused recordUsage: Feature users not found"
    assert outcomes(row) == [AttemptOutcome.FAILED]
    assert [r.operation for r in fake_kana.received] == ["recordUsage"]
    assert fake_kana.usage_events == []


# --- retroactive reprocessing ------------------------------------------------------------------

EXPORTS_RULE: dict[str, Any] = {
    "event_name": "Report Exported",
    "conditions": [{"path": "properties.object.name", "op": "equals", "value": "invoice"}],
    "feature_id": "invoices",
}


def test_a_new_rule_delivers_stored_unmapped_events_once(
    live_server: Any,
    source: Source,
    kana_destination: Destination,
    fake_kana: FakeKana,
    start_worker: StartWorker,
) -> None:
    worker = start_worker(**STEADY_DELIVERY)
    users = [f"u-{n}" for n in range(5)]
    fake_kana.add_feature("invoices", "Invoices")
    for user in users:
        fake_kana.add_user(user)
    compose = composer(source)
    expected: Counter[str] = Counter()
    events = []
    for n in range(300):
        user, invoice = users[n % 5], n % 3 == 0
        expected[user] += invoice
        name = "invoice" if invoice else "memo"
        properties = {"object": {"name": name}}
        events.append(built(compose.track(user, "Report Exported", properties, message_id=f"e{n}")))
    for start in range(0, len(events), 100):
        send_batch(source, live_server, events[start : start + 100])
    assert unmapped_deliveries(kana_destination).count() == 300
    matched = sum(expected.values())
    assert matched == 100

    rule, job = rule_save(destination=kana_destination, **EXPORTS_RULE)
    # The job's scope (its total, counted when the rule is saved) is the unmapped rows the
    # rule could match: all 300 exports, or fewer where the database narrows by the values.
    assert job is not None and matched <= job.total <= 300
    describe = explain(worker, fake_kana)
    wait_until(job_done(job), 30, describe)
    by_rule = Delivery.objects.filter(mapping_rule=rule)
    wait_until(
        lambda: by_rule.filter(status=DeliveryStatus.DELIVERED).count() == matched, 30, describe
    )

    job.refresh_from_db()
    assert (job.counters["scanned"], job.counters["matched"]) == (job.total, matched)
    assert by_rule.count() == matched
    assert set(by_rule.values_list("attempts", flat=True)) == {1}
    assert {tuple(sorted(d.plan.items())) for d in by_rule} == {
        (("delta", 1), ("featureId", "invoices"), ("ruleId", rule.pk))
    }
    assert unmapped_deliveries(kana_destination).count() == 300 - matched
    assert {u: fake_kana.usage(u, "invoices") for u in users} == dict(expected)
    assert len(fake_kana.usage_events) == matched
    assert len(fake_kana.operations_received("recordUsage")) == matched

    # Saving the rule again starts another job: every event it matches is already mapped.
    _, again = rule_save(destination=kana_destination, rule=rule, **EXPORTS_RULE)
    assert again is not None
    wait_until(job_done(again), 30, describe)
    again.refresh_from_db()
    assert (again.counters["scanned"], again.counters["matched"]) == (again.total, 0)
    assert by_rule.count() == matched
    assert len(fake_kana.operations_received("recordUsage")) == matched


def store_unmapped_exports(source: Source, count: int, users: list[str]) -> Counter[str]:
    """Store ``count`` unmapped exports the way ingest does, without HTTP (fast enough for
    thousands); every 23rd is an invoice. Returns the invoices per user, counted here rather
    than by the app's condition code."""
    now = timezone.now()
    invoices: Counter[str] = Counter()
    pending: list[Message] = []
    for n in range(count):
        user, invoice = users[n % len(users)], n % 23 == 0
        invoices[user] += invoice
        item = {
            "type": "track",
            "userId": user,
            "event": "Report Exported",
            "messageId": f"bulk-{n}",
            "properties": {"object": {"name": "invoice" if invoice else "memo"}, "rows": n},
        }
        pending.append(validate_message(item, call_type=None, received_at=now))
        if len(pending) == 2000 or n == count - 1:
            store_messages(source_id=source.pk, messages=pending, received_at=now)
            pending = []
    return invoices


def test_reprocessing_killed_midway_resumes_and_counts_each_event_once(
    source: Source,
    kana_destination: Destination,
    fake_kana: FakeKana,
    start_worker: StartWorker,
) -> None:
    users = [f"u-{n}" for n in range(10)]
    fake_kana.add_feature("invoices", "Invoices")
    for user in users:
        fake_kana.add_user(user)
    # More than one scan chunk, so the worker can die with a chunk committed and more to go.
    total = 4 * SCAN_CHUNK
    expected = store_unmapped_exports(source, total, users)
    matched = sum(expected.values())
    scope = unmapped_deliveries(kana_destination).order_by("id")
    assert scope.count() == total
    first_chunk_end = scope.values_list("id", flat=True)[SCAN_CHUNK - 1]
    # Kana's recordUsage has no idempotency key: a worker killed during a send can record that
    # usage twice when the delivery is retried. That is delivery's at-least-once, not this
    # job's; hold sending (the destination is paused) so only the job is tested here.
    Destination.objects.filter(pk=kana_destination.pk).update(
        paused_at=timezone.now(), paused_reason="held while the job is killed"
    )

    first = start_worker()
    # "contains" is checked in Python on every row, never narrowed in SQL: the job walks all
    # the unmapped rows, chunk by chunk, on both backends.
    rule, job = rule_save(
        destination=kana_destination,
        event_name="Report Exported",
        conditions=[{"path": "properties.object.name", "op": "contains", "value": "invoice"}],
        feature_id="invoices",
    )
    assert job is not None and job.total == total

    def midway() -> Job | None:
        current = Job.objects.get(pk=job.pk)
        cursor = current.counters.get("cursor", 0)
        return (
            current if current.status == JobStatus.RUNNING and cursor >= first_chunk_end else None
        )

    wait_until(midway, 60, first.describe)
    crash(first)
    killed = Job.objects.get(pk=job.pk)
    assert killed.status == JobStatus.RUNNING
    assert killed.counters["cursor"] >= first_chunk_end

    # The sweeper of a new worker finds the job's heartbeat stale and queues it again.
    # The stale age must exceed the job's longest silence (the wait of up to 2.5 s between its
    # passes, or one chunk on a busy machine): with less, the sweeper would also re-queue the
    # live job, and it would run twice at once.
    second = start_worker(JOB_STALE_SECONDS="5", **STEADY_DELIVERY)
    describe = explain(second, fake_kana)
    wait_until(job_done(job), 60, describe)
    job.refresh_from_db()
    # Resumed from its cursor: every unmapped row scanned once (a restart from the beginning
    # would scan the rows still unmapped again), and each match counted once.
    assert job.counters["scanned"] == total
    assert job.counters["matched"] == matched
    by_rule = Delivery.objects.filter(mapping_rule=rule)
    assert by_rule.count() == matched
    assert set(by_rule.values_list("status", flat=True)) == {DeliveryStatus.PENDING}
    assert unmapped_deliveries(kana_destination).count() == total - matched
    assert fake_kana.received == []

    destination_resume(kana_destination)
    delivered = by_rule.filter(status=DeliveryStatus.DELIVERED)
    wait_until(lambda: delivered.count() == matched, 60, describe)
    assert set(by_rule.values_list("attempts", flat=True)) == {1}
    assert {u: fake_kana.usage(u, "invoices") for u in users} == dict(expected)
    assert len(fake_kana.usage_events) == matched
    assert len(fake_kana.operations_received("recordUsage")) == matched
