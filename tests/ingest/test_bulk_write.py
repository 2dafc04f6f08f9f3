"""The ingest write path stores exactly what Django's ``bulk_update`` stored, on either backend.

Profiles and accounts are written with one ``UPDATE ... FROM (VALUES ...)`` statement
(``destinations.identity.bulk_write``), unchanged ones are not written at all, and events sent
before their user was known are linked in one statement. These tests compare the stored column
values, read back raw (JSON as the database keeps it), with what the former code stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone as django_timezone

from destinations.identity import bulk_write as bulk_write_module
from destinations.identity import resolve
from destinations.identity.bulk_write import bulk_write, concrete_field, update_from_values
from destinations.identity.resolve import (
    ACCOUNT_FIELDS,
    PROFILE_FIELDS,
    IdentityResolver,
    same_json,
)
from destinations.ingest.message import validate_message
from destinations.ingest.store import store_messages
from destinations.models import Account, AnonymousId, Event, Membership, Profile, Source

pytestmark = pytest.mark.django_db

LONG_EMAIL = "x" * 330 + "@example.com"  # longer than the column's 320 characters


def raw_rows(table: str, columns: list[str], key: str) -> dict[Any, tuple[Any, ...]]:
    """Column values as the database returns them, without the model's conversions."""
    quote = connection.ops.quote_name
    names = ", ".join(quote(c) for c in [key, *columns])
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {names} FROM {quote(table)}")
        return {row[0]: tuple(row[1:]) for row in cursor.fetchall()}


def profile_columns() -> list[str]:
    return [concrete_field(Profile, name).column for name in PROFILE_FIELDS]


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


def test_rows_are_written_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk_write_module, "MAX_ROWS_PER_STATEMENT", 3)
    profiles = make_profiles("u-", 7)
    for n, profile in enumerate(profiles):
        profile.name = f"name {n}"
    with CaptureQueriesContext(connection) as queries:
        assert bulk_write(Profile, profiles, ["name"]) == 7
    assert len(queries) == 3
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


# The whole ingest path against the former one ----------------------------------------------


def old_flush_behaviour(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put back what ``IdentityResolver`` did before: every profile and account a message
    touched rewritten with ``bulk_update``, and one UPDATE per newly linked anonymous id."""

    def write(model: Any, objs: list[Any], fields: list[str]) -> int:
        return int(model.objects.bulk_update(objs, fields))

    def attach(self: IdentityResolver) -> None:
        for value, profile_id in self.new_links.items():
            Event.objects.filter(anonymous_id=value, profile__isnull=True).update(
                profile_id=profile_id
            )

    apply, apply_group = IdentityResolver.apply, IdentityResolver.apply_group

    def apply_always(self: IdentityResolver, profile: Profile, message: Any) -> None:
        apply(self, profile, message)
        self.dirty_profiles.add(profile.pk)

    def apply_group_always(self: IdentityResolver, profile: Any, message: Any) -> None:
        apply_group(self, profile, message)
        self.dirty_accounts.add(self.accounts[message.group_id].pk)

    monkeypatch.setattr(resolve, "bulk_write", write)
    monkeypatch.setattr(IdentityResolver, "attach_anonymous_events", attach)
    monkeypatch.setattr(IdentityResolver, "apply", apply_always)
    monkeypatch.setattr(IdentityResolver, "apply_group", apply_group_always)


def at(minute: int) -> str:
    return f"2025-06-01T10:{minute:02d}:00.000Z"


BATCHES: list[list[dict[str, Any]]] = [
    [
        {"type": "page", "anonymousId": "anon-a", "name": "Home", "timestamp": at(1)},
        {"type": "track", "anonymousId": "anon-a", "event": "Viewed", "timestamp": at(2)},
        {"type": "track", "anonymousId": "anon-b", "event": "Viewed", "timestamp": at(3)},
        {"type": "identify", "userId": "u1", "timestamp": at(10),
         "traits": {"email": "Zoe@Example.com", "name": "Zoë Ångström", "billingId": 42,
                    "address": {"city": "Zürich", "tags": ["a", 1, 1.5, True, None]},
                    "nothing": None, "emoji": "🎉"}},
    ],
    [
        # The same traits again, an event inside the known range: nothing changes.
        {"type": "identify", "userId": "u1", "timestamp": at(5),
         "traits": {"email": "Zoe@Example.com", "name": "Zoë Ångström", "billingId": 42,
                    "address": {"city": "Zürich", "tags": ["a", 1, 1.5, True, None]},
                    "nothing": None, "emoji": "🎉"}},
        {"type": "track", "userId": "u1", "event": "Clicked", "timestamp": at(7)},
        # Earlier and later: first and last seen move.
        {"type": "track", "userId": "u1", "event": "Clicked", "timestamp": at(4)},
        {"type": "identify", "userId": "u2", "anonymousId": "anon-a", "timestamp": at(20),
         "context": {"traits": {"firstName": "Jürgen", "lastName": "Ñúñez", "flag": 1}},
         "traits": {"plan": "pro"}},
        {"type": "alias", "userId": "u2", "previousId": "anon-b", "timestamp": at(21)},
        {"type": "group", "userId": "u1", "groupId": "g1", "timestamp": at(22),
         "traits": {"name": " Acme ✓ ", "employees": 12}},
    ],
    [
        # 1 and True are equal in Python and different in JSON: the change is stored.
        {"type": "identify", "userId": "u2", "timestamp": at(30), "traits": {"flag": True}},
        {"type": "identify", "userId": "u2", "timestamp": at(31), "traits": {"flag": 1.0}},
        {"type": "identify", "userId": "u1", "timestamp": at(32),
         "traits": {"address": {"tags": ["b"], "city": "Genève"}, "email": LONG_EMAIL}},
        {"type": "group", "userId": "u2", "groupId": "g1", "timestamp": at(33),
         "traits": {"name": " Acme ✓ ", "employees": 12}},
        {"type": "group", "anonymousId": "anon-z", "groupId": "g2", "timestamp": at(34)},
        {"type": "identify", "userId": "u3", "anonymousId": "anon-c", "timestamp": at(35),
         "traits": {"email": "c@x.co"}},
    ],
]  # fmt: skip


def ingest_scenario(source: Source) -> dict[str, Any]:
    received_at = datetime(2025, 6, 1, 11, 0, tzinfo=UTC)
    for number, batch in enumerate(BATCHES):
        messages = [
            validate_message(
                {**item, "messageId": f"m-{number}-{index}"},
                call_type=None,
                received_at=received_at,
            )
            for index, item in enumerate(batch)
        ]
        store_messages(source_id=source.pk, messages=messages, received_at=received_at)
    return stored_state()


def stored_state() -> dict[str, Any]:
    """Everything identity resolution writes, keyed by what does not depend on row ids."""
    user_of = dict(Profile.objects.values_list("pk", "user_id"))
    group_of = dict(Account.objects.values_list("pk", "group_id"))
    account_columns = [concrete_field(Account, name).column for name in ACCOUNT_FIELDS]
    return {
        "profiles": raw_rows(Profile._meta.db_table, profile_columns(), "user_id"),
        "accounts": raw_rows(Account._meta.db_table, account_columns, "group_id"),
        "members": sorted(
            (user_of[p], group_of[a])
            for p, a in Membership.objects.values_list("profile_id", "account_id")
        ),
        "links": sorted(
            (v, user_of[p]) for v, p in AnonymousId.objects.values_list("value", "profile_id")
        ),
        "events": sorted(
            (m, user_of.get(p)) for m, p in Event.objects.values_list("message_id", "profile_id")
        ),
    }


@pytest.fixture
def former_state(source: Source) -> Iterator[dict[str, Any]]:
    """The scenario's result with the former code, rolled back before the test runs it again."""
    with pytest.MonkeyPatch.context() as patch, transaction.atomic():
        old_flush_behaviour(patch)
        state = ingest_scenario(source)
        transaction.set_rollback(True)
    yield state


def test_ingest_stores_what_the_former_code_stored(
    source: Source, former_state: dict[str, Any]
) -> None:
    assert Profile.objects.count() == 0
    assert ingest_scenario(source) == former_state

    u1 = Profile.objects.get(user_id="u1")
    assert u1.first_seen_at == datetime(2025, 6, 1, 10, 4, tzinfo=UTC)
    assert u1.last_seen_at == datetime(2025, 6, 1, 10, 32, tzinfo=UTC)
    assert u1.traits["address"] == {"tags": ["b"], "city": "Genève"}
    assert u1.traits["emoji"] == "🎉"
    assert u1.billing_id == "42"
    u2 = Profile.objects.get(user_id="u2")
    assert u2.name == "Jürgen Ñúñez"
    assert u2.traits == {"firstName": "Jürgen", "lastName": "Ñúñez", "flag": 1.0, "plan": "pro"}
    assert type(u2.traits["flag"]) is float
    assert Account.objects.get(group_id="g1").name == "Acme ✓"
    assert set(Event.objects.filter(anonymous_id__in=["anon-a", "anon-b"]).values_list(
        "profile__user_id", flat=True
    )) == {"u2"}  # fmt: skip


def updates_of(queries: CaptureQueriesContext, table: str) -> list[str]:
    """The UPDATE statements of ``table``."""
    statements = [q["sql"].lstrip() for q in queries.captured_queries]
    return [s for s in statements if s.startswith(f'UPDATE "{table}"')]


def send(source: Source, items: list[dict[str, Any]], *, prefix: str) -> None:
    received_at = datetime(2025, 6, 1, 11, 0, tzinfo=UTC)
    messages = [
        validate_message(
            {**item, "messageId": f"{prefix}-{n}"}, call_type=None, received_at=received_at
        )
        for n, item in enumerate(items)
    ]
    store_messages(source_id=source.pk, messages=messages, received_at=received_at)


def test_a_profile_left_unchanged_is_not_rewritten(source: Source) -> None:
    traits = {"email": "a@x.co", "plan": "pro", "seats": [1, 2]}
    send(source, [{"type": "identify", "userId": "u1", "traits": traits, "timestamp": at(10)},
                  {"type": "track", "userId": "u1", "event": "E", "timestamp": at(20)}],
         prefix="first")  # fmt: skip
    before = stored_state()
    with CaptureQueriesContext(connection) as queries:
        send(source, [{"type": "identify", "userId": "u1", "traits": traits, "timestamp": at(15)},
                      {"type": "track", "userId": "u1", "event": "E", "timestamp": at(12)}],
             prefix="again")  # fmt: skip
    assert updates_of(queries, Profile._meta.db_table) == []
    after = stored_state()
    assert after["profiles"] == before["profiles"]

    with CaptureQueriesContext(connection) as queries:
        send(source, [{"type": "track", "userId": "u1", "event": "E", "timestamp": at(25)}],
             prefix="later")  # fmt: skip
    assert len(updates_of(queries, Profile._meta.db_table)) == 1
    assert Profile.objects.get(user_id="u1").last_seen_at == datetime(
        2025, 6, 1, 10, 25, tzinfo=UTC
    )


def test_an_unchanged_account_is_not_rewritten(source: Source) -> None:
    group = {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"name": "Acme"}}
    send(source, [{**group, "timestamp": at(3)}, {**group, "timestamp": at(10)}], prefix="first")
    with CaptureQueriesContext(connection) as queries:
        # Between the first and the last call seen: nothing the account stores changes.
        send(source, [{**group, "timestamp": at(5)}], prefix="again")
    assert updates_of(queries, Account._meta.db_table) == []
    assert Membership.objects.count() == 1


def test_new_links_attach_earlier_events_in_one_statement(source: Source) -> None:
    send(source, [{"type": "track", "anonymousId": f"anon-{n}", "event": "Viewed"}
                  for n in range(5)], prefix="anon")  # fmt: skip
    with CaptureQueriesContext(connection) as queries:
        send(source, [{"type": "identify", "userId": f"u{n}", "anonymousId": f"anon-{n}"}
                      for n in range(5)], prefix="known")  # fmt: skip
    assert len(updates_of(queries, Event._meta.db_table)) == 1
    owners = dict(Event.objects.values_list("message_id", "profile__user_id"))
    assert owners == {**{f"anon-{n}": f"u{n}" for n in range(5)},
                      **{f"known-{n}": f"u{n}" for n in range(5)}}  # fmt: skip


def test_the_source_foreign_key_has_no_index_of_its_own() -> None:
    """Its lookups are served by the composite indexes that start with source_id."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Event._meta.db_table)
    on_source = [c["columns"] for c in constraints.values() if c["index"] or c["unique"]]
    assert ["source_id"] not in on_source
    assert ["source_id", "message_id"] in on_source
    assert ["source_id", "id"] in on_source
