"""``bulk_write`` stores exactly what Django's ``bulk_update`` stored, on either backend.

Profiles and accounts are written with one ``UPDATE ... FROM (VALUES ...)`` statement
(``destinations.identity.bulk_write``). These tests compare the stored column values, read
back raw (JSON as the database keeps it), with what ``bulk_update`` stored.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone as django_timezone

from destinations.identity import bulk_write as bulk_write_module
from destinations.identity.bulk_write import bulk_write, concrete_field, update_from_values
from destinations.identity.resolve import ACCOUNT_FIELDS, PROFILE_FIELDS, same_json
from destinations.models import Account, Event, Profile, Source
from tests.helpers.raw_rows import LONG_EMAIL, profile_columns, raw_rows

pytestmark = pytest.mark.django_db


def set_tricky_values(profile: Profile, n: int) -> None:
    """Unicode, nested JSON, numbers that ``==`` confuses, NULLs, times in another zone."""
    profile.email = None if n % 2 else f"zoë{n}@exämple.com"
    profile.name = "" if n % 3 == 0 else f"Zoë Ångström 🎉 {n} 'quoted' %s"
    profile.billing_id = None if n % 2 == 0 else f"cus_{n}"
    profile.traits = {
        "name": "Zoë",
        "nested": {"city": "Zürich", "tags": ["a", 1, 1.5, True, None, {"deep": ["ü"]}]},
        "one": 1,
        "one_float": 1.0,
        "flag": True,
        "nothing": None,
        "emoji": "🎉",
        "sql": "'); DROP TABLE destinations_profile; --",
        "n": n,
    }
    tz = timezone(timedelta(hours=5, minutes=30))
    profile.first_seen_at = None if n == 2 else datetime(2024, 2, 29, 23, 59, 59, 123456, tz)
    profile.last_seen_at = datetime(2025, 1, 1, 0, 0, n, tzinfo=UTC)


def make_profiles(prefix: str, count: int) -> list[Profile]:
    return [Profile.objects.create(user_id=f"{prefix}{n}") for n in range(count)]


def test_bulk_write_stores_what_bulk_update_stores() -> None:
    old = make_profiles("old-", 6)
    new = make_profiles("new-", 6)
    for n, (a, b) in enumerate(zip(old, new, strict=True)):
        set_tricky_values(a, n)
        set_tricky_values(b, n)
    Profile.objects.bulk_update(old, PROFILE_FIELDS)
    assert bulk_write(Profile, new, PROFILE_FIELDS) == len(new)

    rows = raw_rows(Profile._meta.db_table, profile_columns(), "user_id")
    for n in range(6):
        assert rows[f"new-{n}"] == rows[f"old-{n}"]
    for a, b in zip(old, new, strict=True):
        b.refresh_from_db()
        assert [getattr(b, f) for f in PROFILE_FIELDS] == [getattr(a, f) for f in PROFILE_FIELDS]
        assert b.traits["nested"]["tags"][2] == 1.5
        assert b.traits["flag"] is True


def test_an_over_long_string_ends_as_bulk_update_left_it() -> None:
    # PostgreSQL's explicit cast cuts it to the column's length; SQLite keeps it whole.
    (old,) = make_profiles("old-", 1)
    (new,) = make_profiles("new-", 1)
    old.email = new.email = LONG_EMAIL
    Profile.objects.bulk_update([old], ["email"])
    bulk_write(Profile, [new], ["email"])
    old.refresh_from_db()
    new.refresh_from_db()
    assert new.email == old.email
    assert new.email == (LONG_EMAIL[:320] if connection.vendor == "postgresql" else LONG_EMAIL)


def test_accounts_too() -> None:
    old = Account.objects.create(group_id="g-old")
    new = Account.objects.create(group_id="g-new")
    for account in (old, new):
        account.name = "Acme ✓ 'Ltd'"
        account.traits = {"name": "Acme ✓", "employees": 12, "plan": {"tier": "pro", "seats": None}}
        account.first_seen_at = datetime(2025, 2, 1, 9, 30, tzinfo=UTC)
        account.last_seen_at = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    Account.objects.bulk_update([old], ACCOUNT_FIELDS)
    bulk_write(Account, [new], ACCOUNT_FIELDS)
    columns = [concrete_field(Account, name).column for name in ACCOUNT_FIELDS]
    rows = raw_rows(Account._meta.db_table, columns, "group_id")
    assert rows["g-new"] == rows["g-old"]


def test_rows_are_written_in_chunks_on_sqlite_and_at_once_on_postgresql(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bulk_write_module, "MAX_ROWS_PER_STATEMENT", 3)
    profiles = make_profiles("u-", 7)
    for n, profile in enumerate(profiles):
        profile.name = f"name {n}"
    with CaptureQueriesContext(connection) as queries:
        assert bulk_write(Profile, profiles, ["name"]) == 7
    # PostgreSQL takes the rows as one array per column, in one statement of fixed text.
    assert len(queries) == (1 if connection.vendor == "postgresql" else 3)
    assert list(Profile.objects.order_by("id").values_list("name", flat=True)) == [
        f"name {n}" for n in range(7)
    ]


def test_nothing_to_write_sends_nothing() -> None:
    with CaptureQueriesContext(connection) as queries:
        assert bulk_write(Profile, [], PROFILE_FIELDS) == 0
    assert len(queries) == 0


def test_values_are_bound_parameters() -> None:
    """The statement is built from placeholders only: a value never becomes SQL."""
    sql = bulk_write_module.update_sql(
        connection, Profile, Profile._meta.pk, [concrete_field(Profile, "name")], 2, False
    )
    assert sql.count("%s") == 4
    (profile,) = make_profiles("u-", 1)
    profile.name = "'); DELETE FROM destinations_profile; -- %s %(x)s"
    bulk_write(Profile, [profile], ["name"])
    assert Profile.objects.get().name == profile.name


def test_only_where_null_leaves_set_rows_alone(source: Source) -> None:
    owner, other = make_profiles("u-", 2)
    now = django_timezone.now()
    for message_id, anonymous_id, profile in [
        ("m1", "anon-1", None),
        ("m2", "anon-1", other),
        ("m3", "anon-2", None),
        ("m4", "anon-3", None),
    ]:
        Event.objects.create(
            source=source,
            message_id=message_id,
            type="track",
            anonymous_id=anonymous_id,
            event="Viewed",
            timestamp=now,
            received_at=now,
            profile=profile,
            payload={},
        )
    updated = update_from_values(
        Event,
        key=concrete_field(Event, "anonymous_id"),
        fields=[concrete_field(Event, "profile")],
        rows=[("anon-1", owner.pk), ("anon-2", owner.pk)],
        only_where_null=True,
    )
    assert updated == 2
    owners = dict(Event.objects.values_list("message_id", "profile_id"))
    assert owners == {"m1": owner.pk, "m2": other.pk, "m3": owner.pk, "m4": None}


def test_refuses_a_field_it_cannot_set() -> None:
    with pytest.raises(ValueError):
        concrete_field(Profile, "id")
    with pytest.raises(ValueError):
        concrete_field(Account, "members")


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ({"a": 1}, {"a": 1}, True),
        ({"a": 1}, {"a": True}, False),
        ({"a": 1}, {"a": 1.0}, False),
        ({"a": [1, "é"]}, {"a": [1, "é"]}, True),
        ({"a": [1, 2]}, {"a": [2, 1]}, False),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, False),  # SQLite keeps the text, key order too
        ({"a": None}, {"a": None}, True),
        ({"a": {"x": None}}, {"a": {"x": 0}}, False),
        ("x", "x", True),
    ],
)
def test_same_json(a: Any, b: Any, same: bool) -> None:
    assert same_json(a, b) is same
