"""Refiner posting to us: a receiver checks its token, turns a completed survey into a user
update and an event (once), refuses bad payloads clearly and ignores other triggers."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from destinations.connectors.refiner.receivers import receiver_create, receiver_rotate
from destinations.models import (
    CallOutcome,
    Event,
    Profile,
    RefinerCall,
    RefinerReceiver,
    RefinerTrigger,
)
from destinations.standins.refiner import sample_webhook_payload
from tests.helpers.refiner_hooks import hook

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver() -> tuple[RefinerReceiver, str]:
    return receiver_create(name="NPS", trigger=RefinerTrigger.SURVEY_COMPLETED)


def test_token_checks(client: Client, receiver: tuple[RefinerReceiver, str]) -> None:
    inbox, token = receiver
    payload = sample_webhook_payload()
    assert hook(client, inbox, payload, None).status_code == 401
    wrong = hook(client, inbox, payload, "rwh_wrong")
    assert (wrong.status_code, wrong.json()["error"]) == (401, "Wrong Secret Auth-Token")
    assert hook(client, inbox, payload, token).status_code == 200
    new = receiver_rotate(inbox)
    assert hook(client, inbox, {**payload, "response": {**payload["response"], "uuid": "r2"}},
                token).status_code == 401  # fmt: skip
    assert hook(client, inbox, payload, new).json()["outcome"] == CallOutcome.DUPLICATE
    outcomes = list(RefinerCall.objects.order_by("id").values_list("outcome", "status_code"))
    assert outcomes == [
        ("refused", 401), ("refused", 401), ("accepted", 200), ("refused", 401), ("duplicate", 200),
    ]  # fmt: skip
    assert token not in str(list(RefinerCall.objects.values_list("detail", "excerpt")))


def test_survey_completed_updates_the_user_and_becomes_an_event(
    client: Client, receiver: tuple[RefinerReceiver, str]
) -> None:
    inbox, token = receiver
    payload = sample_webhook_payload()
    response = hook(client, inbox, payload, token)
    assert response.status_code == 200, response.content
    profile = Profile.objects.get(user_id=payload["remote_id"])
    assert profile.traits["nps"] == payload["attributes"]["nps"]
    assert profile.traits["refiner_answers"] == {
        payload["form"]["name"]: payload["response"]["data"]
    }
    event = Event.objects.get(event="Survey Completed")
    assert event.user_id == payload["remote_id"]
    assert event.profile_id == profile.pk
    assert event.payload["properties"]["score"] == payload["response"]["data"]["score"]
    assert event.payload["properties"]["form_name"] == payload["form"]["name"]
    assert event.payload["integrations"] == {"Refiner": False}
    call = RefinerCall.objects.get()
    assert (call.outcome, call.event_id) == (CallOutcome.ACCEPTED, event.pk)
    # Refiner sends it again: stored once.
    assert hook(client, inbox, payload, token).json()["outcome"] == "duplicate"
    assert Event.objects.filter(event="Survey Completed").count() == 1


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "Invalid JSON"),
        (b"[1]", 422, "Body must be a JSON object"),
        ({"remote_id": "u"}, 422, "triggered_event is missing"),
        ({"triggered_event": "Survey Completed"}, 422, "neither remote_id nor email"),
        ({"triggered_event": "Survey Completed", "remote_id": "u", "response": {}}, 422,
         "response.data (the answers) is missing"),
        ({"triggered_event": "Survey Completed", "remote_id": "u", "form": "NPS"}, 422,
         "form must be an object"),
    ],
)  # fmt: skip
def test_bad_payloads_get_a_clear_error(
    client: Client,
    receiver: tuple[RefinerReceiver, str],
    body: bytes | dict[str, Any],
    status: int,
    message: str,
) -> None:
    inbox, token = receiver
    response = hook(client, inbox, body, token)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert RefinerCall.objects.get().outcome == CallOutcome.REFUSED
    assert not Event.objects.exists()


def test_other_triggers_are_ignored_by_a_survey_receiver(
    client: Client, receiver: tuple[RefinerReceiver, str]
) -> None:
    inbox, token = receiver
    payload = sample_webhook_payload(triggered_event="Saw Survey")
    for _ in range(2):
        assert hook(client, inbox, payload, token).json()["outcome"] == "ignored"
    assert not Event.objects.exists()
