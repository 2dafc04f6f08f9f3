"""The two lists operators resolve: users sharing an email, and users without a billing id."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from django.db.models import Count, Q, QuerySet, Window

from destinations.models import Profile


def live_profiles() -> QuerySet[Profile]:
    return Profile.objects.filter(merged_into__isnull=True)


def duplicate_email_groups(search: str = "") -> QuerySet[Profile, dict[str, object]]:
    """Emails held by more than one user, with counts, most users first."""
    rows = live_profiles().filter(email__isnull=False)
    if search:
        # Emails are kept lower-cased: a case-sensitive match of the lower-cased search finds
        # the same rows without upper-casing every email (three times faster on PostgreSQL).
        rows = rows.filter(email__contains=search.strip().lower())
    return (
        rows.values("email")
        .annotate(users=Count("id"))
        .filter(users__gt=1)
        .order_by("-users", "email")
    )


def counted_email_groups(search: str = "") -> QuerySet[Profile, dict[str, object]]:
    """``duplicate_email_groups`` with ``total`` on every row: how many groups match
    (``COUNT(*) OVER ()``, counted after grouping). A page of groups then carries the count,
    rather than grouping every user a second time to count them."""
    return duplicate_email_groups(search).annotate(total=Window(Count("*")))


def without_billing_id(search: str = "") -> QuerySet[Profile]:
    rows = live_profiles().filter(Q(billing_id__isnull=True) | Q(billing_id=""))
    if search:
        term = search.strip()
        rows = rows.filter(
            Q(user_id__icontains=term) | Q(email__contains=term.lower()) | Q(name__icontains=term)
        )
    return rows.order_by("-id")


def conflict_counts(*, duplicate_emails: int | None = None) -> dict[str, int]:
    """The two lists' sizes. ``duplicate_emails`` is for a caller that has just counted the
    groups (a page of them carries the total): they are not grouped again."""
    if duplicate_emails is None:
        duplicate_emails = duplicate_email_groups().count()
    return {
        "duplicate_emails": duplicate_emails,
        "without_billing_id": without_billing_id().count(),
    }


EXPORT_COLUMNS = ["profile_id", "user_id", "email", "name", "billing_id", "conflict"]


def export_rows() -> Iterator[list[str]]:
    """Both lists as CSV rows, so billing ids can be filled in elsewhere and imported back
    (the import matches on user_id, else email)."""
    yield EXPORT_COLUMNS
    shared = {row["email"] for row in duplicate_email_groups()}
    flagged = without_billing_id().values_list("pk", "user_id", "email", "name", "billing_id")
    seen: set[int] = set()
    for pk, user_id, email, name, billing_id in flagged.iterator(chunk_size=2000):
        seen.add(pk)
        why = "no billing id" + ("; shared email" if email in shared else "")
        yield [str(pk), user_id or "", email or "", name, billing_id or "", why]
    duplicates = (
        live_profiles()
        .filter(email__in=shared)
        .exclude(pk__in=seen)
        .values_list("pk", "user_id", "email", "name", "billing_id")
    )
    for pk, user_id, email, name, billing_id in duplicates.iterator(chunk_size=2000):
        yield [str(pk), user_id or "", email or "", name, billing_id or "", "shared email"]


def export_csv() -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in export_rows():
        writer.writerow(row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
