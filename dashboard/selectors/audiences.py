"""Reads for the Audiences pages, and the audiences shown on user, account and event pages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Max, Q, QuerySet
from django.db.models.functions import TruncDay
from django.utils import timezone

from destinations.audiences.definition import referenced_audiences
from destinations.audiences.services import SYNC_KINDS, Preview
from destinations.connectors.refiner import api as refiner_api
from destinations.connectors.refiner.api import RefinerApiError
from destinations.crypto import SecretsUnreadable
from destinations.delivery.health import BACKLOG_STATUSES
from destinations.models import (
    Account,
    Audience,
    AudienceChange,
    AudienceSize,
    AudienceState,
    AudienceSubject,
    AudienceTarget,
    ComputedTraitValue,
    Delivery,
    DeliveryStatus,
    Destination,
    Job,
    JobKind,
    JobStatus,
    Profile,
)
from destinations.sources import INTERNAL_DEMO_SOURCE, INTERNAL_SOURCE
from destinations.web.display_json import pretty_json
from destinations.web.pagination import KeysetPage, keyset_page

MEMBERS_PAGE_SIZE = 50
CHART_DAYS = 30
RECENT = timedelta(hours=24)
JOB_RUNNING = (JobStatus.QUEUED, JobStatus.RUNNING)


# --- the list -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudienceRow:
    audience: Audience
    destinations: list[Destination]
    last_computed: datetime | None
    computing: bool


def audience_rows() -> list[AudienceRow]:
    """Every audience by name, with its destinations and its last computation: three queries
    whatever the number of audiences."""
    audiences = list(Audience.objects.order_by("name", "pk"))
    targets: dict[int, list[Destination]] = {}
    for target in AudienceTarget.objects.select_related("destination").order_by(
        "destination__name", "destination_id"
    ):
        targets.setdefault(target.audience_id, []).append(target.destination)
    finished, running = computations([a.pk for a in audiences])
    return [
        AudienceRow(a, targets.get(a.pk, []), finished.get(a.pk), a.pk in running)
        for a in audiences
    ]


def computations(audience_ids: Sequence[int]) -> tuple[dict[int, datetime], set[int]]:
    """When each audience's last computation job finished, and which have one under way."""
    finished: dict[int, datetime] = {}
    running: set[int] = set()
    if not audience_ids:
        return finished, running
    jobs = Job.objects.filter(kind=JobKind.AUDIENCE, params__audience_id__in=list(audience_ids))
    for params, status, ended in jobs.values_list("params", "status", "finished_at"):
        pk = params.get("audience_id") if isinstance(params, dict) else None
        if not isinstance(pk, int):
            continue
        if status in JOB_RUNNING:
            running.add(pk)
        elif status == JobStatus.DONE and ended is not None and ended > finished.get(pk, ended):
            finished[pk] = ended
        elif status == JobStatus.DONE and ended is not None:
            finished.setdefault(pk, ended)
    return finished, running


# --- one audience ---------------------------------------------------------------------------


def audience_detail(audience_id: int) -> Audience | None:
    return Audience.objects.filter(pk=audience_id).first()


def audience_job(audience: Audience, job_id: int | None) -> Job | None:
    """The job the page was sent to show (``?job=``), else one under way."""
    jobs = Job.objects.filter(kind=JobKind.AUDIENCE, params__audience_id=audience.pk)
    if job_id is not None:
        found = jobs.filter(pk=job_id).first()
        if found is not None:
            return found
    return jobs.filter(status__in=JOB_RUNNING).order_by("-pk").first()


def last_computed(audience: Audience) -> datetime | None:
    return computations([audience.pk])[0].get(audience.pk)


@dataclass(frozen=True)
class RecentChanges:
    entered: int
    left: int


def recent_changes(audience: Audience, now: datetime | None = None) -> RecentChanges:
    since = (now or timezone.now()) - RECENT
    counts = AudienceChange.objects.filter(audience=audience, at__gte=since).aggregate(
        came=Count("id", filter=Q(entered=True)), went=Count("id", filter=Q(entered=False))
    )
    return RecentChanges(entered=counts["came"] or 0, left=counts["went"] or 0)


@dataclass(frozen=True)
class DaySize:
    day: datetime  # midnight UTC
    size: int | None  # None before the audience had a size


def daily_sizes(
    audience: Audience, *, days: int = CHART_DAYS, now: datetime | None = None
) -> list[DaySize]:
    """The size at the end of each of the last ``days`` days (today: now). Sizes are stored
    when they change, so a day's size is the last stored at or before its end: one grouped
    query for each day's last change, one for those rows, one for the size before the window."""
    now = now or timezone.now()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=days - 1)
    sizes = AudienceSize.objects.filter(audience=audience)
    last_of_day = (
        sizes.filter(at__gte=start, at__lte=now)
        .annotate(day=TruncDay("at"))
        .values("day")
        .annotate(last=Max("at"))
        .values_list("last", flat=True)
    )
    moments = list(last_of_day)
    at_moment = dict(sizes.filter(at__in=moments).values_list("at", "size")) if moments else {}
    by_day = {moment.date(): at_moment[moment] for moment in moments if moment in at_moment}
    before = sizes.filter(at__lt=start).order_by("-at", "-pk").values_list("size", flat=True)
    current: int | None = before.first()
    found: list[DaySize] = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        current = by_day.get(day.date(), current)
        found.append(DaySize(day=day, size=current))
    return found


# --- members --------------------------------------------------------------------------------


def members_page(audience: Audience, *, search: str, before: int | None) -> KeysetPage[Any]:
    """Current members, most recently entered first (by state row), a page at a time; the
    search matches the start of a user id or email (a group id or name for accounts)."""
    states: QuerySet[AudienceState] = AudienceState.objects.filter(audience=audience, member=True)
    term = search.strip()
    if audience.subject == AudienceSubject.ACCOUNTS:
        states = states.select_related("account")
        if term:
            states = states.filter(
                Q(account__group_id__prefix=term) | Q(account__name__prefix=term)
            )
    else:
        states = states.select_related("profile")
        if term:
            states = states.filter(
                Q(profile__user_id__prefix=term)
                | Q(profile__email__prefix=term)
                | Q(profile__email__prefix=term.lower())
            )
    return keyset_page(states, before=before, size=MEMBERS_PAGE_SIZE)


# --- syncs per destination ------------------------------------------------------------------


@dataclass(frozen=True)
class DestinationSyncs:
    destination: Destination
    segment: str
    last_sync: datetime | None
    delivered: int
    pending: int
    failed: int


def sync_message_prefix(audience_id: int) -> str:
    return f"audience-{audience_id}-"


def internal_sources() -> Q:
    return Q(event__source__name__in=(INTERNAL_SOURCE, INTERNAL_DEMO_SOURCE))


def destination_syncs(audience: Audience) -> list[DestinationSyncs]:
    """For each destination the audience syncs to: its last delivered sync, and how many are
    waiting or failed. One grouped query over the audience's sync deliveries."""
    targets = list(
        AudienceTarget.objects.filter(audience=audience)
        .select_related("destination")
        .order_by("destination__name", "destination_id")
    )
    if not targets:
        return []
    rows = (
        Delivery.objects.filter(
            internal_sources(),
            event__message_id__startswith=sync_message_prefix(audience.pk),
            destination_id__in=[t.destination_id for t in targets],
        )
        .values("destination_id")
        .annotate(
            last=Max("finished_at", filter=Q(status=DeliveryStatus.DELIVERED)),
            delivered=Count("id", filter=Q(status=DeliveryStatus.DELIVERED)),
            pending=Count("id", filter=Q(status__in=BACKLOG_STATUSES)),
            failed=Count("id", filter=Q(status=DeliveryStatus.FAILED)),
        )
        .order_by()
    )
    stats = {row["destination_id"]: row for row in rows}
    found = []
    for target in targets:
        row: Mapping[str, Any] = stats.get(target.destination_id, {})
        found.append(
            DestinationSyncs(
                destination=target.destination,
                segment=target.refiner_segment,
                last_sync=row.get("last"),
                delivered=row.get("delivered", 0),
                pending=row.get("pending", 0),
                failed=row.get("failed", 0),
            )
        )
    return found


# --- where audiences show up elsewhere ------------------------------------------------------


def profile_audiences(profile: Profile) -> list[AudienceState]:
    return list(
        AudienceState.objects.filter(profile=profile, member=True)
        .select_related("audience")
        .order_by("audience__name", "audience_id")
    )


@dataclass(frozen=True)
class TraitValue:
    name: str
    key: str
    shown: str  # the value as JSON, however odd it is
    changed_at: datetime


def profile_computed_traits(profile: Profile) -> list[TraitValue]:
    """The user's computed traits with a value, as destinations were last told them."""
    rows = (
        ComputedTraitValue.objects.filter(profile=profile)
        .select_related("trait")
        .order_by("trait__name", "trait_id")
    )
    return [
        TraitValue(r.trait.name, r.trait.key, pretty_json(r.value, indent=None), r.changed_at)
        for r in rows
    ]


def account_audiences(account: Account) -> list[AudienceState]:
    return list(
        AudienceState.objects.filter(account=account, member=True)
        .select_related("audience")
        .order_by("audience__name", "audience_id")
    )


# --- the editor ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PreviewResult:
    """What Preview shows: how many match now with examples, or why it cannot tell."""

    subject: str
    preview: Preview | None = None
    problem: str = ""

    @property
    def accounts(self) -> bool:
        return self.subject == AudienceSubject.ACCOUNTS


# --- the form's choices ---------------------------------------------------------------------


def sync_destinations() -> list[Destination]:
    """Destinations an audience can be synced to, and (shown disabled) the ones it cannot."""
    return list(Destination.objects.order_by("name", "pk"))


def syncable(destination: Destination) -> bool:
    return destination.kind in SYNC_KINDS


def audience_choices(subject: str, *, exclude: int | None = None) -> list[tuple[int, str]]:
    """Audiences an audience condition may use: of the same subject, never itself."""
    audiences = Audience.objects.filter(subject=subject).order_by("name", "pk")
    if exclude is not None:
        audiences = audiences.exclude(pk=exclude)
    return list(audiences.values_list("pk", "name"))


def audiences_using(audience: Audience) -> list[Audience]:
    """Audiences whose conditions use ``audience``."""
    others = Audience.objects.exclude(pk=audience.pk).order_by("name", "pk")
    return [other for other in others if audience.pk in referenced_audiences(other.definition)]


def key_holder(key: str, *, exclude: int | None = None) -> Audience | None:
    holders = Audience.objects.filter(key=key)
    if exclude is not None:
        holders = holders.exclude(pk=exclude)
    return holders.first()


@dataclass(frozen=True)
class SegmentChoices:
    """A Refiner destination's manual segments for the picker; when Refiner cannot be asked,
    why (the form then takes the segment's uuid as typed)."""

    segments: list[tuple[str, str]]  # (uuid, name)
    problem: str = ""

    @property
    def available(self) -> bool:
        return not self.problem


def refiner_segments(destination: Destination) -> SegmentChoices:
    try:
        page = refiner_api.segments(destination)
    except SecretsUnreadable:
        return SegmentChoices([], "the saved API key cannot be decrypted")
    except RefinerApiError as exc:
        return SegmentChoices([], str(exc))
    found = [
        (str(item["uuid"]), str(item.get("name") or item["uuid"]))
        for item in page.items
        if item.get("uuid") and item.get("is_manual", True) is not False
    ]
    if not found:
        return SegmentChoices([], "Refiner lists no manual segments yet")
    return SegmentChoices(sorted(found, key=lambda s: (s[1].lower(), s[0])))
