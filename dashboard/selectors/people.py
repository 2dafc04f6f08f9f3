"""Reads for the Users and Accounts pages."""

from __future__ import annotations

from collections import defaultdict

from django.db.models import Count, Q, QuerySet

from dashboard.selectors.audience_syncs import with_sync_class
from destinations.models import Account, Event, Membership, Profile
from destinations.web.pagination import KeysetPage, keyset_page

PEOPLE_PAGE_SIZE = 50
EVENTS_PAGE_SIZE = 25
MEMBERS_SHOWN = 3


def profiles_page(*, search: str, before: int | None) -> KeysetPage[Profile]:
    """Users whose userId starts with the term (as typed: user ids are case-sensitive), whose
    email or name contains it (in any case), or whose billing id is it."""
    profiles: QuerySet[Profile] = Profile.objects.filter(merged_into__isnull=True)
    if search:
        term = search.strip()
        profiles = profiles.filter(
            Q(user_id__prefix=term)
            | Q(email__icontains=term)
            | Q(name__icontains=term)
            | Q(billing_id=term)
        )
    return keyset_page(profiles, before=before, size=PEOPLE_PAGE_SIZE)


def profile_detail(profile_id: int) -> Profile | None:
    return Profile.objects.filter(id=profile_id).select_related("merged_into").first()


def profile_accounts(profile: Profile) -> list[Account]:
    return list(Account.objects.filter(memberships__profile=profile).order_by("name", "group_id"))


def recent_events_for_profile(profile: Profile, limit: int = 25) -> list[Event]:
    events = Event.objects.filter(profile=profile).select_related("source").defer("payload")
    return list(with_sync_class(events).order_by("-id")[:limit])


def accounts_page(*, search: str, before: int | None) -> KeysetPage[Account]:
    accounts = Account.objects.annotate(member_count=Count("memberships"))
    if search:
        term = search.strip()
        accounts = accounts.filter(Q(group_id=term) | Q(name__icontains=term))
    return keyset_page(accounts, before=before, size=PEOPLE_PAGE_SIZE)


def members_shown(accounts: list[Account]) -> dict[int, list[Profile]]:
    """A few identified users per account, as Refiner's Accounts list shows them (one query)."""
    shown: dict[int, list[Profile]] = defaultdict(list)
    memberships = (
        Membership.objects.filter(account__in=accounts, profile__merged_into__isnull=True)
        .select_related("profile")
        .order_by("account_id", "-profile__last_seen_at")
    )
    for membership in memberships:
        bucket = shown[membership.account_id]
        if len(bucket) < MEMBERS_SHOWN:
            bucket.append(membership.profile)
    return shown


def account_detail(account_id: int) -> Account | None:
    return Account.objects.filter(id=account_id).first()


def account_members(account: Account) -> list[Profile]:
    return list(
        Profile.objects.filter(memberships__account=account).order_by("-last_seen_at", "-id")
    )


def account_events_page(account: Account, *, before: int | None) -> KeysetPage[Event]:
    """The account's group calls and its members' events, newest first, a page at a time."""
    member_ids = Membership.objects.filter(account=account).values("profile_id")
    events = (
        Event.objects.filter(Q(group_id=account.group_id) | Q(profile_id__in=member_ids))
        .select_related("source")
        .defer("payload")
    )
    return keyset_page(with_sync_class(events), before=before, size=EVENTS_PAGE_SIZE)
