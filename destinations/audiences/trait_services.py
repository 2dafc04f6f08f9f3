"""Create, change and delete computed traits; saving starts a computation job. A key is unique
among audiences and computed traits together: both become traits of the same user downstream."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from destinations import dispatch
from destinations.audiences.computed_traits import KINDS, clean_trait_definition
from destinations.audiences.definition import InvalidDefinition
from destinations.audiences.keys import snake_key
from destinations.audiences.live import forget_live
from destinations.audiences.services import InvalidAudience, checked_targets
from destinations.audit import record
from destinations.models import (
    Audience,
    AuditAction,
    ComputedTrait,
    ComputedTraitTarget,
    Destination,
    Job,
    JobKind,
    Profile,
)


def checked(definition: Any) -> dict[str, Any]:
    try:
        return clean_trait_definition(definition)
    except InvalidDefinition as exc:
        raise InvalidAudience(str(exc)) from exc


def describe_trait(definition: dict[str, Any]) -> str:
    text = f"{KINDS[definition['kind']]} {definition['event']!r}"
    if definition.get("property"):
        text = f"{KINDS[definition['kind']]} {definition['property']} of {definition['event']!r}"
    if definition.get("within_days"):
        text += f" in the last {definition['within_days']} days"
    return text


@transaction.atomic
def trait_create(
    *, name: str, definition: Any, destination_ids: Collection[int] = (), actor: User | None = None
) -> tuple[ComputedTrait, Job]:
    name = name.strip()
    key = snake_key(name)
    if not name or not key:
        raise InvalidAudience("give the computed trait a name with a letter or digit")
    if ComputedTrait.objects.filter(name=name).exists():
        raise InvalidAudience(f"a computed trait named {name!r} already exists")
    if ComputedTrait.objects.filter(key=key).exists() or Audience.objects.filter(key=key).exists():
        raise InvalidAudience(f"the key {key!r} is taken by an audience or computed trait")
    cleaned = checked(definition)
    targets = checked_targets(destination_ids)
    trait = ComputedTrait.objects.create(name=name, key=key, definition=cleaned)
    set_targets(trait, targets)
    record(
        AuditAction.AUDIENCE_CHANGED,
        f"Created computed trait {name!r} ({key}): {describe_trait(cleaned)}",
        actor=actor,
        trait=trait.pk,
        definition=cleaned,
    )
    return trait, start_trait_computation(trait, actor)


@transaction.atomic
def trait_update(
    trait: ComputedTrait,
    *,
    definition: Any,
    destination_ids: Collection[int],
    actor: User | None = None,
) -> Job | None:
    cleaned = checked(definition)
    targets = checked_targets(destination_ids)
    changed = cleaned != trait.definition
    ComputedTrait.objects.filter(pk=trait.pk).update(definition=cleaned, updated_at=timezone.now())
    trait.refresh_from_db()
    set_targets(trait, targets)
    record(
        AuditAction.AUDIENCE_CHANGED,
        f"Changed computed trait {trait.name!r}: {describe_trait(cleaned)}",
        actor=actor,
        trait=trait.pk,
        definition=cleaned,
    )
    return start_trait_computation(trait, actor) if changed else None


def set_targets(trait: ComputedTrait, targets: list[Destination]) -> None:
    ComputedTraitTarget.objects.filter(trait=trait).exclude(
        destination__in=[d.pk for d in targets]
    ).delete()
    for destination in targets:
        ComputedTraitTarget.objects.get_or_create(trait=trait, destination=destination)


def start_trait_computation(trait: ComputedTrait, actor: User | None) -> Job:
    job = Job.objects.create(
        kind=JobKind.COMPUTED_TRAIT,
        params={"trait_id": trait.pk},
        total=Profile.objects.filter(merged_into__isnull=True).count(),
        created_by=actor,
    )
    dispatch.run_job_on_commit(job.pk)
    return job


def trait_delete(trait: ComputedTrait, *, actor: User | None = None) -> None:
    """Values already sent stay where they are: a deleted trait sends nothing more."""
    with transaction.atomic():
        record(
            AuditAction.AUDIENCE_CHANGED,
            f"Deleted computed trait {trait.name!r} ({trait.key})",
            actor=actor,
            trait=trait.pk,
            definition=trait.definition,
        )
        trait.delete()
    forget_live()
