"""Whatever a replay is asked for, it is refused with a reason or previewed and started: never
an error from the database (a NUL, lone surrogates, ids past any integer column, huge lists)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from destinations.delivery.services import destination_create
from destinations.models import Destination, Event, Source
from destinations.replay.definition import InvalidDefinition, ReplayDefinition
from destinations.replay.services import cancel_replay, preview, start
from destinations.standins.refiner import FakeRefiner

pytestmark = pytest.mark.django_db

names = st.lists(st.text(max_size=300) | st.sampled_from(["\x00", "\ud800", "Signed Up"]))
ids = st.lists(st.integers(min_value=-(2**70), max_value=2**70), max_size=4)
types = st.lists(st.sampled_from(["track", "identify", "page", "alias", "bogus", ""]), max_size=4)
moments = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)


@pytest.fixture
def refiner(fake_refiner: FakeRefiner, source: Source) -> Destination:
    Event.objects.create(
        source=source,
        message_id="m1",
        type="track",
        event="Signed Up",
        user_id="u1",
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        received_at=datetime(2026, 1, 1, tzinfo=UTC),
        payload={"type": "track", "event": "Signed Up", "userId": "u1", "messageId": "m1"},
    )
    return destination_create(
        kind="refiner",
        name="Refiner",
        settings_values={"base_url": fake_refiner.base_url},
        secret_values={"api_key": "rk_test"},
    )


@given(names=names, source_ids=ids, kinds=types, since=moments, span=st.integers(-5, 10**6))
def test_any_definition_is_refused_with_a_reason_or_runs(
    refiner: Destination,
    names: list[str],
    source_ids: list[int],
    kinds: list[str],
    since: datetime,
    span: int,
) -> None:
    try:
        until = since + timedelta(days=span)
    except OverflowError:
        until = datetime(9999, 12, 31, tzinfo=UTC)
    try:
        definition = ReplayDefinition(
            since=since,
            until=until,
            names=tuple(names),
            source_ids=tuple(source_ids),
            types=tuple(kinds),
        )
    except InvalidDefinition as refused:
        assert str(refused)
        return
    shown = preview(refiner, definition)
    assert shown.candidates >= shown.sending >= 0
    replay = start(refiner, definition, actor=None)
    assert replay.job.total == shown.candidates
    assert cancel_replay(replay, actor=None)
