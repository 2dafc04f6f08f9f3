"""Reads for the Conflicts page, the merge and delete pages, the bulk-merge preview, a user's
conflict flags and the navigation's counts.

Every list here is one query per page whatever the page shows: the few members shown per
email group, and the anonymous ids and accounts shown per merged user, are cut per group with
``ROW_NUMBER()`` in the database rather than fetched whole or asked for one by one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.core.cache import cache
from django.db.models import Count, F, QuerySet, Window
from django.db.models.functions import RowNumber

from destinations.connectors.refiner import KIND as REFINER_KIND
from destinations.identity.billing_ids import billing_id_problem
from destinations.models import (
    AnonymousId,
    Destination,
    Event,
    Membership,
    Profile,
)
from destinations.people.conflicts import (
    conflict_counts,
    counted_email_groups,
    duplicate_email_groups,
    live_profiles,
    without_valid_billing_id,
)
from destinations.traits import normalize_email
from destinations.web.display_json import pretty_json
from destinations.web.freshness import stamped
from destinations.web.pagination import MAX_CURSOR, KeysetPage, keyset_page

CONFLICT_PAGE_SIZE = 25
MEMBERS_SHOWN = 4
MERGE_MAX_USERS = 50  # a merge page compares users side by side; more would not be readable
ANONYMOUS_IDS_SHOWN = 8
ACCOUNTS_SHOWN = 10
ABSORBED_SHOWN = 20
BULK_EXAMPLES = 10

Linked = TypeVar("Linked", AnonymousId, Membership)

COUNTS_CACHE_KEY = "dashboard:conflict-counts"
# Every page shows the counts in the navigation: a few seconds' staleness spares each page load
# two aggregate queries over all users.
COUNTS_CACHE_SECONDS = 10


# Navigation counts ------------------------------------------------------------------------


def cached_conflict_counts() -> dict[str, int]:
    """Until the next merge, undo, delete or demo removal (``counts_changed``), or a few
    seconds."""
    counts = cache.get_or_set(
        stamped(COUNTS_CACHE_KEY), conflict_counts, timeout=COUNTS_CACHE_SECONDS
    )
    return counts if isinstance(counts, dict) else conflict_counts()


def fresh_conflict_counts(*, duplicate_emails: int | None = None) -> dict[str, int]:
    """Counted now (the Conflicts page shows them as its content), and kept for the nav.
    ``duplicate_emails``: the groups' total when the page has just counted them."""
    counts = conflict_counts(duplicate_emails=duplicate_emails)
    cache.set(stamped(COUNTS_CACHE_KEY), counts, timeout=COUNTS_CACHE_SECONDS)
    return counts


# The Conflicts page -------------------------------------------------------------------------


@dataclass(frozen=True)
class EmailGroup:
    email: str
    users: int
    members: list[Profile]  # the oldest few, the one a merge keeps by default first

    @property
    def more(self) -> int:
        return self.users - len(self.members)


@dataclass(frozen=True)
class EmailGroupsPage:
    groups: list[EmailGroup]
    number: int
    total: int  # groups matching the search
    size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def previous_number(self) -> int | None:
        return self.number - 1 if self.number > 1 else None

    @property
    def next_number(self) -> int | None:
        return self.number + 1 if self.number < self.pages else None


def email_groups_page(*, search: str, number: int) -> EmailGroupsPage:
    """Emails held by several users, most users first. Numbered pages (offset), because the
    order is by a count. The page's rows carry the groups' total (``counted_email_groups``), so
    grouping every user happens once per page: two queries with the members, whatever the page.
    A page past the end (a stale or edited link) has no row to carry it: the last page is shown
    instead, read backwards with its total in one more grouping."""
    size = CONFLICT_PAGE_SIZE
    number = max(1, number)
    rows = groups_slice(search, number, size)
    if rows:
        total = int(rows[0]["total"])
    elif number == 1:
        total = 0
    else:
        rows, total = last_groups_page(search, size)
        number = max(1, -(-total // size))
    return EmailGroupsPage(groups=with_members(rows), number=number, total=total, size=size)


def groups_slice(search: str, number: int, size: int) -> list[dict[str, Any]]:
    return list(counted_email_groups(search)[(number - 1) * size : number * size])


def last_groups_page(search: str, size: int) -> tuple[list[dict[str, Any]], int]:
    """The last page's groups, and how many groups there are. The order reversed (fewest users,
    then email descending) puts the last groups first: the last page is the first few of them,
    as many as the total leaves over a whole number of pages."""
    tail: list[dict[str, Any]] = list(
        counted_email_groups(search).order_by("users", "-email")[:size]
    )
    total = int(tail[0]["total"]) if tail else 0
    on_last_page = total - (max(1, -(-total // size)) - 1) * size
    return tail[:on_last_page][::-1], total


def with_members(rows: Iterable[dict[str, Any]]) -> list[EmailGroup]:
    """Email groups (``{"email", "users"}`` rows) with their oldest few users."""
    counted = [(str(row["email"]), int(row["users"])) for row in rows]
    members = first_members([email for email, _ in counted], limit=MEMBERS_SHOWN)
    return [EmailGroup(email, users, members.get(email, [])) for email, users in counted]


def first_members(emails: Sequence[str], *, limit: int) -> dict[str, list[Profile]]:
    """The oldest ``limit`` users of each email, in one query."""
    if not emails:
        return {}
    rows = (
        live_profiles()
        .filter(email__in=list(emails))
        .only("pk", "user_id", "email", "name", "billing_id", "created_at")
        .annotate(
            rank=Window(RowNumber(), partition_by=[F("email")], order_by=[F("created_at"), F("pk")])
        )
        .filter(rank__lte=limit)
        .order_by("email", "rank")
    )
    members: dict[str, list[Profile]] = defaultdict(list)
    for profile in rows:
        members[profile.email or ""].append(profile)
    return members


@dataclass(frozen=True)
class MissingBillingPage:
    page: KeysetPage[Profile]
    total: int  # users matching the search
    shared_emails: set[str]  # emails on this page that several users hold


def missing_billing_page(
    *, search: str, before: int | None, total: int | None = None
) -> MissingBillingPage:
    """Users with no billing id or one Kana would refuse, newest first, one query per page (the
    template says what is wrong with each billing id, with the rule the connector applies)."""
    rows = without_valid_billing_id(search)
    page = keyset_page(rows, before=before, size=CONFLICT_PAGE_SIZE)
    emails = {p.email for p in page.rows if p.email}
    return MissingBillingPage(
        page=page,
        total=rows.count() if total is None else total,
        shared_emails=shared_emails(emails),
    )


def shared_emails(emails: Iterable[str]) -> set[str]:
    """Which of these emails more than one live user holds (one query)."""
    wanted = [e for e in emails if e]
    if not wanted:
        return set()
    return {
        str(row["email"])
        for row in live_profiles()
        .filter(email__in=wanted)
        .values("email")
        .annotate(users=Count("id"))
        .filter(users__gt=1)
    }


# Merge page ---------------------------------------------------------------------------------


def merge_profile_ids(*, email: str | None = None, ids: str | None = None) -> list[int]:
    """The users a merge page compares: everyone live holding ``email``, or the ids listed
    (``1,2,3``), oldest first. Unknown ids are left out; at most MERGE_MAX_USERS."""
    if email:
        rows = live_profiles().filter(email=normalize_email(email))
    elif ids:
        wanted = parse_ids(ids)
        rows = Profile.objects.filter(pk__in=wanted)
    else:
        return []
    return list(rows.order_by("created_at", "pk").values_list("pk", flat=True)[:MERGE_MAX_USERS])


def parse_ids(value: str | None) -> list[int]:
    ids: list[int] = []
    for part in (value or "").split(","):
        part = part.strip()
        # isdigit() alone admits "²", which int() refuses; ids past 64 bits are no one's.
        number = int(part) if part.isascii() and part.isdigit() else 0
        if 0 < number <= MAX_CURSOR and number not in ids:
            ids.append(number)
    return ids[:MERGE_MAX_USERS]


@dataclass
class MergeColumn:
    """One user on the merge page, with what the comparison shows about it."""

    profile: Profile
    events: int = 0
    anonymous_ids: list[str] = field(default_factory=list)
    anonymous_total: int = 0
    accounts: list[str] = field(default_factory=list)
    accounts_total: int = 0

    @property
    def billing_problem(self) -> str | None:
        return billing_id_problem(self.profile.billing_id)

    @property
    def traits_json(self) -> str:
        return pretty_json(self.profile.traits or {}, indent=1)

    @property
    def more_anonymous_ids(self) -> int:
        return self.anonymous_total - len(self.anonymous_ids)

    @property
    def more_accounts(self) -> int:
        return self.accounts_total - len(self.accounts)


def merge_columns(ids: Sequence[int]) -> list[MergeColumn]:
    """The users to compare, oldest first (the default survivor leads): four queries."""
    profiles = list(
        Profile.objects.filter(pk__in=list(ids))
        .select_related("merged_into")
        .order_by("created_at", "pk")
    )
    columns = {p.pk: MergeColumn(profile=p) for p in profiles}
    if not columns:
        return []
    for row in (
        Event.objects.filter(profile_id__in=list(columns))
        .values("profile_id")
        .annotate(n=Count("id"))
        .order_by()
    ):
        columns[row["profile_id"]].events = row["n"]
    anonymous = first_per_profile(
        AnonymousId.objects.filter(profile_id__in=list(columns)),
        order_by=[F("linked_at"), F("pk")],
        limit=ANONYMOUS_IDS_SHOWN,
    )
    for anon in anonymous:
        column = columns[anon.profile_id]
        column.anonymous_ids.append(anon.value)
        column.anonymous_total = anon.total  # type: ignore[attr-defined]
    memberships = first_per_profile(
        Membership.objects.filter(profile_id__in=list(columns)).select_related("account"),
        order_by=[F("account__name"), F("account__group_id")],
        limit=ACCOUNTS_SHOWN,
    )
    for membership in memberships:
        column = columns[membership.profile_id]
        column.accounts.append(str(membership.account))
        column.accounts_total = membership.total  # type: ignore[attr-defined]
    return list(columns.values())


def first_per_profile(rows: QuerySet[Linked], *, order_by: list[F], limit: int) -> list[Linked]:
    """The first ``limit`` rows of each profile, each annotated with its profile's total."""
    return list(
        rows.annotate(
            rank=Window(RowNumber(), partition_by=[F("profile_id")], order_by=order_by),
            total=Window(Count("pk"), partition_by=[F("profile_id")]),
        )
        .filter(rank__lte=limit)
        .order_by("profile_id", "rank")
    )


def refiner_destinations() -> int:
    """How many enabled Refiner destinations a "delete in Refiner" would reach."""
    return Destination.objects.filter(kind=REFINER_KIND, enabled=True).count()


# Merge all ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BulkMergePreview:
    groups: int
    users: int
    examples: list[EmailGroup]

    @property
    def merged_away(self) -> int:
        return self.users - self.groups

    @property
    def more_groups(self) -> int:
        return self.groups - len(self.examples)


def bulk_merge_preview() -> BulkMergePreview:
    """Two groupings of every user: the examples (carrying the groups' total) and the users
    the groups hold."""
    examples: list[dict[str, Any]] = list(counted_email_groups()[:BULK_EXAMPLES])
    groups = int(examples[0]["total"]) if examples else 0
    emails = duplicate_email_groups().values("email")
    users = live_profiles().filter(email__in=emails).count() if groups else 0
    return BulkMergePreview(groups=groups, users=users, examples=with_members(examples))


# A user's page and its delete page ----------------------------------------------------------


@dataclass(frozen=True)
class ProfileConflicts:
    billing_problem: str | None
    billing_missing: bool
    shares_email_with: int  # other live users holding the same email
    absorbed: list[Profile]  # users merged into this one, newest first (the first few)
    absorbed_total: int


def profile_conflicts(profile: Profile) -> ProfileConflicts:
    shares = 0
    if profile.email and profile.merged_into_id is None:
        shares = live_profiles().filter(email=profile.email).exclude(pk=profile.pk).count()
    absorbed = list(
        Profile.objects.filter(merged_into=profile).order_by("-id")[: ABSORBED_SHOWN + 1]
    )
    total = len(absorbed)
    if total > ABSORBED_SHOWN:
        total = Profile.objects.filter(merged_into=profile).count()
    return ProfileConflicts(
        billing_problem=billing_id_problem(profile.billing_id),
        billing_missing=not profile.billing_id,
        shares_email_with=shares,
        absorbed=absorbed[:ABSORBED_SHOWN],
        absorbed_total=total,
    )


@dataclass(frozen=True)
class DeleteSummary:
    """What deleting a user takes with it: the users merged into it are the same person."""

    merged: list[Profile]
    events: int
    identities: list[tuple[str, str]]  # what a suppression would hold: (kind, value)


def delete_summary(profile: Profile) -> DeleteSummary:
    merged = list(Profile.objects.filter(merged_into=profile).order_by("pk"))
    people = [profile, *merged]
    events = Event.objects.filter(profile_id__in=[p.pk for p in people]).count()
    identities: list[tuple[str, str]] = []
    for person in people:
        for kind, value in (("userId", person.user_id), ("email", person.email)):
            if value and (kind, value) not in identities:
                identities.append((kind, value))
    return DeleteSummary(merged=merged, events=events, identities=identities)
