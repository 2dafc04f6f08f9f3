"""Reads for the Refiner webhook receivers pages: the list with each receiver's latest call and
counts, one receiver, and its log of calls."""

from __future__ import annotations

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery

from destinations.models import CallOutcome, RefinerCall, RefinerReceiver
from destinations.web.pagination import KeysetPage, keyset_page

CALLS_PAGE_SIZE = 25


def receivers_with_activity() -> QuerySet[RefinerReceiver]:
    """Every receiver with its call counts and latest call, in the list's one query."""
    latest = RefinerCall.objects.filter(receiver=OuterRef("pk")).order_by("-id")
    return RefinerReceiver.objects.annotate(
        calls_total=Count("calls"),
        # Every outcome, so the split adds up to the total.
        calls_accepted=Count("calls", filter=Q(calls__outcome=CallOutcome.ACCEPTED)),
        calls_duplicate=Count("calls", filter=Q(calls__outcome=CallOutcome.DUPLICATE)),
        calls_ignored=Count("calls", filter=Q(calls__outcome=CallOutcome.IGNORED)),
        calls_refused=Count("calls", filter=Q(calls__outcome=CallOutcome.REFUSED)),
        last_call_at=Subquery(latest.values("received_at")[:1]),
        last_call_outcome=Subquery(latest.values("outcome")[:1]),
    ).order_by("name")


def receiver_by_id(receiver_id: int) -> RefinerReceiver | None:
    return RefinerReceiver.objects.filter(pk=receiver_id).first()


def outcome_counts(receiver: RefinerReceiver) -> dict[str, int]:
    """Calls per outcome over the receiver's whole life, every outcome present (0 if none)."""
    rows = receiver.calls.order_by().values_list("outcome").annotate(n=Count("id"))
    found = dict(rows)
    return {outcome: found.get(outcome, 0) for outcome in CallOutcome.values}


def receiver_calls(
    receiver: RefinerReceiver, *, outcome: str, before: int | None
) -> KeysetPage[RefinerCall]:
    """The log, newest first; ``outcome`` narrows it to one outcome when it names one."""
    calls = receiver.calls.all()
    if outcome in CallOutcome.values:
        calls = calls.filter(outcome=outcome)
    return keyset_page(calls, before=before, size=CALLS_PAGE_SIZE)
