"""The events' datetimes reach the database as Django would send them, shortcut or not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from django.db import connection
from hypothesis import given
from hypothesis import strategies as st

from destinations.db_values import moment_adapter

zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)
moments = st.none() | st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones
)


@given(moments)
def test_each_moment_is_adapted_as_django_adapts_it(moment: datetime | None) -> None:
    assert moment_adapter(connection)(moment) == connection.ops.adapt_datetimefield_value(moment)


def test_utc_moments_with_and_without_microseconds() -> None:
    adapt = moment_adapter(connection)
    for moment in (datetime(2026, 12, 7, 21, 0, tzinfo=UTC), datetime(2026, 1, 2, 3, 4, 5, 6, UTC)):
        assert adapt(moment) == connection.ops.adapt_datetimefield_value(moment)
