"""Delete a user: optionally its events, a suppression of its future events, and its Refiner
contact."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import transaction

from destinations import dispatch, system_events
from destinations.identity.suppression import forget_cached_suppressions
from destinations.models import (
    AuditAction,
    AuditEntry,
    Event,
    Profile,
    Suppression,
    SuppressionKind,
)

DELETE_CHUNK = 5000


@dataclass(frozen=True)
class DeleteOptions:
    delete_events: bool = False
    suppress: bool = False
    delete_in_refiner: bool = False


def profile_delete(
    profile: Profile, options: DeleteOptions, *, actor: User | None = None
) -> AuditEntry:
    """Profiles merged into this one go with it: they are the same person."""
    if profile.merged_into_id:
        # Its events now belong to the survivor; deleting the row alone would only break the
        # merge's undo. The person is the survivor.
        raise ValueError(f"{profile} was merged into another user: delete that user instead")
    with transaction.atomic():
        people = list(Profile.objects.filter(pk=profile.pk)) + list(
            Profile.objects.filter(merged_into=profile)
        )
        ids = [p.pk for p in people]
        identities = [{"user_id": p.user_id, "email": p.email} for p in people]
        events = 0
        if options.delete_events:
            events = delete_events_of(ids)
        suppressed: list[str] = []
        if options.suppress:
            suppressed = suppress(people)
        Profile.objects.filter(pk__in=ids).delete()
        summary = f"Deleted {profile}"
        if len(people) > 1:
            summary += f" with {len(people) - 1} merged profile(s)"
        summary += f" and {events} events" if options.delete_events else " (events kept)"
        if suppressed:
            summary += "; future events suppressed for " + ", ".join(suppressed)
        entry = AuditEntry.objects.create(
            actor=actor,
            action=AuditAction.DELETE,
            summary=summary,
            data={
                "profiles": ids,
                "identities": identities,
                "events_deleted": events,
                "suppressed": suppressed,
                "refiner_requested": options.delete_in_refiner,
            },
        )
        if options.delete_in_refiner:
            dispatch.delete_refiner_contacts_on_commit(entry.pk, identities)
        system_events.user_deleted(identities, entry.pk, events)
    forget_cached_suppressions()
    return entry


def delete_events_of(profile_ids: list[int]) -> int:
    """In chunks: deleting an event also deletes its deliveries and their attempts."""
    total = 0
    while True:
        chunk = list(
            Event.objects.filter(profile_id__in=profile_ids).values_list("id", flat=True)[
                :DELETE_CHUNK
            ]
        )
        if not chunk:
            return total
        Event.objects.filter(id__in=chunk).delete()
        total += len(chunk)


def suppress(people: list[Profile]) -> list[str]:
    wanted: list[tuple[str, str]] = []
    for person in people:
        if person.user_id:
            wanted.append((SuppressionKind.USER_ID, person.user_id))
        if person.email:
            wanted.append((SuppressionKind.EMAIL, person.email))
    Suppression.objects.bulk_create(
        [Suppression(kind=kind, value=value, reason="user deleted") for kind, value in wanted],
        ignore_conflicts=True,
    )
    return [f"{SuppressionKind(kind).label} {value}" for kind, value in wanted]
