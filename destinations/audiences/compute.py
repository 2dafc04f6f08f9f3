"""Keeping membership current: compute who matches, write who entered and left, sync them.

Evaluating an audience reads a lot (all users, or the events of a window) and takes no lock, so
ingest is never held up by it. What it finds are candidates; each chunk of them is evaluated
again inside a short transaction that holds the audience's row lock, and only confirmed
changes are written and synced. So two computations of one audience at once (a re-evaluation
after ingest and the window pass, say) cannot both record the same change, and a user's state
flips only when it really changed: an unchanged user is never synced.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from destinations.audiences.evaluate import Evaluator
from destinations.audiences.sync import Change, sync_changes
from destinations.identity.bulk_write import bulk_write
from destinations.models import (
    Audience,
    AudienceChange,
    AudienceSize,
    AudienceState,
    AudienceSubject,
)

CHUNK = 500
Progress = Callable[["Outcome"], None]


@dataclass
class Outcome:
    scanned: int = 0
    entered: list[int] = field(default_factory=list)
    left: list[int] = field(default_factory=list)
    synced: int = 0

    @property
    def changed(self) -> list[int]:
        return self.entered + self.left


def subject_column(audience: Audience) -> str:
    return "account_id" if audience.subject == AudienceSubject.ACCOUNTS else "profile_id"


def current_members(audience: Audience, within: Collection[int] | None = None) -> set[int]:
    column = subject_column(audience)
    states = AudienceState.objects.filter(audience=audience, member=True)
    if within is None:
        return set(states.values_list(column, flat=True))
    found: set[int] = set()
    for chunk in _chunks(within):
        found.update(states.filter(**{f"{column}__in": chunk}).values_list(column, flat=True))
    return found


def compute(
    audience: Audience,
    *,
    within: Collection[int] | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> Outcome:
    """Bring ``audience``'s membership up to date for ``within`` (every subject when None),
    syncing each change. ``progress`` is called after each chunk written."""
    now = now or timezone.now()
    evaluator = Evaluator(audience.subject, within=within, now=now)
    matching = evaluator.members(audience.definition)
    universe = evaluator.universe()
    current = current_members(audience, None if within is None else universe)
    if within is not None:
        current &= universe
    # A member who is no longer a live subject (merged away) is dropped without a sync by the
    # merge itself; here only live subjects are compared.
    candidates = sorted((matching - current) | ((current & universe) - matching))
    outcome = Outcome(scanned=len(universe))
    for chunk in _chunks(candidates):
        apply_chunk(audience, chunk, now, outcome)
        if progress is not None:
            progress(outcome)
    if within is None or outcome.changed:
        record_size(audience, now)
    return outcome


def apply_chunk(
    audience: Audience,
    chunk: list[int],
    now: datetime,
    outcome: Outcome,
    *,
    definition: Mapping[str, Any] | None = None,
) -> None:
    """Confirm and write the changes among ``chunk`` under the audience's lock. ``definition``
    replaces the stored one (deleting an audience makes everyone leave)."""
    with transaction.atomic():
        locked = Audience.objects.select_for_update().filter(pk=audience.pk).first()
        if locked is None:  # deleted meanwhile
            return
        wanted = locked.definition if definition is None else definition
        confirmed = Evaluator(audience.subject, within=chunk, now=now).members(wanted)
        states = {
            getattr(s, subject_column(audience)): s
            for s in AudienceState.objects.filter(
                audience=audience, **{f"{subject_column(audience)}__in": chunk}
            )
        }
        changes = flip(audience, chunk, confirmed, states, now)
        if not changes:
            return
        AudienceChange.objects.bulk_create(
            AudienceChange(audience=audience, subject_id=c.subject, entered=c.entered, at=now)
            for c in changes
        )
        outcome.synced += sync_changes(locked, changes, now)
    outcome.entered.extend(c.subject for c in changes if c.entered)
    outcome.left.extend(c.subject for c in changes if not c.entered)


def flip(
    audience: Audience,
    chunk: Iterable[int],
    confirmed: set[int],
    states: dict[int, AudienceState],
    now: datetime,
) -> list[Change]:
    """Write the states whose membership changed; returns the changes."""
    column = subject_column(audience)
    created: list[AudienceState] = []
    updated: list[AudienceState] = []
    changes: list[Change] = []
    for subject in chunk:
        member = subject in confirmed
        state = states.get(subject)
        if state is None:
            if not member:
                continue
            state = AudienceState(audience=audience, member=True, version=1, changed_at=now)
            setattr(state, column, subject)
            created.append(state)
        elif state.member == member:
            continue
        else:
            state.member, state.version, state.changed_at = member, state.version + 1, now
            updated.append(state)
        changes.append(Change(subject=subject, entered=member, version=state.version))
    AudienceState.objects.bulk_create(created, batch_size=CHUNK)
    # Not bulk_update: its CASE per row and field cost about a millisecond a row in Python.
    bulk_write(AudienceState, updated, ["member", "version", "changed_at"])
    return changes


def record_size(audience: Audience, now: datetime) -> None:
    size = AudienceState.objects.filter(audience=audience, member=True).count()
    last = AudienceSize.objects.filter(audience=audience).order_by("-at").first()
    Audience.objects.filter(pk=audience.pk).update(size=size)
    audience.size = size
    if last is None or last.size != size:
        AudienceSize.objects.create(audience=audience, at=now, size=size)


def _chunks(ids: Iterable[int]) -> Iterable[list[int]]:
    items = sorted(ids)
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]
