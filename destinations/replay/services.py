"""What operators do with replays: preview, start, pause, resume, cancel. Each is audited."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from destinations import dispatch
from destinations.audit import record
from destinations.delivery.routing import route_of
from destinations.kinds import CONNECTORS
from destinations.models import (
    AuditAction,
    Destination,
    Event,
    Job,
    JobKind,
    JobStatus,
    Replay,
    ReplayLane,
)
from destinations.replay import counters
from destinations.replay.definition import ReplayDefinition
from destinations.replay.planning import decide
from destinations.replay.runner import cancel_waiting, outcome, pause
from destinations.replay.selection import candidates, stream

# The preview decides routing for at most this many events; past it, its figures are scaled.
PREVIEW_SCAN = 20_000
PREVIEW_EXAMPLES = 5
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED)


class ReplayRefused(Exception):
    """The replay cannot start or change now; the message says why."""


@dataclass
class ReplayPreview:
    candidates: int = 0  # events in range and narrowing, not received yet (or asked for)
    by_type: dict[str, int] = field(default_factory=dict)
    sending: int = 0  # of them, how many would be sent
    sending_by_type: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # why the rest would not be
    examples: list[Event] = field(default_factory=list)
    # False when only the first PREVIEW_SCAN were routed and the rest estimated from them.
    exact: bool = True


def preview(destination: Destination, definition: ReplayDefinition) -> ReplayPreview:
    received_before = timezone.now()
    events = candidates(destination, definition, received_before)
    by_type = dict(
        events.order_by().values_list("type").annotate(n=Count("id")).values_list("type", "n")
    )
    result = ReplayPreview(candidates=sum(by_type.values()), by_type=by_type)
    if not result.candidates or destination.kind not in CONNECTORS:
        return result
    route = route_of(destination)
    scanned, sending, skipped = 0, Counter[str](), Counter[str]()
    example_ids: list[int] = []
    for page in stream(destination, definition, received_before, 1000):
        for pk, kind, payload in page:
            decision = decide(payload, route)
            if isinstance(decision, str):
                skipped[decision] += 1
            else:
                sending[kind] += 1
                if len(example_ids) < PREVIEW_EXAMPLES:
                    example_ids.append(pk)
        scanned += len(page)
        if scanned >= PREVIEW_SCAN:
            break
    scale = result.candidates / scanned if scanned else 1.0
    result.exact = scanned >= result.candidates
    result.sending_by_type = {k: round(n * scale) for k, n in sending.most_common()}
    result.sending = sum(result.sending_by_type.values())
    result.skipped = {reason: round(n * scale) for reason, n in skipped.most_common(10)}
    examples = Event.objects.select_related("source").in_bulk(example_ids)
    result.examples = [examples[pk] for pk in example_ids if pk in examples]
    return result


def active_replay(destination: Destination) -> Replay | None:
    return (
        Replay.objects.select_related("job")
        .filter(destination=destination, job__status__in=ACTIVE)
        .first()
    )


def start(destination: Destination, definition: ReplayDefinition, *, actor: User | None) -> Replay:
    if destination.kind not in CONNECTORS:
        raise ReplayRefused(f"This version cannot deliver to a {destination.kind!r} destination.")
    with transaction.atomic():
        # One replay per destination at a time: two would each send the same events once.
        Destination.objects.select_for_update().filter(pk=destination.pk).first()
        if active_replay(destination) is not None:
            raise ReplayRefused(
                "A replay to this destination is already running or paused: let it finish, "
                "or cancel it, before starting another."
            )
        received_before = timezone.now()
        total = candidates(destination, definition, received_before).count()
        job = Job.objects.create(
            kind=JobKind.REPLAY,
            params={"destination_id": destination.pk, **definition.as_params()},
            total=total,
            counters=counters.total([]),
            created_by=actor,
        )
        replay = Replay.objects.create(
            job=job,
            destination=destination,
            since=definition.since,
            until=definition.until,
            received_before=received_before,
            source_ids=list(definition.source_ids),
            types=list(definition.types),
            names=list(definition.names),
            include_received=definition.include_received,
            lanes=max(1, settings.REPLAY_LANES),
        )
        ReplayLane.objects.bulk_create(
            ReplayLane(replay=replay, number=n, counters=counters.empty())
            for n in range(replay.lanes)
        )
        record(
            AuditAction.REPLAY,
            f"Started replaying {total} stored events to {destination.name}",
            actor=actor,
            destination=destination.pk,
            job=job.pk,
            **definition.as_params(),
        )
        dispatch.run_job_on_commit(job.pk, job.kind)
    return replay


def pause_replay(replay: Replay, *, actor: User | None) -> bool:
    if not pause(replay.job, f"Paused by {actor.get_username() if actor else 'Switchboard'}."):
        return False
    audit(replay, "Paused", actor)
    return True


def resume_replay(replay: Replay, *, actor: User | None) -> bool:
    destination = Destination.objects.get(pk=replay.destination_id)
    if not destination.is_active:
        raise ReplayRefused(
            "The destination is paused or turned off: resume it first, then the replay."
        )
    with transaction.atomic():
        resumed = Job.objects.filter(pk=replay.job_id, status=JobStatus.PAUSED).update(
            status=JobStatus.QUEUED, error="", heartbeat_at=None
        )
        if not resumed:
            return False
        audit(replay, "Resumed", actor)
        dispatch.run_job_on_commit(replay.job_id, JobKind.REPLAY)
    return True


def cancel_replay(replay: Replay, *, actor: User | None) -> bool:
    """Stops the replay for good: what it has not sent is not sent. A running replay stops
    after the page each lane is sending."""
    cancelled = Job.objects.filter(pk=replay.job_id, status__in=ACTIVE).update(
        status=JobStatus.CANCELLED, finished_at=timezone.now()
    )
    if not cancelled:
        return False
    skipped = cancel_waiting(replay)
    job = Job.objects.get(pk=replay.job_id)
    job.counters = {**job.counters, "cancelled": skipped, "outcome": outcome(replay)}
    job.save(update_fields=["counters"])
    audit(replay, "Cancelled", actor)
    return True


def audit(replay: Replay, verb: str, actor: User | None) -> None:
    name = Destination.objects.filter(pk=replay.destination_id).values_list("name", flat=True)
    record(
        AuditAction.REPLAY,
        f"{verb} the replay to {name.first() or 'a deleted destination'}",
        actor=actor,
        destination=replay.destination_id,
        job=replay.job_id,
    )
