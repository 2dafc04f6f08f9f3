"""Rows read in plain SQL come back as the instances the ORM would have made."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db.models.signals import post_init
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from destinations.identity.resolve import SEEN_FIELDS
from destinations.models import Profile
from destinations.raw_reads import rows_locked

pytestmark = pytest.mark.django_db


def make_profile() -> Profile:
    return Profile.objects.create(
        user_id="u-1",
        email="ada@example.com",
        traits={"plan": "pro", "seats": 3},
        first_seen_at=datetime(2026, 1, 2, 3, 4, 5, 6, UTC),
        last_seen_at=datetime(2026, 2, 3, tzinfo=UTC),
    )


@pytest.mark.parametrize("only", [None, SEEN_FIELDS])
def test_instances_match_what_the_orm_reads(only: list[str] | None) -> None:
    make_profile()
    [read] = rows_locked(Profile, "user_id", ["u-1", "nobody"], only)
    orm = Profile.objects.only(*only).get() if only else Profile.objects.get()
    assert read.get_deferred_fields() == orm.get_deferred_fields()
    loaded = [
        f.attname
        for f in Profile._meta.concrete_fields
        if f.attname not in orm.get_deferred_fields()
    ]
    assert {name: getattr(read, name) for name in loaded} == {
        name: getattr(orm, name) for name in loaded
    }
    assert (read._state.adding, read._state.db) == (orm._state.adding, orm._state.db)
    # A deferred field is read when asked for, and a save writes the fields it loaded.
    assert read.email == "ada@example.com"
    read.last_seen_at = datetime(2026, 3, 1, tzinfo=UTC)
    read.save(update_fields=["last_seen_at"])
    assert Profile.objects.get().last_seen_at == datetime(2026, 3, 1, tzinfo=UTC)


def test_a_model_with_init_listeners_is_made_through_init() -> None:
    make_profile()
    seen: list[Profile] = []

    def listener(sender: type[Profile], instance: Profile, **kwargs: object) -> None:
        seen.append(instance)

    post_init.connect(listener, sender=Profile)
    try:
        [read] = rows_locked(Profile, "user_id", ["u-1"], SEEN_FIELDS)
    finally:
        post_init.disconnect(listener, sender=Profile)
    assert seen == [read]


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    )
)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_datetimes_read_back_as_the_orm_reads_them(moment: datetime) -> None:
    Profile.objects.update_or_create(user_id="u-time", defaults={"last_seen_at": moment})
    [read] = rows_locked(Profile, "user_id", ["u-time"], SEEN_FIELDS)
    assert read.last_seen_at == Profile.objects.get(user_id="u-time").last_seen_at == moment
    assert read.last_seen_at.tzinfo is not None
