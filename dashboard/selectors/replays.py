"""Reads for replays as the pages show them: a destination's replays (newest first, who started
each and what it sends), a replay job's progress, and a preview's rows and examples."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from destinations.models import Destination, Event, EventType, Job, JobStatus, Replay, Source
from destinations.replay.runner import outcome
from destinations.replay.services import ReplayPreview
from destinations.web.display_json import pretty_json

REPLAYS_SHOWN = 10
# A destination this young, with no replay yet, is offered its last 30 days of history.
NEW_DESTINATION_AGE = timedelta(days=7)
NAMES_SHOWN = 5
EXCERPT_CHARS = 160


@dataclass(frozen=True)
class ReplayRow:
    replay: Replay
    started_by: str
    scope: list[str]  # what it sends, a phrase each: range, sources, types, names

    @property
    def job(self) -> Job:
        return self.replay.job


@dataclass(frozen=True)
class DestinationReplays:
    rows: list[ReplayRow]
    total: int


def destination_replays(
    destination: Destination, *, job_id: int | None = None
) -> DestinationReplays:
    """The newest replays of ``destination``, and the one of ``job_id`` (a link's ``?job=``)
    even when it is older than those."""
    replays = (
        Replay.objects.filter(destination=destination)
        .select_related("job", "job__created_by")
        .order_by("-job__created_at", "-pk")
    )
    shown = list(replays[:REPLAYS_SHOWN])
    total = len(shown) if len(shown) < REPLAYS_SHOWN else replays.count()
    if job_id is not None and all(replay.job_id != job_id for replay in shown):
        shown.extend(replays.filter(job_id=job_id))
    source_ids = {int(pk) for replay in shown for pk in replay.source_ids if is_int(pk)}
    names = dict(Source.objects.filter(pk__in=source_ids).values_list("pk", "name"))
    return DestinationReplays([replay_row(replay, names) for replay in shown], total)


def replay_row(replay: Replay, source_names: Mapping[int, str]) -> ReplayRow:
    user = replay.job.created_by
    return ReplayRow(
        replay=replay,
        started_by=user.get_username() if user is not None else "Switchboard",
        scope=scope_of(replay, source_names),
    )


def scope_of(replay: Replay, source_names: Mapping[int, str]) -> list[str]:
    scope = [moment_range(replay.since, replay.until)]
    sources = [source_names.get(int(pk), f"source {pk}") for pk in replay.source_ids if is_int(pk)]
    scope.append(f"sources: {', '.join(sources)}" if sources else "every source")
    types = [str(t) for t in replay.types]
    scope.append(f"call types: {', '.join(types)}" if types else "every call type")
    names = [str(n) for n in replay.names]
    if names:
        more = len(names) - NAMES_SHOWN
        scope.append(
            "event names: "
            + ", ".join(names[:NAMES_SHOWN])
            + (f" and {more} more" if more > 0 else "")
        )
    scope.append(
        "already received included" if replay.include_received else "not yet received only"
    )
    return scope


def moment_range(since: datetime | None, until: datetime) -> str:
    """[since, until) in words: "from 2024-05-01 00:00 to 2024-05-08 00:00 UTC"."""
    end = until.strftime("%Y-%m-%d %H:%M")
    if since is None:
        return f"from any time before {end} UTC"
    return f"from {since.strftime('%Y-%m-%d %H:%M')} to {end} UTC"


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def offers_history(destination: Destination, replays: DestinationReplays) -> bool:
    """Whether the page offers a new destination its last 30 days: while it has no replay."""
    young = timezone.now() - destination.created_at < NEW_DESTINATION_AGE
    return young and replays.total == 0


# --- a replay job's progress ----------------------------------------------------------------


@dataclass(frozen=True)
class ReplayProgress:
    scanned: int
    total: int
    planned: int
    delivered: int
    failed: int
    waiting: int  # retrying now (while it runs), or still waiting to be sent (once it ended)
    skipped_total: int
    skipped: list[tuple[str, int]] = field(default_factory=list)
    cancelled: int = 0  # planned deliveries not sent because of a cancel
    final: bool = False  # delivered, failed and waiting are each row's state, not running tallies


def replay_progress(job: Job) -> ReplayProgress:
    """The job's counters as the progress bar shows them. While it runs, the lanes' tallies;
    once it ended, the state of every delivery it made, read again while some still wait (a
    retry settles after the job is done)."""
    counters: Mapping[str, Any] = job.counters if isinstance(job.counters, Mapping) else {}
    result = counters.get("outcome")
    final = isinstance(result, Mapping)
    ended = job.status in (JobStatus.DONE, JobStatus.CANCELLED)
    if ended and isinstance(result, Mapping) and number(result, "waiting"):
        replay = Replay.objects.filter(job=job).first()
        result = outcome(replay) if replay is not None else result
    now: Mapping[str, Any] = result if isinstance(result, Mapping) else counters
    skipped = counters.get("skipped")
    reasons = skipped.items() if isinstance(skipped, Mapping) else ()
    return ReplayProgress(
        scanned=job.done,
        total=job.total,
        planned=number(counters, "planned"),
        delivered=number(now, "delivered"),
        failed=number(now, "failed"),
        waiting=number(now, "waiting" if final else "retrying"),
        skipped_total=number(counters, "skipped_total"),
        skipped=[(str(reason), count) for reason, count in reasons if isinstance(count, int)],
        cancelled=number(counters, "cancelled"),
        final=final,
    )


def number(values: Mapping[str, Any], name: str) -> int:
    value = values.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# --- the preview ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TypeRow:
    type: str
    in_range: int
    sending: int


@dataclass(frozen=True)
class PreviewExample:
    event: Event
    excerpt: str  # its properties (traits for identify and group) on one line


def type_rows(preview: ReplayPreview) -> list[TypeRow]:
    """A row per call type in range, most events first."""
    counts = sorted(preview.by_type.items(), key=lambda item: (-item[1], item[0]))
    return [TypeRow(kind, n, preview.sending_by_type.get(kind, 0)) for kind, n in counts]


def preview_examples(preview: ReplayPreview) -> list[PreviewExample]:
    return [PreviewExample(event, excerpt(event)) for event in preview.examples]


def excerpt(event: Event) -> str:
    payload = event.payload if isinstance(event.payload, Mapping) else {}
    key = "traits" if event.type in (EventType.IDENTIFY, EventType.GROUP) else "properties"
    shown = payload.get(key)
    text = pretty_json(shown if isinstance(shown, Mapping) else {}, indent=None)
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"
