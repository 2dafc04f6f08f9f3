"""Create, change, preview and delete audiences. Saving starts a computation job; every change
is audited."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from destinations import dispatch
from destinations.audiences.compute import Outcome, apply_chunk, current_members
from destinations.audiences.definition import (
    InvalidDefinition,
    clean_definition,
    describe,
    referenced_audiences,
)
from destinations.audiences.evaluate import Evaluator
from destinations.audiences.keys import snake_key
from destinations.audiences.live import forget_live
from destinations.audiences.order import AudienceCycle, check_no_cycle
from destinations.audiences.sync import Change, sync_changes
from destinations.audit import record
from destinations.identity.bulk_write import bulk_write
from destinations.kinds import kind_label
from destinations.models import (
    Account,
    Audience,
    AudienceState,
    AudienceSubject,
    AudienceTarget,
    AuditAction,
    ComputedTrait,
    Destination,
    Job,
    JobKind,
    Profile,
)

# Kinds an audience can be synced to. Kana keeps only name, email and billing id of a user's
# traits, so an audience trait would be dropped there.
SYNC_KINDS = ("refiner", "webhook")
PREVIEW_EXAMPLES = 20


class InvalidAudience(ValueError):
    """The message says what is wrong, in the operator's words."""


@dataclass(frozen=True)
class Preview:
    size: int
    examples: list[Any]  # Profiles or Accounts
    evaluated_at: datetime


def preview(subject: str, definition: Any, *, audience_id: int | None = None) -> Preview:
    """How many match now, with examples; nothing is stored."""
    cleaned = checked_definition(subject, definition, audience_id=audience_id)
    now = timezone.now()
    members = Evaluator(subject, now=now).members(cleaned)
    model: Any = Account if subject == AudienceSubject.ACCOUNTS else Profile
    examples = list(model.objects.filter(pk__in=sorted(members)[:PREVIEW_EXAMPLES]))
    return Preview(size=len(members), examples=examples, evaluated_at=now)


def checked_definition(subject: str, definition: Any, *, audience_id: int | None) -> dict[str, Any]:
    if subject not in AudienceSubject.values:
        raise InvalidAudience(f"an audience is of users or accounts, not {subject!r}")
    try:
        cleaned = clean_definition(definition, subject=subject)
    except InvalidDefinition as exc:
        raise InvalidAudience(str(exc)) from exc
    used = referenced_audiences(cleaned)
    if used:
        found = dict(Audience.objects.filter(pk__in=used).values_list("pk", "subject"))
        for pk in sorted(used):
            if pk not in found:
                raise InvalidAudience(f"audience #{pk} does not exist")
            if found[pk] != subject:
                raise InvalidAudience(f"audience #{pk} is of {found[pk]}; this one is of {subject}")
        others = Audience.objects.all()
        if audience_id is not None:
            others = others.exclude(pk=audience_id)
        graph = {a.pk: referenced_audiences(a.definition) for a in others}
        try:
            check_no_cycle(audience_id, used, graph)
        except AudienceCycle as exc:
            raise InvalidAudience(str(exc)) from exc
    return cleaned


def checked_targets(destination_ids: Collection[int]) -> list[Destination]:
    destinations = list(Destination.objects.filter(pk__in=destination_ids))
    if len(destinations) != len(set(destination_ids)):
        raise InvalidAudience("one of the chosen destinations does not exist")
    for destination in destinations:
        if destination.kind not in SYNC_KINDS:
            raise InvalidAudience(
                f"{destination.name} is a {kind_label(destination.kind)} destination: audiences "
                "are synced to Refiner and webhooks (Kana keeps no other user traits)"
            )
    return destinations


@transaction.atomic
def audience_create(
    *,
    name: str,
    subject: str,
    definition: Any,
    destination_ids: Collection[int] = (),
    segments: Mapping[int, str] | None = None,
    actor: User | None = None,
) -> tuple[Audience, Job]:
    name = name.strip()
    if not name:
        raise InvalidAudience("give the audience a name")
    key = snake_key(name)
    if not key:
        raise InvalidAudience("the name needs a letter or digit to make its key from")
    if Audience.objects.filter(name=name).exists():
        raise InvalidAudience(f"an audience named {name!r} already exists")
    if Audience.objects.filter(key=key).exists() or ComputedTrait.objects.filter(key=key).exists():
        raise InvalidAudience(
            f"another audience or computed trait already has the key {key!r}; choose another name"
        )
    cleaned = checked_definition(subject, definition, audience_id=None)
    targets = checked_targets(destination_ids)
    audience = Audience.objects.create(name=name, key=key, subject=subject, definition=cleaned)
    set_targets(audience, targets, segments or {})
    record(
        AuditAction.AUDIENCE_CHANGED,
        f"Created audience {name!r} ({key})",
        actor=actor,
        audience=audience.pk,
        definition=cleaned,
        destinations=[d.pk for d in targets],
    )
    return audience, start_computation(audience, actor)


@transaction.atomic
def audience_update(
    audience: Audience,
    *,
    name: str,
    definition: Any,
    destination_ids: Collection[int],
    segments: Mapping[int, str] | None = None,
    actor: User | None = None,
) -> Job | None:
    """The key never changes. A changed definition is recomputed (only changes are sent); a
    newly added destination gets every current member."""
    name = name.strip()
    if not name:
        raise InvalidAudience("give the audience a name")
    if Audience.objects.filter(name=name).exclude(pk=audience.pk).exists():
        raise InvalidAudience(f"an audience named {name!r} already exists")
    cleaned = checked_definition(audience.subject, definition, audience_id=audience.pk)
    targets = checked_targets(destination_ids)
    before = set(audience.targets.values_list("destination_id", flat=True))
    changed = cleaned != audience.definition
    Audience.objects.filter(pk=audience.pk).update(
        name=name,
        definition=cleaned,
        version=audience.version + (1 if changed else 0),
        updated_at=timezone.now(),
    )
    audience.refresh_from_db()
    set_targets(audience, targets, segments or {})
    added = {d.pk for d in targets} - before
    record(
        AuditAction.AUDIENCE_CHANGED,
        f"Changed audience {name!r}"
        + (": " + "; ".join(describe(c) for c in cleaned["conditions"]) if changed else ""),
        actor=actor,
        audience=audience.pk,
        definition=cleaned,
        destinations=[d.pk for d in targets],
    )
    if added and audience.computed_at is not None:
        resend_members(audience, added)
    return start_computation(audience, actor) if changed else None


def set_targets(
    audience: Audience, targets: list[Destination], segments: Mapping[int, str]
) -> None:
    AudienceTarget.objects.filter(audience=audience).exclude(
        destination__in=[d.pk for d in targets]
    ).delete()
    for destination in targets:
        segment = segments.get(destination.pk, "") if destination.kind == "refiner" else ""
        AudienceTarget.objects.update_or_create(
            audience=audience, destination=destination, defaults={"refiner_segment": segment}
        )


def start_computation(audience: Audience, actor: User | None) -> Job:
    total = Evaluator(audience.subject).subjects().count()
    job = Job.objects.create(
        kind=JobKind.AUDIENCE, params={"audience_id": audience.pk}, total=total, created_by=actor
    )
    dispatch.run_job_on_commit(job.pk)
    return job


def resend_members(audience: Audience, destination_ids: Collection[int]) -> None:
    """A destination added to a computed audience is told every current member, as a first sync
    would: the messages are new (a fresh version), so they are not taken for ones already sent."""
    now = timezone.now()
    members = sorted(current_members(audience))
    column = "account_id" if audience.subject == AudienceSubject.ACCOUNTS else "profile_id"
    for start in range(0, len(members), 500):
        chunk = members[start : start + 500]
        with transaction.atomic():
            states = list(
                AudienceState.objects.select_for_update().filter(
                    audience=audience, member=True, **{f"{column}__in": chunk}
                )
            )
            for state in states:
                state.version += 1
            bulk_write(AudienceState, states, ["version"])
            changes = [Change(getattr(s, column), True, s.version) for s in states]
            sync_changes(audience, changes, now, only_destinations=destination_ids)


def audience_delete(
    audience: Audience, *, tell_members: bool = True, actor: User | None = None
) -> int:
    """Delete the audience; first, unless told not to, send ``false`` to its members. Returns
    how many were told. An audience another one uses in a condition is not deleted: that one
    would be left naming an audience that is gone."""
    users = [
        other.name
        for other in Audience.objects.exclude(pk=audience.pk).order_by("name")
        if audience.pk in referenced_audiences(other.definition)
    ]
    if users:
        named = ", ".join(repr(name) for name in users)
        raise InvalidAudience(
            f"{named} use{'s' if len(users) == 1 else ''} this audience in a condition: "
            "change or delete that first"
        )
    now = timezone.now()
    told = 0
    if tell_members:
        outcome = Outcome()
        members = sorted(current_members(audience))
        for start in range(0, len(members), 500):
            leave_chunk(audience, members[start : start + 500], now, outcome)
        told = len(outcome.left)
    name, key = audience.name, audience.key
    with transaction.atomic():
        record(
            AuditAction.AUDIENCE_CHANGED,
            f"Deleted audience {name!r} ({key})"
            + (f"; told {told} members they left" if tell_members else "; members not told"),
            actor=actor,
            audience=audience.pk,
            definition=audience.definition,
        )
        audience.delete()
    forget_live()
    return told


def leave_chunk(audience: Audience, chunk: list[int], now: datetime, outcome: Outcome) -> None:
    """Everyone in ``chunk`` leaves (the audience is going): an empty definition matches none."""
    apply_chunk(audience, chunk, now, outcome, definition={"match": "any", "conditions": []})
