"""A replay takes at most its share of the destination's rate limit each minute, from its own
budget: live traffic keeps the rest."""

from __future__ import annotations

import threading

import pytest
from django.utils import timezone

from destinations.delivery import ratelimit
from destinations.delivery.services import destination_create
from destinations.models import Destination
from destinations.replay.definition import ReplayDefinition
from destinations.replay.runner import Lane
from destinations.replay.services import start
from destinations.standins.refiner import FakeRefiner

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def limited(fake_refiner: FakeRefiner) -> Destination:
    return destination_create(
        kind="refiner",
        name="Refiner",
        settings_values={"base_url": fake_refiner.base_url},
        secret_values={"api_key": "rk_test"},
        rate_limit_per_minute=40,
    )


def lane_of(destination: Destination) -> Lane:
    replay = start(destination, ReplayDefinition(until=timezone.now()), actor=None)
    return Lane(replay, replay.lane_rows.get(number=0), threading.Event())


def test_the_replay_budget_is_a_share_of_the_rate_limit_per_window(limited: Destination) -> None:
    lane = lane_of(limited)
    window = ratelimit.window_end()
    granted = lane.budget(500) + lane.budget(500)
    if ratelimit.window_end() != window:  # a new minute began between the two: ask again
        granted = lane.budget(500) + lane.budget(500)
    assert granted == 20  # REPLAY_RATE_SHARE (0.5) of 40 a minute, whatever the page size
    # The destination's own budget is untouched by the replay's planning: live traffic still
    # has all of it (a replay's requests, when sent, count against it as live ones do).
    assert sum(ratelimit.grant(limited.pk, [None] * 40, per_minute=40, subject_per_minute=0)) == 40


def test_no_rate_limit_means_no_replay_budget_to_wait_for(fake_refiner: FakeRefiner) -> None:
    unlimited = destination_create(
        kind="webhook",
        name="Hook",
        settings_values={"url": f"{fake_refiner.base_url}/hook"},
        secret_values={},
    )
    assert lane_of(unlimited).budget(500) == 500
