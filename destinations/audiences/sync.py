"""What destinations are told when someone enters or leaves an audience.

Each change becomes one stored message, as Segment's audiences reach event destinations: an
identify with ``traits.<key>: true|false`` for a user, a group call with the same trait for an
account (Refiner puts group traits on the account object of ``identifyUser``). Its messageId is
``audience-<audience>-<u|a><subject>-v<version>``: the same change is stored once however often
it is computed, and the delivery engine sends it once. It is routed to the destinations the
audience picked and no others, a demo user's to demo destinations only, and carries
``context.personas`` as Segment's do. Webhooks subscribed to ``audience.entered`` /
``audience.exited`` also get a system event per change. A Refiner destination keeps the manual
segment chosen for the audience in step (its connector reads the segments when routing).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from destinations import system_events
from destinations.delivery.routing import forget_cached_destinations
from destinations.demo_marks import demo_loaded, marked_as_demo
from destinations.ingest.store import store_messages
from destinations.messages.message import validate_message
from destinations.models import (
    Account,
    Audience,
    AudienceSubject,
    AudienceTarget,
    Membership,
    Profile,
)
from destinations.sources import internal_source

NAMESPACE = "switchboard"


@dataclass(frozen=True, slots=True)
class Change:
    subject: int  # a profile's id, or an account's for an account audience
    entered: bool
    version: int


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str | None
    email: str | None
    group_id: str | None = None


def sync_changes(
    audience: Audience,
    changes: Sequence[Change],
    now: datetime,
    *,
    only_destinations: Collection[int] | None = None,
) -> int:
    """Store the messages for ``changes`` (in the caller's transaction); returns how many.
    ``only_destinations``: to these of the audience's destinations (and no system events)."""
    if not changes:
        return 0
    accounts = audience.subject == AudienceSubject.ACCOUNTS
    subjects = [c.subject for c in changes]
    identities = account_identities(subjects) if accounts else user_identities(subjects)
    targets = AudienceTarget.objects.filter(audience=audience, destination__enabled=True)
    if only_destinations is not None:
        targets = targets.filter(destination_id__in=list(only_destinations))
    rows = list(targets.values_list("destination_id", "destination__demo", "refiner_segment"))
    chosen = [(destination, demo) for destination, demo, _ in rows]
    if any(segment for _, _, segment in rows):
        # The Refiner connector reads the segments when it routes (its route context): a
        # segment chosen a moment ago must not be missed by a routing cache of this process.
        forget_cached_destinations()
    stored = store_syncs(audience, changes, identities, chosen, now) if chosen else 0
    if only_destinations is None:
        notify_webhooks(audience, changes, identities)
    return stored


def store_syncs(
    audience: Audience,
    changes: Sequence[Change],
    identities: Mapping[int, Identity],
    targets: Sequence[Target],
    now: datetime,
) -> int:
    owned = audience.subject != AudienceSubject.ACCOUNTS
    entries = [
        Entry(
            identity=identities[c.subject],
            owner=c.subject if owned else None,
            build=partial(sync_message, audience, c, identities[c.subject]),
        )
        for c in changes
        if c.subject in identities
    ]
    return store_for_targets(entries, targets, now)


# (destination id, is a demo destination)
Target = tuple[int, bool]


@dataclass(frozen=True, slots=True)
class Entry:
    """One message to store: about whom, whose event it is, and how to write it."""

    identity: Identity
    owner: int | None
    build: Callable[..., dict[str, Any]]


def store_for_targets(entries: Sequence[Entry], targets: Sequence[Target], now: datetime) -> int:
    """Store Switchboard's own messages (audience and computed-trait syncs) routed to
    ``targets`` only, a demo user's to the demo ones only (ADR 15); returns how many stored."""
    demo_data = demo_loaded()
    groups: dict[bool, list[Entry]] = {False: [], True: []}
    for entry in entries:
        demo = demo_data and marked_as_demo(entry.identity.user_id, entry.identity.email)
        groups[demo].append(entry)
    stored = 0
    for demo, items in groups.items():
        allowed = {destination for destination, is_demo in targets if is_demo or not demo}
        if not items or not allowed:
            continue
        messages = [validate_message(e.build(), call_type=None, received_at=now) for e in items]
        owners = {m.message_id: e.owner for m, e in zip(messages, items, strict=True)}
        result = store_messages(
            source_id=internal_source(demo=demo).pk,
            messages=messages,
            received_at=now,
            statement=True,
            owners=owners,
            demo=demo,
            only_destinations=allowed,
        )
        stored += result.stored
    return stored


def message_id(audience: Audience, change: Change) -> str:
    letter = "a" if audience.subject == AudienceSubject.ACCOUNTS else "u"
    return f"audience-{audience.pk}-{letter}{change.subject}-v{change.version}"


def sync_message(audience: Audience, change: Change, identity: Identity) -> dict[str, Any]:
    traits: dict[str, Any] = {audience.key: change.entered}
    message: dict[str, Any] = {
        "messageId": message_id(audience, change),
        "traits": traits,
        "context": {
            "personas": {
                "computation_class": "audience",
                "computation_id": str(audience.pk),
                "computation_key": audience.key,
                "namespace": NAMESPACE,
                "space_id": NAMESPACE,
            },
            "switchboard": {"audience": {"id": audience.pk, "entered": change.entered}},
            "library": {"name": "switchboard"},
        },
    }
    if audience.subject == AudienceSubject.ACCOUNTS:
        message.update(type="group", groupId=identity.group_id)
    else:
        message["type"] = "identify"
        if not identity.user_id and identity.email:
            traits["email"] = identity.email  # how Refiner finds a user known by email only
    if identity.user_id:
        message["userId"] = identity.user_id
    else:
        message["anonymousId"] = f"switchboard-{message_id(audience, change)}"
    return message


def user_identities(ids: Sequence[int]) -> dict[int, Identity]:
    rows = Profile.objects.filter(pk__in=ids).values_list("pk", "user_id", "email")
    return {pk: Identity(user_id, email) for pk, user_id, email in rows}


def account_identities(ids: Sequence[int]) -> dict[int, Identity]:
    """An account's group id, and the member a group call is sent as: Refiner updates an
    account through one of its users (the most recently seen one with a user id)."""
    rows = Account.objects.filter(pk__in=ids).values_list("pk", "group_id")
    found = {pk: Identity(None, None, group_id) for pk, group_id in rows}
    members = (
        Membership.objects.filter(account_id__in=ids, profile__user_id__isnull=False)
        .order_by("account_id", "-profile__last_seen_at", "-profile_id")
        .values_list("account_id", "profile__user_id", "profile__email")
    )
    chosen: set[int] = set()
    for account, user_id, email in members:
        if account not in chosen and account in found:
            chosen.add(account)
            found[account] = Identity(user_id, email, found[account].group_id)
    return found


def notify_webhooks(
    audience: Audience, changes: Sequence[Change], identities: Mapping[int, Identity]
) -> None:
    for entered, trigger, name in (
        (True, system_events.AUDIENCE_ENTERED, system_events.AUDIENCE_ENTERED_EVENT),
        (False, system_events.AUDIENCE_EXITED, system_events.AUDIENCE_EXITED_EVENT),
    ):
        picked = [c for c in changes if c.entered is entered and c.subject in identities]
        if not picked or not system_events.subscribed(trigger):
            continue
        # A demo user's changes are demo data, and no webhook is a demo destination.
        demo_data = demo_loaded()
        system_events.emit_many(
            [
                (
                    name,
                    {
                        "audience_id": audience.pk,
                        "audience_key": audience.key,
                        "audience_name": audience.name,
                        "subject": audience.subject,
                        "group_id": identities[c.subject].group_id,
                        "email": identities[c.subject].email,
                    },
                    identities[c.subject].user_id,
                )
                for c in picked
                if not (
                    demo_data
                    and marked_as_demo(identities[c.subject].user_id, identities[c.subject].email)
                )
            ]
        )
