"""``context.switchboard`` is Switchboard's own (system events, audience syncs): a client's is
dropped on the way in, so it cannot pose as a system event for webhooks or steer a Refiner
segment sync."""

from __future__ import annotations

import pytest

from destinations.models import Event
from tests.helpers.ingest import IngestPost

pytestmark = pytest.mark.django_db

MARKS = {"system": True, "audience": {"id": 1, "entered": True}}


def test_a_single_calls_own_marks_are_dropped(post_ingest: IngestPost) -> None:
    response = post_ingest(
        "track",
        {"userId": "u-1", "event": "Delivery Failed",
         "context": {"switchboard": MARKS, "ip": "10.0.0.1"}},
    )  # fmt: skip
    assert response.status_code == 200
    event = Event.objects.get()
    assert event.payload["context"] == {"ip": "10.0.0.1"}


def test_a_batchs_and_its_envelopes_marks_are_dropped(post_ingest: IngestPost) -> None:
    response = post_ingest(
        "batch",
        {
            "context": {"switchboard": MARKS, "library": {"name": "analytics-python"}},
            "batch": [
                {"type": "identify", "userId": "u-1", "traits": {"plan": "trial"},
                 "context": {"switchboard": MARKS}},
                {"type": "track", "userId": "u-1", "event": "Report Exported"},
            ],
        },
    )  # fmt: skip
    assert response.status_code == 200
    for payload in Event.objects.values_list("payload", flat=True):
        assert "switchboard" not in payload["context"]
        assert payload["context"]["library"] == {"name": "analytics-python"}
