"""Reads for Kana mapping rules, unmapped events, the reprocessing job's page and event
filters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Max, Q
from django.utils import timezone

from destinations.connectors.kana import KIND
from destinations.connectors.kana.connector import fetch_features
from destinations.connectors.kana.unmapped import preview, unmapped_deliveries
from destinations.crypto import SecretsUnreadable
from destinations.delivery.contract import ConnectionFailed
from destinations.delivery.health import BACKLOG_STATUSES
from destinations.delivery.http import session
from destinations.models import (
    Delivery,
    DeliveryStatus,
    Destination,
    Job,
    JobKind,
    JobStatus,
    MappingRule,
)
from destinations.web.display_json import pretty_json

UNMAPPED_NAMES_SHOWN = 100
PREVIEW_EXAMPLES = 5
PROPERTIES_EXCERPT_CHARS = 160
# A finished job's page keeps polling while the usage it queued is being sent, but not for
# ever: with no worker running, those rows would wait, and the page would poll, all day.
FOLLOW_DELIVERY_FOR = timedelta(minutes=10)
# Still on its way; a row waiting to retry has met an error and is the Event delivery
# page's business, so the progress page stops following it.
IN_FLIGHT = (DeliveryStatus.PENDING, DeliveryStatus.SENDING)


# --- destinations ---------------------------------------------------------------------------


def kana_destination(destination_id: int) -> Destination | None:
    return Destination.objects.filter(pk=destination_id, kind=KIND).first()


def kana_destinations() -> list[Destination]:
    return list(Destination.objects.filter(kind=KIND).order_by("name"))


# --- rules ----------------------------------------------------------------------------------


def rules_with_counts(destination: Destination) -> list[MappingRule]:
    """The destination's rules in the order they are tried, each annotated with the
    deliveries it gave a feature to, by status: one query."""
    by_rule = "deliveries__status"
    return list(
        MappingRule.objects.filter(destination=destination)
        .annotate(
            delivered=Count("deliveries", filter=Q(**{by_rule: DeliveryStatus.DELIVERED})),
            pending=Count("deliveries", filter=Q(**{f"{by_rule}__in": BACKLOG_STATUSES})),
            failed=Count("deliveries", filter=Q(**{by_rule: DeliveryStatus.FAILED})),
        )
        .order_by("position", "id")
    )


def rule_count(destination: Destination) -> int:
    return MappingRule.objects.filter(destination=destination).count()


def rule_of(destination: Destination, rule_id: int) -> MappingRule | None:
    return MappingRule.objects.filter(pk=rule_id, destination=destination).first()


# --- Kana's features ------------------------------------------------------------------------


@dataclass(frozen=True)
class KanaFeature:
    id: str
    name: str

    @property
    def label(self) -> str:
        return f"{self.name} ({self.id})" if self.name and self.name != self.id else self.id


@dataclass(frozen=True)
class FeatureList:
    features: list[KanaFeature]
    problem: str = ""  # why there is no list: the editor then takes a typed feature id

    @property
    def available(self) -> bool:
        return not self.problem


def kana_features(destination: Destination) -> FeatureList:
    """Kana's feature list for the rule editor's picker, asked with the destination's own
    settings; when Kana cannot be asked, the reason, for a free-text fallback."""
    try:
        config = destination.config()
    except SecretsUnreadable:
        return FeatureList(
            [],
            "Kana could not be reached: the saved API key cannot be decrypted (the encryption "
            "key changed); enter it again in the destination's settings — type the feature id",
        )
    try:
        found = fetch_features(config, session())
    except ConnectionFailed as exc:
        return FeatureList([], f"Kana could not be reached: {exc.message} — type the feature id")
    if not found:
        return FeatureList(
            [], "Kana lists no features yet: create the feature in Kana, or type its id"
        )
    features = [KanaFeature(str(f["id"]), str(f.get("name") or "")) for f in found]
    return FeatureList(sorted(features, key=lambda f: (f.name.lower(), f.id)))


# --- unmapped events ------------------------------------------------------------------------


@dataclass(frozen=True)
class UnmappedGroup:
    event_name: str | None
    count: int
    last_seen: datetime | None


def unmapped_groups(destination: Destination) -> list[UnmappedGroup]:
    """Events Kana got no feature for, by event name, most recently seen first: one GROUP BY
    query, at most UNMAPPED_NAMES_SHOWN names."""
    rows = (
        unmapped_deliveries(destination)
        .values("event__event")
        .annotate(count=Count("id"), last_seen=Max("received_at"))
        .order_by("-last_seen", "event__event")[:UNMAPPED_NAMES_SHOWN]
    )
    return [UnmappedGroup(r["event__event"], r["count"], r["last_seen"]) for r in rows]


def unmapped_total(destination: Destination) -> int:
    return unmapped_deliveries(destination).count()


# --- preview --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreviewExample:
    event_name: str
    user_id: str
    properties: str  # compact JSON, cut to a line or two


@dataclass(frozen=True)
class RulePreview:
    count: int
    examples: list[PreviewExample] = field(default_factory=list)
    complete: bool = True  # False: stopped early, so the count is a lower bound


def rule_preview(
    destination: Destination, *, event_name: str, conditions: Sequence[Mapping[str, Any]]
) -> RulePreview:
    """How many stored unmapped events a rule with these conditions would match, with a few
    examples. The rule is built, never saved."""
    unsaved = MappingRule(
        destination=destination, event_name=event_name.strip(), conditions=list(conditions)
    )
    count, payloads, complete = preview(unsaved, examples=PREVIEW_EXAMPLES)
    return RulePreview(count, [preview_example(payload) for payload in payloads], complete)


def preview_example(payload: Mapping[str, Any]) -> PreviewExample:
    properties = payload.get("properties")
    # Keys sorted: PostgreSQL's JSONB keeps them in its own order, SQLite in the order sent.
    shown = properties if isinstance(properties, Mapping) else {}
    text = pretty_json(shown, indent=None)
    if len(text) > PROPERTIES_EXCERPT_CHARS:
        text = text[: PROPERTIES_EXCERPT_CHARS - 1] + "…"
    return PreviewExample(
        event_name=str(payload.get("event") or ""),
        user_id=str(payload.get("userId") or ""),
        properties=text,
    )


# --- the reprocessing job -------------------------------------------------------------------


def reprocess_job(job_id: int, destination: Destination) -> tuple[Job, MappingRule | None] | None:
    """A rule's reprocessing job and its rule (None once deleted), if the job belongs to this
    destination. The job names only its rule (``params["rule_id"]``); a job whose rule is gone
    is shown under any Kana destination's URL, since nothing says whose it was."""
    job = Job.objects.filter(pk=job_id, kind=JobKind.REPROCESS).first()
    if job is None:
        return None
    rule = MappingRule.objects.filter(pk=job.params.get("rule_id")).first()
    if rule is not None and rule.destination_id != destination.pk:
        return None
    return job, rule


def reprocess_destination_id(job: Job) -> int | None:
    """The destination of a reprocessing job's rule; None once the rule is deleted."""
    return (
        MappingRule.objects.filter(pk=job.params.get("rule_id"))
        .values_list("destination_id", flat=True)
        .first()
    )


@dataclass(frozen=True)
class ReprocessProgress:
    delivered: int  # every usage event the rule has had delivered, as the rules list counts
    in_flight: int  # queued by this job (rows older than it) and not yet sent
    retrying: int
    failed: int
    following: bool  # the page keeps polling to watch in_flight go out
    held: str = ""  # why what is queued is not going out now


def reprocess_progress(
    job: Job, rule: MappingRule | None, destination: Destination
) -> ReprocessProgress | None:
    if rule is None:
        return None
    # Rows this job can have queued existed before it started; newer ones are live traffic,
    # which would otherwise keep the page polling for as long as events arrive.
    before_job = Q(created_at__lte=job.created_at)
    counts = Delivery.objects.filter(mapping_rule=rule).aggregate(
        delivered=Count("id", filter=Q(status=DeliveryStatus.DELIVERED)),
        in_flight=Count("id", filter=Q(status__in=IN_FLIGHT) & before_job),
        retrying=Count("id", filter=Q(status=DeliveryStatus.RETRYING) & before_job),
        failed=Count("id", filter=Q(status=DeliveryStatus.FAILED)),
    )
    held = ""
    if not destination.enabled:
        held = f"{destination.name} is disabled: the usage waits until it is enabled again."
    elif destination.paused_at is not None:
        held = f"{destination.name} is paused: the usage waits until it is resumed."
    recent = job.finished_at is None or timezone.now() - job.finished_at < FOLLOW_DELIVERY_FOR
    following = job.status == JobStatus.DONE and counts["in_flight"] > 0 and not held and recent
    return ReprocessProgress(following=following, held=held, **counts)
