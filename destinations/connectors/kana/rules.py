"""Create, change, order and delete mapping rules. Saving a rule applies it retroactively."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from destinations import dispatch
from destinations.conditions import InvalidCondition, clean_conditions, describe
from destinations.connectors.kana import KIND
from destinations.connectors.kana.unmapped import rule_scope
from destinations.delivery.routing import forget_cached_destinations
from destinations.models import (
    AuditAction,
    AuditEntry,
    Destination,
    Job,
    JobKind,
    MappingRule,
)


class InvalidRule(ValueError):
    """The message names what is wrong with the rule."""


def validate_rule(
    *, event_name: str, conditions: Sequence[Mapping[str, Any]], feature_id: str
) -> list[dict[str, Any]]:
    if not feature_id.strip():
        raise InvalidRule("choose the Kana feature this rule records usage of")
    try:
        cleaned = clean_conditions(conditions)
    except InvalidCondition as exc:
        raise InvalidRule(str(exc)) from exc
    for number, condition in enumerate(cleaned, start=1):
        if condition["path"] == "event":
            raise InvalidRule(
                f"condition {number}: a rule has at most one event-name condition; "
                "use the Event name field"
            )
    if not event_name.strip() and not cleaned:
        raise InvalidRule("a rule needs an event name or at least one property condition")
    return cleaned


def rule_save(
    *,
    destination: Destination,
    event_name: str,
    conditions: Sequence[Mapping[str, Any]],
    feature_id: str,
    enabled: bool = True,
    rule: MappingRule | None = None,
    user: User | None = None,
) -> tuple[MappingRule, Job | None]:
    """Create or change a rule; an enabled rule is then applied to stored unmapped events by a
    reprocessing job, returned so the page can show its progress."""
    if destination.kind != KIND:
        raise InvalidRule("mapping rules belong to a Kana destination")
    cleaned = validate_rule(event_name=event_name, conditions=conditions, feature_id=feature_id)
    with transaction.atomic():
        if rule is None:
            last = MappingRule.objects.filter(destination=destination).aggregate(Max("position"))
            rule = MappingRule(destination=destination, position=(last["position__max"] or 0) + 1)
        rule.event_name = event_name.strip()
        rule.conditions = cleaned
        rule.feature_id = feature_id.strip()
        rule.enabled = enabled
        rule.updated_at = timezone.now()
        rule.save()
        job = reprocess_start(rule, user) if enabled else None
        AuditEntry.objects.create(
            actor=user,
            action=AuditAction.RULE_CHANGED,
            summary=f"Saved mapping rule {rule.pk} on {destination.name}: {rule_words(rule)}"
            + ("" if enabled else " (disabled)"),
            data={"rule": rule.pk, "destination": destination.pk, "job": job.pk if job else None},
        )
    forget_cached_destinations()
    return rule, job


def reprocess_start(rule: MappingRule, user: User | None) -> Job:
    job = Job.objects.create(
        kind=JobKind.REPROCESS,
        params={"rule_id": rule.pk},
        total=rule_scope(rule).count(),
        created_by=user,
    )
    dispatch.run_job_on_commit(job.pk)
    return job


def rule_delete(rule: MappingRule, *, user: User | None = None) -> None:
    """Usage already recorded stays recorded: Kana keeps it, and so does the delivery log."""
    AuditEntry.objects.create(
        actor=user,
        action=AuditAction.RULE_CHANGED,
        summary=f"Deleted mapping rule {rule.pk} on {rule.destination.name}: {rule_words(rule)}",
        data={"rule": rule.pk, "destination": rule.destination_id},
    )
    rule.delete()
    forget_cached_destinations()


def rule_words(rule: MappingRule) -> str:
    conditions = " and ".join(describe(c) for c in rule.all_conditions())
    return f"{conditions} -> {rule.feature_id}"


def rule_move(rule: MappingRule, *, up: bool) -> None:
    """Swap with the neighbour above or below: order decides which matching rule wins."""
    siblings = list(MappingRule.objects.filter(destination_id=rule.destination_id))
    index = next(i for i, r in enumerate(siblings) if r.pk == rule.pk)
    other = index - 1 if up else index + 1
    if not 0 <= other < len(siblings):
        return
    with transaction.atomic():
        for position, item in enumerate(siblings, start=1):
            item.position = position
        siblings[index].position, siblings[other].position = (
            siblings[other].position,
            siblings[index].position,
        )
        MappingRule.objects.bulk_update(siblings, ["position"])
    forget_cached_destinations()
