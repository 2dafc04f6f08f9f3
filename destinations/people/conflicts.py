"""The two lists operators resolve: users sharing an email, and users without a valid billing
id (none, or one Kana would refuse)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from django.db.models import Count, Q, QuerySet, Window

from destinations.identity.billing_ids import billing_id_problem
from destinations.models import Profile
from destinations.models.people import needs_billing_id
from destinations.people.csv_cells import as_text


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
    """Live users with no billing id at all, newest first."""
    missing = Q(billing_id__isnull=True) | Q(billing_id="")
    return live_profiles().filter(user_search(search)).filter(missing).order_by("-id")


def without_valid_billing_id(search: str = "") -> QuerySet[Profile]:
    """Live users Kana cannot bill: no billing id, or one that is not a customer id Kana accepts
    (``billing_id_problem`` says why), newest first. The condition is the one
    ``profile_needs_billing_idx`` is built on, so PostgreSQL reads that index. The search comes
    first in the SQL: SQLite tests conditions in the order written, and a search rules most
    users out more cheaply than the billing-id rule (a live search took half the time)."""
    return live_profiles().filter(user_search(search)).filter(needs_billing_id()).order_by("-id")


def user_search(search: str) -> Q:
    """A userId, email or name containing ``search`` (everyone when it is blank)."""
    term = search.strip()
    if not term:
        return Q()
    return Q(user_id__icontains=term) | Q(email__contains=term.lower()) | Q(name__icontains=term)


def conflict_counts(*, duplicate_emails: int | None = None) -> dict[str, int]:
    """The two lists' sizes. ``duplicate_emails`` is for a caller that has just counted the
    groups (a page of them carries the total): they are not grouped again."""
    if duplicate_emails is None:
        duplicate_emails = duplicate_email_groups().count()
    return {
        "duplicate_emails": duplicate_emails,
        # The key keeps its name; invalid billing ids count, as the page lists them too.
        "without_billing_id": without_valid_billing_id().count(),
    }


EXPORT_COLUMNS = ["profile_id", "user_id", "email", "name", "billing_id", "conflict"]


def export_rows() -> Iterator[list[str]]:
    """Both lists as CSV rows, so billing ids can be filled in elsewhere and imported back
    (the import matches on user_id, else email)."""
    yield EXPORT_COLUMNS
    shared = {row["email"] for row in duplicate_email_groups()}
    flagged = without_valid_billing_id().values_list("pk", "user_id", "email", "name", "billing_id")
    seen: set[int] = set()
    for pk, user_id, email, name, billing_id in flagged.iterator(chunk_size=2000):
        seen.add(pk)
        why = billing_conflict(billing_id) + ("; shared email" if email in shared else "")
        yield [str(pk), user_id or "", email or "", name, billing_id or "", why]
    duplicates = (
        live_profiles()
        .filter(email__in=shared)
        .exclude(pk__in=seen)
        .values_list("pk", "user_id", "email", "name", "billing_id")
    )
    for pk, user_id, email, name, billing_id in duplicates.iterator(chunk_size=2000):
        yield [str(pk), user_id or "", email or "", name, billing_id or "", "shared email"]


def billing_conflict(billing_id: str | None) -> str:
    """The export's word for a listed user's billing id: missing, or why Kana refuses it."""
    if not billing_id:
        return "no billing id"
    return f"invalid billing id: {billing_id_problem(billing_id) or 'refused by Kana'}"


def export_csv() -> Iterator[str]:
    """``export_rows`` as CSV. Cells a spreadsheet would run as formulas (a name or userId from
    identify traits can be anything) are written as text (``csv_cells``); the import reads them
    back unchanged."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in export_rows():
        writer.writerow([as_text(cell) for cell in row])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
