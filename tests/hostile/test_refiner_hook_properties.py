"""Refiner webhook receivers under generated bodies and methods: every call is accepted or
refused with a reason, and none breaks the call."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from hypothesis import example, given
from hypothesis import strategies as st

from destinations.connectors.refiner.receivers import receiver_create
from destinations.models import CallOutcome, RefinerCall, RefinerReceiver
from tests.hostile import strategies as gen
from tests.hostile.conftest import record

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver() -> tuple[RefinerReceiver, str]:
    return receiver_create(name="Any", trigger="any")


def call(client: Client, receiver: RefinerReceiver, body: bytes, **meta: Any) -> Any:
    method = meta.pop("method", "POST")
    response = client.generic(
        method,
        f"/hooks/refiner/{receiver.public_id}",
        data=body,
        content_type="application/json",
        **meta,
    )
    record(response, "/hooks")
    return response


@given(body=gen.refiner_bodies())
@example(
    body={
        "triggered_event": "Survey Completed",
        "remote_id": "r-1",
        "attributes": {"refiner_answers": 5},
        "response": {"uuid": "answers-number", "data": {"score": 9}},
    }
)
@example(
    body={
        "triggered_event": "Survey Completed",
        "remote_id": "r-1",
        "attributes": {"refiner_answers": "text"},
        "response": {"uuid": "answers-text", "data": {"score": 9}},
    }
)
@example(body={"triggered_event": "Entered Segment", "remote_id": "r-1", "segments": 7})
@example(body={"triggered_event": "Entered Segment", "remote_id": "r-1", "segments": "all"})
@example(body={"triggered_event": "Saw Survey", "remote_id": {"id": 1}})
@example(body={"triggered_event": "Saw Survey", "email": "\\u0000@x"})
def test_any_body_is_accepted_or_refused_with_a_reason(
    client: Client, receiver: tuple[RefinerReceiver, str], body: Any
) -> None:
    hook, token = receiver
    before = RefinerCall.objects.filter(receiver=hook).count()
    response = call(client, hook, json.dumps(body).encode(), HTTP_AUTHORIZATION=f"Bearer {token}")
    data = response.json()
    logged = RefinerCall.objects.filter(receiver=hook).order_by("-id").first()
    assert RefinerCall.objects.filter(receiver=hook).count() == before + 1
    assert logged is not None
    if response.status_code == 200:
        assert data["success"] is True
        assert logged.outcome in (CallOutcome.ACCEPTED, CallOutcome.DUPLICATE, CallOutcome.IGNORED)
    else:
        assert response.status_code in (400, 413, 422), data
        assert data["error"]
        assert logged.outcome == CallOutcome.REFUSED
        assert logged.detail == data["error"]


@given(
    method=st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
    authorization=gen.authorization_headers,
    body=gen.raw_bodies,
)
def test_any_method_header_or_body_gets_an_answer_that_names_the_problem(
    client: Client,
    receiver: tuple[RefinerReceiver, str],
    method: str,
    authorization: str,
    body: bytes,
) -> None:
    hook, _token = receiver
    response = call(client, hook, body, method=method, HTTP_AUTHORIZATION=authorization)
    assert response.status_code == 405
    if method != "HEAD":
        assert "Use POST" in response.json()["error"]
    assert response["Allow"] == "POST"


@given(authorization=gen.authorization_headers, body=gen.raw_bodies)
def test_posts_with_any_header_and_body_are_refused_with_a_reason(
    client: Client, receiver: tuple[RefinerReceiver, str], authorization: str, body: bytes
) -> None:
    hook, token = receiver
    for header in (authorization, f"Bearer {token}"):
        response = call(client, hook, body, HTTP_AUTHORIZATION=header)
        if response.status_code != 200:
            assert response.json()["error"]
