"""Identity resolution for a batch of accepted messages, inside the ingest transaction.

Rules (docs/decisions/0003-identity.md):
- a userId names exactly one profile; an unknown userId on an identify whose email matches
  exactly one profile without a userId claims that profile, otherwise a new profile is made;
- any call carrying both userId and anonymousId, and every alias (previousId -> userId), links
  the anonymous id to the profile, and earlier events with that anonymous id are attached to it;
- identify merges traits into the profile (email, name and billing id are also kept as columns);
- group keeps the account's traits and makes the caller a member.

Everything is read and written in bulk, a handful of queries per request whatever its size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db import connection

from destinations.identity.bulk_write import bulk_write, concrete_field, update_from_values
from destinations.messages.message import Message
from destinations.models import Account, AnonymousId, Event, Membership, Profile
from destinations.raw_reads import rows_locked
from destinations.traits import (
    NAME_CHARS,
    trait_billing_id,
    trait_email,
    trait_name,
)

PROFILE_FIELDS = ["email", "name", "billing_id", "traits", "first_seen_at", "last_seen_at"]
ACCOUNT_FIELDS = ["name", "traits", "first_seen_at", "last_seen_at"]
# What resolving a call other than identify reads of a profile.
SEEN_FIELDS = ["user_id", "merged_into", "first_seen_at", "last_seen_at"]


def locked(queryset: Any) -> Any:
    # Row locks serialise concurrent updates of one profile on PostgreSQL; SQLite already
    # serialises writers, and ordering by id keeps lock order stable to avoid deadlocks.
    if connection.features.has_select_for_update:
        return queryset.select_for_update().order_by("id")
    return queryset


class IdentityResolver:
    def __init__(self) -> None:
        self.by_user_id: dict[str, Profile] = {}
        self.by_id: dict[int, Profile] = {}
        self.links: dict[str, int] = {}
        self.new_links: dict[str, int] = {}
        self.dirty_profiles: set[int] = set()
        # The columns any dirty profile changed: a group of tracks rewrites only last_seen_at,
        # not the traits (JSON encoded again for every row written).
        self.profile_changes: set[str] = set()
        self.accounts: dict[str, Account] = {}
        self.dirty_accounts: set[int] = set()
        self.account_changes: set[str] = set()
        self.memberships: set[tuple[int, int]] = set()

    def resolve(self, messages: Sequence[Message]) -> list[int | None]:
        """Return the profile id each message belongs to (None: anonymous and not yet linked)."""
        user_ids = {m.user_id for m in messages if m.user_id}
        self.load_profiles(user_ids, messages)
        self.load_links(messages)
        self.ensure_accounts({m.group_id for m in messages if m.group_id})

        owners: list[int | None] = []
        for message in messages:
            profile = self.profile_for(message)
            if profile is not None:
                self.apply(profile, message)
            if message.group_id:
                self.apply_group(profile, message)
            owners.append(profile.pk if profile is not None else None)
        self.flush()
        return owners

    # Reading and creating -------------------------------------------------------------------

    def load_profiles(self, user_ids: set[str], messages: Sequence[Message]) -> None:
        """Read (and on PostgreSQL lock) the profiles of ``user_ids``, creating those that do
        not exist yet. Known users, the usual case, cost one statement."""
        if not user_ids:
            return
        # Only identify calls change traits: without one, a profile's traits (JSON, often the
        # largest column) are neither read nor decoded.
        only = None if any(m.type == "identify" for m in messages) else SEEN_FIELDS
        self.read_profiles(user_ids, only)
        missing = user_ids - self.by_user_id.keys()
        if missing:
            # The known rows stay locked while the new ones are inserted. A concurrent
            # transaction inserting the same user id makes this one wait for its commit, but it
            # cannot be waiting for these rows: it took its own known rows before inserting.
            self.create_profiles(missing, messages)
            self.read_profiles(missing, only)
        self.follow_merges(list(self.by_id.values()))

    def read_profiles(self, user_ids: set[str], only: Sequence[str] | None) -> None:
        for profile in rows_locked(Profile, "user_id", sorted(user_ids), only):
            self.remember(profile)

    def create_profiles(self, missing: set[str], messages: Sequence[Message]) -> None:
        first_email: dict[str, str] = {}
        for message in messages:
            if message.type == "identify" and message.user_id in missing:
                email = trait_email(message.traits)
                if email:
                    first_email.setdefault(message.user_id, email)
        to_create: list[Profile] = []
        for user_id in sorted(missing):
            email = first_email.get(user_id)
            if email and self.claim(user_id, email):
                continue
            to_create.append(Profile(user_id=user_id, email=email))
        # A concurrent request may create the same user id: the unique index decides, and the
        # load below reads whichever row won.
        Profile.objects.bulk_create(to_create, ignore_conflicts=True)

    @staticmethod
    def claim(user_id: str, email: str) -> bool:
        """Give ``user_id`` to the one profile with this email and no userId, if exactly one."""
        candidates = list(
            Profile.objects.filter(
                email=email, user_id__isnull=True, merged_into__isnull=True
            ).values_list("id", flat=True)[:2]
        )
        if len(candidates) != 1:
            return False
        return (
            Profile.objects.filter(id=candidates[0], user_id__isnull=True).update(user_id=user_id)
            == 1
        )

    def follow_merges(self, profiles: Iterable[Profile]) -> None:
        """A merged-away profile keeps its ids; its events go to the survivor."""
        pending = {p.merged_into_id for p in profiles if p.merged_into_id}
        for _ in range(10):  # merge chains are short; the bound guards against a cycle
            pending -= self.by_id.keys()
            if not pending:
                return
            survivors = list(locked(Profile.objects.filter(id__in=pending)))
            for survivor in survivors:
                self.by_id[survivor.pk] = survivor
            pending = {p.merged_into_id for p in survivors if p.merged_into_id}

    def remember(self, profile: Profile) -> None:
        self.by_id[profile.pk] = profile
        if profile.user_id:
            self.by_user_id[profile.user_id] = profile

    def load_links(self, messages: Sequence[Message]) -> None:
        values = {m.anonymous_id for m in messages if m.anonymous_id}
        values |= {m.previous_id for m in messages if m.previous_id}
        if not values:
            return
        self.links = dict(
            AnonymousId.objects.filter(value__in=values).values_list("value", "profile_id")
        )
        unknown = set(self.links.values()) - self.by_id.keys()
        if unknown:
            profiles = list(locked(Profile.objects.filter(id__in=unknown)))
            for profile in profiles:
                self.remember(profile)
            self.follow_merges(profiles)

    def ensure_accounts(self, group_ids: set[str]) -> None:
        if not group_ids:
            return
        Account.objects.bulk_create(
            [Account(group_id=g) for g in sorted(group_ids)], ignore_conflicts=True
        )
        for account in locked(Account.objects.filter(group_id__in=group_ids)):
            self.accounts[account.group_id] = account

    # Applying messages ----------------------------------------------------------------------

    def survivor(self, profile: Profile) -> Profile:
        seen = 0
        while profile.merged_into_id and profile.merged_into_id in self.by_id and seen < 10:
            profile = self.by_id[profile.merged_into_id]
            seen += 1
        return profile

    def profile_for(self, message: Message) -> Profile | None:
        profile: Profile | None = None
        if message.user_id:
            profile = self.survivor(self.by_user_id[message.user_id])
        elif message.anonymous_id and message.anonymous_id in self.links:
            profile = self.survivor(self.by_id[self.links[message.anonymous_id]])
        if profile is None:
            return None
        if message.user_id:
            for value in (message.anonymous_id, message.previous_id):
                if value and value not in self.links and value not in self.by_user_id:
                    self.links[value] = profile.pk
                    self.new_links[value] = profile.pk
        return profile

    def apply(self, profile: Profile, message: Message) -> None:
        changed = set(seen_changes(profile, message.timestamp))
        if message.type == "identify":
            changed.update(self.apply_traits(profile, message.traits))
        # A profile this request leaves as it was is not rewritten (its row is locked and
        # unchanged, so writing it would store the same values).
        if changed:
            self.dirty_profiles.add(profile.pk)
            self.profile_changes |= changed

    @staticmethod
    def apply_traits(profile: Profile, traits: dict[str, Any]) -> list[str]:
        """Merge identify traits into the profile; the fields whose stored value changed."""
        changed = []
        if traits and not contains_same(profile.traits or {}, traits):
            profile.traits = {**(profile.traits or {}), **traits}
            changed.append("traits")
        for attribute, value in (
            ("email", trait_email(traits)),
            ("name", trait_name(traits)),
            ("billing_id", trait_billing_id(traits)),
        ):
            if value and getattr(profile, attribute) != value:
                setattr(profile, attribute, value)
                changed.append(attribute)
        return changed

    def apply_group(self, profile: Profile | None, message: Message) -> None:
        account = self.accounts[message.group_id or ""]
        changed = set(seen_changes(account, message.timestamp))
        traits = message.traits
        if traits:
            if not contains_same(account.traits or {}, traits):
                account.traits = {**(account.traits or {}), **traits}
                changed.add("traits")
            name = traits.get("name")
            name = name.strip()[:NAME_CHARS] if isinstance(name, str) else ""
            if name and account.name != name:
                account.name = name
                changed.add("name")
        if changed:
            self.dirty_accounts.add(account.pk)
            self.account_changes |= changed
        if profile is not None:
            self.memberships.add((profile.pk, account.pk))

    # Writing --------------------------------------------------------------------------------

    def flush(self) -> None:
        # In id order, the order the rows were locked in (deadlock avoidance).
        if self.dirty_profiles:
            bulk_write(
                Profile,
                [self.by_id[pk] for pk in sorted(self.dirty_profiles)],
                [name for name in PROFILE_FIELDS if name in self.profile_changes],
            )
        if self.dirty_accounts:
            dirty = [a for a in self.accounts.values() if a.pk in self.dirty_accounts]
            bulk_write(
                Account,
                sorted(dirty, key=lambda a: a.pk),
                [name for name in ACCOUNT_FIELDS if name in self.account_changes],
            )
        if self.memberships:
            Membership.objects.bulk_create(
                [Membership(profile_id=p, account_id=a) for p, a in sorted(self.memberships)],
                ignore_conflicts=True,
            )
        if self.new_links:
            AnonymousId.objects.bulk_create(
                [AnonymousId(value=v, profile_id=p) for v, p in self.new_links.items()],
                ignore_conflicts=True,
            )
            self.attach_anonymous_events()

    def attach_anonymous_events(self) -> None:
        """Events sent before the user was known now belong to the profile too: one statement
        for all the new links, touching only events that have no profile yet."""
        update_from_values(
            Event,
            key=concrete_field(Event, "anonymous_id"),
            fields=[concrete_field(Event, "profile")],
            rows=list(self.new_links.items()),
            only_where_null=True,
        )


def seen_changes(row: Profile | Account, seen: datetime) -> list[str]:
    """Widen ``row``'s first and last seen to include ``seen``; the fields that changed."""
    changed = []
    if row.first_seen_at is None or seen < row.first_seen_at:
        row.first_seen_at = seen
        changed.append("first_seen_at")
    if row.last_seen_at is None or seen > row.last_seen_at:
        row.last_seen_at = seen
        changed.append("last_seen_at")
    return changed


def contains_same(current: dict[str, Any], update: dict[str, Any]) -> bool:
    """True if merging ``update`` into ``current`` would store exactly the same JSON."""
    return all(key in current and same_json(current[key], value) for key, value in update.items())


def same_json(a: Any, b: Any) -> bool:
    """Equal as stored JSON: unlike ``==``, 1, 1.0 and True differ, and so does key order
    (SQLite keeps JSON as text)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)
