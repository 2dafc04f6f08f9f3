"""End to end to the fake Kana: a user is created before its usage is recorded (in one batch,
one task, or when Kana never heard of the user), and GraphQL errors are retried or failed by
their code.
"""

from __future__ import annotations

from typing import Any

from segment.analytics.client import Client as SegmentClient

from destinations.delivery.services import destination_create, destination_set_enabled
from destinations.models import AttemptOutcome, DeliveryStatus, Destination, Source
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

WRONG_KEY = "prv_wrong_key"


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
    sdk: SegmentClient,
) -> None:
    fake_kana.add_feature("exports", "Exports")
    sdk.track("u-ghost", "Report Exported", {"featureId": "exports"}, message_id="ghost")
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
    sdk: SegmentClient,
) -> None:
    fake_kana.add_feature("exports", "Exports")
    fake_kana.add_user("u-1")
    describe = explain(worker, fake_kana)

    # Kana answers HTTP 200 with an errors array: INTERNAL_SERVER_ERROR is worth a retry.
    fake_kana.graphql_error("Try again later", "INTERNAL_SERVER_ERROR", times=1)
    sdk.track("u-1", "Report Exported", {"featureId": "exports"}, message_id="transient")
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
    sdk.track("u-1", "Report Exported", {"featureId": "exports"}, message_id="refused")
    wait_until(finished(["refused"]), 20, describe)
    row = kana_delivery("refused")
    assert (row.status, row.attempts) == (DeliveryStatus.FAILED, 1)
    assert row.reason == "Kana refused recordUsage: Feature exports is archived"
    assert outcomes(row) == [AttemptOutcome.FAILED]

    # A delta beyond Kana's 32-bit Int is refused at ingest, naming the value: never sent.
    sdk.track("u-1", "Report Exported", {"featureId": "exports", "delta": 2**31}, message_id="huge")
    wait_until(finished(["huge"]), 20, describe)
    row = kana_delivery("huge")
    assert (row.status, row.attempts) == (DeliveryStatus.FAILED, 0)
    assert row.reason == "properties.delta 2147483648 is outside Kana's range (32-bit)"

    # A feature Kana does not have: refused for good, in Kana's words.
    sdk.track("u-1", "Report Exported", {"featureId": "archived-reports"}, message_id="gone")
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
    sdk.identify("u-2", {"name": "Grace"}, message_id="key-identify")
    sdk.track("u-1", "Report Exported", {"featureId": "exports"}, message_id="key-track")
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
    sdk: SegmentClient,
) -> None:
    # The user exists; the "users" feature (a seat count) does not. Kana's answer mentions
    # "users" and "not found", yet it is not about an unknown user: no waiting, no createUser.
    fake_kana.add_user("u-1")
    sdk.track("u-1", "Member Invited", {"featureId": "users"}, message_id="seats")
    wait_until(finished(["seats"]), 20, explain(worker, fake_kana))
    row = kana_delivery("seats")
    assert (row.status, row.attempts) == (DeliveryStatus.FAILED, 1)
    assert row.reason == "Kana refused recordUsage: Feature users not found"
    assert outcomes(row) == [AttemptOutcome.FAILED]
    assert [r.operation for r in fake_kana.received] == ["recordUsage"]
    assert fake_kana.usage_events == []
