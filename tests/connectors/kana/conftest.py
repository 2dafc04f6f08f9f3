"""Fixtures of the Kana tests: the stand-in with features, a Kana destination, an operator for
the dashboard, events stored unmapped, and patient workers."""

from __future__ import annotations

import pytest

from destinations.connectors.kana.connector import UNMAPPED
from destinations.delivery.services import destination_create
from destinations.models import Delivery, Destination
from destinations.standins.kana import FakeKana
from tests.helpers.ingest import IngestPost, send
from tests.helpers.kana_rules import KEY, track


@pytest.fixture
def featured_kana(fake_kana: FakeKana) -> FakeKana:
    """The stand-in with three features to map events to."""
    fake_kana.add_feature("exports", "Exports")
    fake_kana.add_feature("seats", "Seats")
    fake_kana.add_feature("api_calls", "API calls")
    return fake_kana


@pytest.fixture
def kana(db: None, featured_kana: FakeKana) -> Destination:
    return destination_create(
        kind="kana",
        name="Kana",
        settings_values={"api_url": featured_kana.base_url},
        secret_values={"api_key": KEY},
    )


@pytest.fixture
def staff_role() -> str:
    """``staff_client`` is an operator here: the role that edits mapping rules and filters."""
    return "operator"


@pytest.fixture
def stored_events(post_ingest: IngestPost, kana: Destination) -> None:
    """Five unmapped track events with nested properties, and one Kana has no use for."""
    invoice = {"name": "invoice", "pages": 3}
    send(
        post_ingest,
        [
            track(1, object=invoice, tags=["monthly", "b"]),
            track(2, object={"name": "memo", "pages": 12}),
            track(3, object={"name": "invoice", "pages": 20}, format="pdf"),
            track(4, "Seat Added", seats=2),
            {
                **track(5, object={"name": "Invoice archive"}),
                "context": {"app": {"version": "2.1"}},
            },
            {"type": "page", "userId": "u1", "messageId": "p1", "name": "Home"},
        ],
    )
    assert Delivery.objects.filter(reason=UNMAPPED).count() == 5


# A request that timed out may have been carried out: a retried createUser then conflicts, a
# retried recordUsage counts twice (Kana has no idempotency key). That is delivery's
# at-least-once, not what these tests check, so a busy machine must not cause it: the workers
# wait longer for an answer than TEST_DELIVERY_ENV's 2 s.
PATIENT = {"DELIVERY_TIMEOUT_SECONDS": "10"}


@pytest.fixture
def worker_env() -> dict[str, str]:
    """Every worker of the Kana tests is PATIENT."""
    return PATIENT
