"""The events' datetimes reach the database as Django would send them, shortcut or not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import connection
from hypothesis import given
from hypothesis import strategies as st

from destinations.db_values import moment_adapter, read_utc_text

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


stored_moments = st.none() | st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)
).flatmap(lambda naive: st.sampled_from([naive, str(naive), naive.replace(tzinfo=UTC)]))


@given(stored_moments)
def test_each_stored_moment_is_read_as_django_reads_it(stored: datetime | str | None) -> None:
    """What SQLite hands back for a datetime column: parsed already (a declared ``datetime``),
    text (a column without a declared type), or nothing."""
    if connection.vendor != "sqlite":
        pytest.skip("only SQLite stores datetimes as text")
    general = connection.ops.convert_datetimefield_value  # type: ignore[attr-defined]
    assert read_utc_text(general)(stored, None, connection) == general(stored, None, connection)
