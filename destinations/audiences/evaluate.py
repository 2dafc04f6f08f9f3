"""Who matches a definition now: sets of ids, combined with intersection (all of) and union
(any of).

Each condition yields the subjects (user or account ids) it holds for, within a universe: every
live subject for a full computation, or the few an ingest touched for a re-evaluation. The
database does the counting (events by name and window, grouped by user); conditions on values
(traits, event properties) are evaluated in Python with the same function as mapping rules and
filters (``destinations.conditions.matches``), so a condition means one thing everywhere.
Negative conditions ("has not performed", "at most", "not in") are the universe minus the
positive set, which is why they need the universe.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, QuerySet
from django.utils import timezone

from destinations.conditions import matches
from destinations.models import Account, AudienceState, AudienceSubject, Event, Membership, Profile
from destinations.raw_reads import SQLITE_CHUNK

READ_CHUNK = 2000
USER_FIELDS = ("user_id", "email", "name", "billing_id")
ACCOUNT_FIELDS = ("group_id", "name")


def leaf_matches(document: Mapping[str, Any], leaf: Mapping[str, Any]) -> bool:
    op = leaf["op"]
    if op in ("is_true", "is_false"):
        return matches(document, {"path": leaf["path"], "op": "equals", "value": op == "is_true"})
    return matches(document, leaf)


class Evaluator:
    """Evaluates definitions of one subject kind over one universe, at one moment."""

    def __init__(
        self, subject: str, *, within: Collection[int] | None = None, now: datetime | None = None
    ) -> None:
        self.subject = subject
        self.within = None if within is None else frozenset(within)
        self.now = now or timezone.now()
        self._universe: frozenset[int] | None = None
        self._accounts_of: dict[int, set[int]] | None = None
        self._users_of: dict[int, set[int]] | None = None

    # --- the universe ---------------------------------------------------------------------

    def subjects(self) -> QuerySet[Any]:
        if self.subject == AudienceSubject.ACCOUNTS:
            return Account.objects.all()
        return Profile.objects.filter(merged_into__isnull=True)

    def universe(self) -> frozenset[int]:
        if self._universe is None:
            if self.within is None:
                self._universe = frozenset(self.subjects().values_list("pk", flat=True))
            else:
                found: set[int] = set()
                for ids in _chunked(self.within):
                    found.update(self.subjects().filter(pk__in=ids).values_list("pk", flat=True))
                self._universe = frozenset(found)
        return self._universe

    # --- combining --------------------------------------------------------------------------

    def members(self, definition: Mapping[str, Any]) -> set[int]:
        return self._group(definition)

    def _group(self, group: Mapping[str, Any]) -> set[int]:
        sets = (self._condition(c) for c in group.get("conditions", []))
        if group.get("match") == "any":
            result: set[int] = set()
            for found in sets:
                result |= found
            return result
        result = set(self.universe())
        for found in sets:
            result &= found
            if not result:
                break
        return result

    def _condition(self, condition: Mapping[str, Any]) -> set[int]:
        kind = condition["type"]
        if kind == "group":
            return self._group(condition)
        if kind == "trait":
            return self._trait(condition)
        if kind == "account":
            return self._account(condition)
        if kind == "audience":
            return self._audience(condition)
        return self._event(condition)

    # --- conditions -------------------------------------------------------------------------

    def _trait(self, leaf: Mapping[str, Any]) -> set[int]:
        return {pk for pk, doc in self._documents(Profile, USER_FIELDS) if leaf_matches(doc, leaf)}

    def _account(self, leaf: Mapping[str, Any]) -> set[int]:
        if self.subject == AudienceSubject.ACCOUNTS:
            docs = self._documents(Account, ACCOUNT_FIELDS)
            return {pk for pk, doc in docs if leaf_matches(doc, leaf)}
        matching = {
            pk for pk, doc in _account_documents(self._member_accounts()) if leaf_matches(doc, leaf)
        }
        return {p for p, accounts in self._accounts_by_user().items() if accounts & matching}

    def _audience(self, condition: Mapping[str, Any]) -> set[int]:
        column = "account_id" if self.subject == AudienceSubject.ACCOUNTS else "profile_id"
        states = AudienceState.objects.filter(audience_id=condition["audience"], member=True)
        if self.within is not None:
            found: set[int] = set()
            for ids in _chunked(self.universe()):
                found.update(states.filter(**{f"{column}__in": ids}).values_list(column, flat=True))
        else:
            found = set(states.values_list(column, flat=True))
        found &= self.universe()
        return found if condition["in"] else set(self.universe()) - found

    def _event(self, condition: Mapping[str, Any]) -> set[int]:
        per_user = self._performed(condition)
        if self.subject == AudienceSubject.ACCOUNTS:
            # An account's count is how many of its users performed the event (as qualified).
            performed = {p for p, n in per_user.items() if n > 0}
            counts: Counter[int] = Counter()
            for account, users in self._users_by_account().items():
                counts[account] = len(users & performed)
        else:
            counts = per_user
        times, how = condition["times"], condition["count"]
        universe = self.universe()
        if how == "at_least" and times > 0:
            return {s for s, n in counts.items() if n >= times and s in universe}
        if how == "exactly" and times > 0:
            return {s for s, n in counts.items() if n == times and s in universe}
        if how == "at_least":  # at least 0: everyone
            return set(universe)
        # at most N, none (at most 0), exactly 0: everyone but those above N
        limit = 0 if how in ("none", "exactly") else times
        return {s for s in universe if counts.get(s, 0) <= limit}

    def _performed(self, condition: Mapping[str, Any]) -> Counter[int]:
        """Events per user matching the condition's name, window and property conditions."""
        events = Event.objects.filter(event=condition["event"], profile__isnull=False)
        if condition.get("within_days"):
            events = events.filter(
                timestamp__gte=self.now - timedelta(days=condition["within_days"])
            )
        users = self._event_users()
        counts: Counter[int] = Counter()
        where = condition.get("where") or []
        for scoped in _scoped(events, "profile_id", users):
            if not where:
                rows = scoped.values("profile_id").annotate(n=Count("id")).order_by()
                counts.update({row["profile_id"]: row["n"] for row in rows})
                continue
            rows = scoped.values_list("profile_id", "payload").iterator(chunk_size=READ_CHUNK)
            counts.update(
                profile for profile, payload in rows
                if isinstance(payload, dict) and all(leaf_matches(payload, w) for w in where)
            )  # fmt: skip
        return counts

    # --- reading subjects -------------------------------------------------------------------

    def _event_users(self) -> Collection[int] | None:
        """Whose events to count: None for everyone (a full computation)."""
        if self.within is None:
            return None
        if self.subject == AudienceSubject.ACCOUNTS:
            return {u for users in self._users_by_account().values() for u in users}
        return self.universe()

    def _documents(
        self, model: Any, fields: tuple[str, ...]
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        base = model.objects.filter(pk__in=[]) if not self.universe() else model.objects.all()
        for scoped in _scoped(base, "pk", None if self.within is None else self.universe()):
            rows = scoped.values_list("pk", "traits", *fields).iterator(chunk_size=READ_CHUNK)
            for pk, traits, *values in rows:
                if pk in self.universe():
                    yield pk, {"traits": traits or {}, **dict(zip(fields, values, strict=True))}

    def _accounts_by_user(self) -> dict[int, set[int]]:
        if self._accounts_of is None:
            by_user: dict[int, set[int]] = {}
            memberships = Membership.objects.all()
            for scoped in _scoped(memberships, "profile_id", self._restriction()):
                for profile, account in scoped.values_list("profile_id", "account_id"):
                    by_user.setdefault(profile, set()).add(account)
            self._accounts_of = by_user
        return self._accounts_of

    def _users_by_account(self) -> dict[int, set[int]]:
        if self._users_of is None:
            by_account: dict[int, set[int]] = {}
            memberships = Membership.objects.filter(profile__merged_into__isnull=True)
            for scoped in _scoped(memberships, "account_id", self._restriction()):
                for profile, account in scoped.values_list("profile_id", "account_id"):
                    by_account.setdefault(account, set()).add(profile)
            self._users_of = by_account
        return self._users_of

    def _restriction(self) -> Collection[int] | None:
        return None if self.within is None else self.universe()

    def _member_accounts(self) -> set[int]:
        return {a for accounts in self._accounts_by_user().values() for a in accounts}


def _account_documents(ids: Iterable[int]) -> Iterator[tuple[int, dict[str, Any]]]:
    for chunk in _chunked(ids):
        rows = Account.objects.filter(pk__in=chunk).values_list("pk", "traits", *ACCOUNT_FIELDS)
        for pk, traits, *values in rows:
            yield pk, {"traits": traits or {}, **dict(zip(ACCOUNT_FIELDS, values, strict=True))}


def _chunked(ids: Iterable[int]) -> Iterator[list[int]]:
    items = sorted(ids)
    for start in range(0, len(items), SQLITE_CHUNK):
        yield items[start : start + SQLITE_CHUNK]


def _scoped(
    queryset: QuerySet[Any], column: str, ids: Collection[int] | None
) -> Iterator[QuerySet[Any]]:
    """The queryset whole, or restricted to ``ids`` in chunks a statement can carry."""
    if ids is None:
        yield queryset
        return
    for chunk in _chunked(ids):
        yield queryset.filter(**{f"{column}__in": chunk})
