"""The whole ingest write path stores what the former code stored: unchanged profiles and
accounts are not written at all, and events sent before their user was known are linked in one
statement. Stored column values are read back raw and compared.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from destinations.identity import resolve
from destinations.identity.bulk_write import concrete_field
from destinations.identity.resolve import ACCOUNT_FIELDS, PROFILE_FIELDS, IdentityResolver
from destinations.ingest.store import store_messages
from destinations.messages.message import validate_message
from destinations.models import Account, AnonymousId, Event, Membership, Profile, Source
from tests.helpers.raw_rows import LONG_EMAIL, profile_columns, raw_rows

pytestmark = pytest.mark.django_db


# The whole ingest path against the former one ----------------------------------------------


WRITTEN_BEFORE = {Profile: PROFILE_FIELDS, Account: ACCOUNT_FIELDS}


def old_flush_behaviour(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put back what ``IdentityResolver`` did before: every profile and account a message
    touched rewritten whole with ``bulk_update``, and one UPDATE per newly linked anonymous
    id."""

    def write(model: Any, objs: list[Any], fields: list[str]) -> int:
        # Every column, whichever changed.
        return int(model.objects.bulk_update(objs, WRITTEN_BEFORE[model]))

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


def test_a_known_users_track_rewrites_only_when_they_were_last_seen(source: Source) -> None:
    traits = {"email": "a@x.co", "plan": "pro", "notes": "x" * 2000}
    send(source, [{"type": "identify", "userId": "u1", "traits": traits, "timestamp": at(10)},
                  {"type": "group", "userId": "u1", "groupId": "g1", "timestamp": at(10),
                   "traits": {"name": "Acme", "plan": "pro"}}],
         prefix="first")  # fmt: skip
    with CaptureQueriesContext(connection) as queries:
        send(source, [{"type": "track", "userId": "u1", "event": "E", "timestamp": at(20)},
                      {"type": "group", "userId": "u1", "groupId": "g1", "timestamp": at(21)}],
             prefix="later")  # fmt: skip
    (profile_update,) = updates_of(queries, Profile._meta.db_table)
    assert column_names_set(profile_update) == {"last_seen_at"}
    (account_update,) = updates_of(queries, Account._meta.db_table)
    assert column_names_set(account_update) == {"last_seen_at"}
    profile = Profile.objects.get(user_id="u1")
    assert (profile.traits, profile.email) == (traits, "a@x.co")
    assert profile.last_seen_at == datetime(2025, 6, 1, 10, 21, tzinfo=UTC)  # the group call
    account = Account.objects.get(group_id="g1")
    assert (account.name, account.traits) == ("Acme", {"name": "Acme", "plan": "pro"})
    assert account.last_seen_at == datetime(2025, 6, 1, 10, 21, tzinfo=UTC)


def statements_on(queries: CaptureQueriesContext, table: str) -> list[str]:
    """Every statement that names ``table``."""
    return [q["sql"] for q in queries.captured_queries if f'"{table}"' in q["sql"]]


def test_known_users_profiles_are_read_with_one_statement(source: Source) -> None:
    send(source, [{"type": "track", "userId": f"u{n}", "event": "E", "timestamp": at(1)}
                  for n in range(3)], prefix="first")  # fmt: skip
    with CaptureQueriesContext(connection) as queries:
        send(source, [{"type": "track", "userId": f"u{n}", "event": "E", "timestamp": at(2)}
                      for n in range(3)], prefix="later")  # fmt: skip
    # One read (locked on PostgreSQL) and the last-seen update: no existence check first.
    on_profiles = statements_on(queries, Profile._meta.db_table)
    assert [s.lstrip().split()[0] for s in on_profiles] == ["SELECT", "UPDATE"], on_profiles
    # Tracks change no traits: the traits are not read.
    assert '"traits"' not in on_profiles[0]

    with CaptureQueriesContext(connection) as queries:
        send(source, [{"type": "track", "userId": "u0", "event": "E", "timestamp": at(3)},
                      {"type": "identify", "userId": "u1", "traits": {"plan": "pro"},
                       "timestamp": at(3)}], prefix="identify")  # fmt: skip
    read = statements_on(queries, Profile._meta.db_table)[0]
    assert read.lstrip().startswith("SELECT") and '"traits"' in read
    assert Profile.objects.get(user_id="u1").traits == {"plan": "pro"}


def test_new_and_known_users_in_one_call_are_all_resolved(source: Source) -> None:
    send(source, [{"type": "identify", "userId": "known", "traits": {"email": "k@x.co"},
                   "timestamp": at(1)}], prefix="first")  # fmt: skip
    unclaimed = Profile.objects.create(email="claim@x.co")  # e.g. imported without a userId
    with CaptureQueriesContext(connection) as queries:
        send(source, [{"type": "track", "userId": "known", "event": "E", "timestamp": at(2)},
                      {"type": "track", "userId": "brand-new", "event": "E", "timestamp": at(3)},
                      {"type": "identify", "userId": "claimer",
                       "traits": {"email": "claim@x.co"}, "timestamp": at(4)}],
             prefix="mixed")  # fmt: skip
    owners = dict(Event.objects.filter(message_id__startswith="mixed").values_list(
        "message_id", "profile__user_id"))  # fmt: skip
    assert owners == {"mixed-0": "known", "mixed-1": "brand-new", "mixed-2": "claimer"}
    assert Profile.objects.get(pk=unclaimed.pk).user_id == "claimer"  # claimed, not a new row
    assert Profile.objects.filter(user_id__in=["known", "brand-new", "claimer"]).count() == 3
    reads = [s for s in statements_on(queries, Profile._meta.db_table)
             if s.lstrip().startswith("SELECT") and '"user_id" IN' in s]  # fmt: skip
    assert len(reads) == 2, reads  # all three, then the two that were missing


def column_names_set(update_sql: str) -> set[str]:
    """The columns an ``UPDATE ... SET a = ..., b = ...`` statement of bulk_write assigns."""
    names = {"email", "name", "billing_id", "traits", "first_seen_at", "last_seen_at"}
    assignments = update_sql.split(" SET ", 1)[1].split(" FROM ", 1)[0].split(" WHERE ", 1)[0]
    return {name for name in names if f'"{name}" =' in assignments}


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
