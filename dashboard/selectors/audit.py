"""Reads for the audit log: entries newest first, whether each merge can still be undone, and
what a merge moved."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from destinations.models import Account, AnonymousId, AuditAction, AuditEntry, Job, Profile
from destinations.web.pagination import KeysetPage, keyset_page

AUDIT_PAGE_SIZE = 50
ANONYMOUS_IDS_SHOWN = 50


def audit_page(*, action: str, before: int | None) -> KeysetPage[AuditEntry]:
    entries = AuditEntry.objects.select_related("actor")
    if action:
        entries = entries.filter(action=action)
    return keyset_page(entries, before=before, size=AUDIT_PAGE_SIZE)


def audit_entry(entry_id: int) -> AuditEntry | None:
    return AuditEntry.objects.select_related("actor").filter(pk=entry_id).first()


def undo_problems(entries: Iterable[AuditEntry]) -> dict[int, str]:
    """Why each merge among ``entries`` can no longer be undone; a merge not named here can be.

    The rules are merge_undo's, read without locks (one query for all the survivors), so the log
    offers Undo only where it would work; merge_undo still decides when the button is pressed.
    """
    merges = [e for e in entries if e.action == AuditAction.MERGE and not e.undone_at]
    survivor_ids = [e.data.get("survivor") for e in merges]
    survivors = dict(
        Profile.objects.filter(pk__in=[pk for pk in survivor_ids if pk]).values_list(
            "pk", "merged_into_id"
        )
    )
    retention = timedelta(days=settings.MERGE_UNDO_DAYS)
    now = timezone.now()
    problems: dict[int, str] = {}
    for entry in merges:
        survivor_id = entry.data.get("survivor")
        if now - entry.created_at > retention:
            problems[entry.pk] = f"merges can be undone for {settings.MERGE_UNDO_DAYS} days"
        elif survivor_id not in survivors:
            problems[entry.pk] = "the surviving user was deleted since; the merge cannot be undone"
        elif survivors[survivor_id]:
            problems[entry.pk] = (
                "the surviving user was merged into another user since: undo that merge first"
            )
    return problems


@dataclass(frozen=True)
class ProfileBefore:
    """A user as it was just before the merge, and as it is now (None: deleted since)."""

    pk: int
    survivor: bool
    values: dict[str, Any]
    now: Profile | None


@dataclass(frozen=True)
class MergeDetail:
    survivor: Profile | None
    before: list[ProfileBefore]
    events: int
    anonymous_ids: list[str]
    anonymous_total: int
    memberships: list[tuple[str, bool]]  # account, moved (False: survivor already a member)
    undone_by: AuditEntry | None


def merge_detail(entry: AuditEntry) -> MergeDetail:
    """What a merge entry's data says moved, with names looked up (four queries)."""
    data = entry.data
    survivor_id = data.get("survivor")
    before: dict[str, dict[str, Any]] = data.get("before", {})
    now = Profile.objects.in_bulk([int(pk) for pk in before])
    anonymous_pks = [pk for pk, _ in data.get("anonymous_ids", [])]
    anonymous = list(
        AnonymousId.objects.filter(pk__in=anonymous_pks[:ANONYMOUS_IDS_SHOWN])
        .order_by("value")
        .values_list("value", flat=True)
    )
    record = data.get("memberships", [])
    accounts = Account.objects.in_bulk([row[2] for row in record])
    memberships = [
        (str(accounts[row[2]]) if row[2] in accounts else f"account {row[2]} (deleted)", row[4])
        for row in record
    ]
    undone_by = None
    if entry.undone_at:
        undone_by = (
            AuditEntry.objects.filter(action=AuditAction.MERGE_UNDONE, data__merge=entry.pk)
            .select_related("actor")
            .first()
        )
    return MergeDetail(
        survivor=now.get(survivor_id) if survivor_id else None,
        before=[
            ProfileBefore(
                pk=int(pk),
                survivor=int(pk) == survivor_id,
                values=readable_snapshot(values),
                now=now.get(int(pk)),
            )
            for pk, values in sorted(before.items(), key=lambda item: int(item[0]) != survivor_id)
        ],
        events=int(data.get("events", 0)),
        anonymous_ids=anonymous,
        anonymous_total=len(anonymous_pks),
        memberships=memberships,
        undone_by=undone_by,
    )


def readable_snapshot(values: dict[str, Any]) -> dict[str, Any]:
    shown = dict(values)
    for name in ("first_seen_at", "last_seen_at"):
        shown[name] = parse_datetime(shown[name]) if shown.get(name) else None
    return shown


def entry_job(entry: AuditEntry) -> Job | None:
    """The job an entry reports on: an import's, a bulk merge's, a saved rule's reprocessing,
    a retry of failed deliveries."""
    job_id = entry.data.get("job")
    return Job.objects.filter(pk=job_id).first() if job_id else None


def job_audit_entry(job: Job) -> AuditEntry | None:
    """The entry a finished import or bulk merge wrote about itself."""
    return (
        AuditEntry.objects.filter(
            action__in=(AuditAction.IMPORT, AuditAction.BULK_MERGE), data__job=job.pk
        )
        .order_by("-id")
        .first()
    )
