"""Merge user profiles, preview what a merge moves, and undo it exactly.

A merge moves the absorbed profiles' events, anonymous ids and account memberships to the
survivor, sets the survivor's fields from the operator's choices, and keeps the absorbed rows
(pointing at the survivor) so their user ids still resolve to it. Everything an undo needs is
recorded in the audit entry: moved events are marked with ``merged_from`` (no list of ids is
kept, however many events move), and the rest is small.

Invariant: ``merged_into`` always points at a profile that is not itself merged. Merging a
survivor of an earlier merge re-points that merge's absorbed profiles at the new survivor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from destinations import dispatch, system_events
from destinations.audiences import live as audiences_live
from destinations.models import (
    AnonymousId,
    AuditAction,
    AuditEntry,
    Event,
    Membership,
    Profile,
)
from destinations.people.resend import resend_profiles

# Fields the operator may take from any of the merged profiles.
CHOOSABLE = ("user_id", "email", "name", "billing_id")
SNAPSHOT = (*CHOOSABLE, "traits", "first_seen_at", "last_seen_at", "merged_into_id")


class MergeRefused(ValueError):
    """The message says why, in the operator's words."""


@dataclass
class MergePlan:
    survivor: Profile
    absorbed: list[Profile]
    values: dict[str, Any]  # the survivor's fields after the merge
    events: int
    anonymous_ids: list[str]
    memberships: list[str]
    changes: list[tuple[str, Any, Any]] = field(default_factory=list)  # field, before, after


def default_survivor(profiles: Sequence[Profile]) -> Profile:
    """Kana's rule: the profile created first survives."""
    return min(profiles, key=lambda p: (p.created_at, p.pk))


def plan_merge(
    *, survivor: Profile, absorbed: Sequence[Profile], choices: Mapping[str, int] | None = None
) -> MergePlan:
    """What the merge would do, without doing it. ``choices`` maps a field to the id of the
    profile whose value is kept; by default the survivor's own value, else the first absorbed
    profile that has one."""
    check_mergeable(survivor, absorbed)
    everyone = {p.pk: p for p in (survivor, *absorbed)}
    values: dict[str, Any] = {}
    for name in CHOOSABLE:
        chosen = (choices or {}).get(name)
        if chosen is not None and chosen not in everyone:
            raise MergeRefused(f"the value for {name} must come from one of the merged users")
        source = everyone[chosen] if chosen is not None else None
        if source is None:
            source = next((p for p in (survivor, *absorbed) if getattr(p, name)), survivor)
        values[name] = getattr(source, name)
    if survivor.user_id and values["user_id"] != survivor.user_id:
        # Its old id would then name nobody, and its next event would make a new user.
        raise MergeRefused(
            f"the survivor keeps its own userId {survivor.user_id!r}; to keep "
            f"{values['user_id']!r}, choose that user as the survivor"
        )
    traits: dict[str, Any] = {}
    for profile in sorted(absorbed, key=lambda p: p.pk):
        traits.update(profile.traits or {})
    values["traits"] = {**traits, **(survivor.traits or {})}
    seen = [p.first_seen_at for p in everyone.values() if p.first_seen_at]
    last = [p.last_seen_at for p in everyone.values() if p.last_seen_at]
    values["first_seen_at"] = min(seen) if seen else None
    values["last_seen_at"] = max(last) if last else None
    absorbed_ids = [p.pk for p in absorbed]
    plan = MergePlan(
        survivor=survivor,
        absorbed=list(absorbed),
        values=values,
        events=Event.objects.filter(profile_id__in=absorbed_ids).count(),
        anonymous_ids=list(
            AnonymousId.objects.filter(profile_id__in=absorbed_ids).values_list("value", flat=True)
        ),
        memberships=[
            str(m.account)
            for m in Membership.objects.filter(profile_id__in=absorbed_ids).select_related(
                "account"
            )
        ],
    )
    plan.changes = [
        (name, getattr(survivor, name), values[name])
        for name in CHOOSABLE
        if getattr(survivor, name) != values[name]
    ]
    return plan


def check_mergeable(survivor: Profile, absorbed: Sequence[Profile]) -> None:
    if not absorbed:
        raise MergeRefused("choose at least one user to merge into the survivor")
    if any(p.pk == survivor.pk for p in absorbed):
        raise MergeRefused("the survivor cannot also be merged away")
    for profile in (survivor, *absorbed):
        if profile.merged_into_id:
            raise MergeRefused(f"{profile} was already merged into another user")


def profile_merge(
    *,
    survivor: Profile,
    absorbed: Sequence[Profile],
    choices: Mapping[str, int] | None = None,
    actor: User | None = None,
    delete_absorbed_in_refiner: bool = False,
) -> AuditEntry:
    with transaction.atomic():
        survivor, absorbed = lock_profiles(survivor, absorbed)
        plan = plan_merge(survivor=survivor, absorbed=absorbed, choices=choices)
        absorbed_ids = [p.pk for p in absorbed]
        data: dict[str, Any] = {
            "survivor": survivor.pk,
            "absorbed": absorbed_ids,
            "before": {str(p.pk): snapshot(p) for p in (survivor, *absorbed)},
            "anonymous_ids": list(
                AnonymousId.objects.filter(profile_id__in=absorbed_ids).values_list(
                    "pk", "profile_id"
                )
            ),
            "repointed": list(
                Profile.objects.filter(merged_into_id__in=absorbed_ids).values_list(
                    "pk", "merged_into_id"
                )
            ),
            "events": plan.events,
        }
        data["memberships"] = move_memberships(survivor, absorbed_ids)
        # Events keep where they came from, unless an earlier merge already marked them.
        Event.objects.filter(profile_id__in=absorbed_ids, merged_from__isnull=True).update(
            merged_from_id=F("profile_id"), profile_id=survivor.pk
        )
        Event.objects.filter(profile_id__in=absorbed_ids).update(profile_id=survivor.pk)
        AnonymousId.objects.filter(profile_id__in=absorbed_ids).update(profile_id=survivor.pk)
        Profile.objects.filter(merged_into_id__in=absorbed_ids).update(merged_into_id=survivor.pk)
        # A user id taken over by the survivor is released first: the column is unique.
        Profile.objects.filter(pk__in=absorbed_ids, user_id=plan.values["user_id"]).exclude(
            user_id=None
        ).update(user_id=None)
        Profile.objects.filter(pk__in=absorbed_ids).update(merged_into_id=survivor.pk)
        Profile.objects.filter(pk=survivor.pk).update(**plan.values)
        names = ", ".join(str(p) for p in absorbed)
        entry = AuditEntry.objects.create(
            actor=actor,
            action=AuditAction.MERGE,
            summary=f"Merged {names} into {describe(survivor, plan.values)} "
            f"({plan.events} events moved)",
            data=data,
        )
        survivor.refresh_from_db()
        audiences_live.people_merged(survivor.pk, absorbed_ids)
        resend_profiles([survivor])
        system_events.user_merged(
            snapshot_identity(survivor), [snapshot_identity(p) for p in absorbed], entry.pk
        )
        if delete_absorbed_in_refiner:
            dispatch.delete_refiner_contacts_on_commit(
                entry.pk, [snapshot_identity(p) for p in absorbed]
            )
    return entry


def merge_undo(entry: AuditEntry, *, actor: User | None = None) -> AuditEntry:
    """Put everything back as it was before ``entry``'s merge."""
    if entry.action != AuditAction.MERGE:
        raise MergeRefused("only a merge can be undone")
    if entry.undone_at:
        raise MergeRefused("this merge was already undone")
    retention = timedelta(days=settings.MERGE_UNDO_DAYS)
    if timezone.now() - entry.created_at > retention:
        raise MergeRefused(f"merges can be undone for {settings.MERGE_UNDO_DAYS} days")
    data = entry.data
    survivor_id, absorbed_ids = data["survivor"], data["absorbed"]
    with transaction.atomic():
        survivor = lock_profiles_by_id([survivor_id, *absorbed_ids]).get(survivor_id)
        if survivor is None:
            raise MergeRefused("the surviving user was deleted since; the merge cannot be undone")
        if survivor.merged_into_id:
            raise MergeRefused(
                f"{survivor} was merged into another user since: undo that merge first"
            )
        for pk, before in data["before"].items():
            restore(int(pk), before, skip_user_id=int(pk) == survivor_id)
        # The survivor's own user id goes back last: an absorbed profile may have held it.
        restore(survivor_id, data["before"][str(survivor_id)], only_user_id=True)
        for pk, parent in data["repointed"]:
            Profile.objects.filter(pk=pk, merged_into_id=survivor_id).update(merged_into_id=parent)
        moved_back = {pk for pk, _ in data["repointed"]} | set(absorbed_ids)
        for pk in absorbed_ids:
            tree = {pk} | {child for child, parent in data["repointed"] if parent == pk}
            Event.objects.filter(profile_id=survivor_id, merged_from_id__in=tree).update(
                profile_id=pk
            )
        Event.objects.filter(merged_from_id__in=absorbed_ids).filter(
            profile_id=F("merged_from_id")
        ).update(merged_from=None)
        for pk, profile_id in data["anonymous_ids"]:
            AnonymousId.objects.filter(pk=pk).update(profile_id=profile_id)
        restore_memberships(data["memberships"])
        entry.undone_at = timezone.now()
        entry.save(update_fields=["undone_at"])
        undo = AuditEntry.objects.create(
            actor=actor,
            action=AuditAction.MERGE_UNDONE,
            summary=f"Undid: {entry.summary}",
            data={"merge": entry.pk, "profiles": sorted(moved_back | {survivor_id})},
        )
        resend_profiles(list(Profile.objects.filter(pk__in=[survivor_id, *absorbed_ids])))
        audiences_live.reevaluate_after_commit([survivor_id, *absorbed_ids])
    return undo


def move_memberships(survivor: Profile, absorbed_ids: list[int]) -> list[list[Any]]:
    """Move memberships to the survivor; one it already has is dropped. Returns what undo
    needs: [membership id or None, profile id, account id, created_at, moved?]."""
    have = set(Membership.objects.filter(profile=survivor).values_list("account_id", flat=True))
    record: list[list[Any]] = []
    for membership in Membership.objects.filter(profile_id__in=absorbed_ids).order_by("id"):
        created = membership.created_at.isoformat()
        if membership.account_id in have:
            record.append([None, membership.profile_id, membership.account_id, created, False])
            membership.delete()
        else:
            have.add(membership.account_id)
            record.append(
                [membership.pk, membership.profile_id, membership.account_id, created, True]
            )
            Membership.objects.filter(pk=membership.pk).update(profile_id=survivor.pk)
    return record


def restore_memberships(record: list[list[Any]]) -> None:
    for pk, profile_id, account_id, created, moved in record:
        if moved:
            Membership.objects.filter(pk=pk).update(profile_id=profile_id)
        else:
            Membership.objects.get_or_create(
                profile_id=profile_id,
                account_id=account_id,
                defaults={"created_at": parse_datetime(created)},
            )


def restore(
    pk: int, before: Mapping[str, Any], *, skip_user_id: bool = False, only_user_id: bool = False
) -> None:
    if only_user_id:
        Profile.objects.filter(pk=pk).update(user_id=before["user_id"])
        return
    values = {k: v for k, v in before.items() if not (skip_user_id and k == "user_id")}
    for name in ("first_seen_at", "last_seen_at"):
        values[name] = parse_datetime(values[name]) if values.get(name) else None
    if skip_user_id:
        # Release it for now: the survivor's own id is restored after everyone else's.
        values["user_id"] = None
    Profile.objects.filter(pk=pk).update(**values)


def snapshot(profile: Profile) -> dict[str, Any]:
    values = {name: getattr(profile, name) for name in SNAPSHOT}
    for name in ("first_seen_at", "last_seen_at"):
        values[name] = values[name].isoformat() if values[name] else None
    return values


def snapshot_identity(profile: Profile) -> dict[str, str | None]:
    return {"user_id": profile.user_id, "email": profile.email}


def describe(profile: Profile, values: Mapping[str, Any]) -> str:
    return str(values.get("user_id") or values.get("email") or f"profile {profile.pk}")


def lock_profiles(survivor: Profile, absorbed: Sequence[Profile]) -> tuple[Profile, list[Profile]]:
    rows = lock_profiles_by_id([survivor.pk, *(p.pk for p in absorbed)])
    missing = [p for p in (survivor, *absorbed) if p.pk not in rows]
    if missing:
        raise MergeRefused(f"{missing[0]} no longer exists")
    return rows[survivor.pk], [rows[p.pk] for p in absorbed]


def lock_profiles_by_id(ids: Sequence[int]) -> dict[int, Profile]:
    rows = Profile.objects.filter(pk__in=list(ids)).order_by("pk")
    if connection.features.has_select_for_update:
        rows = rows.select_for_update()
    return {p.pk: p for p in rows}
